"""Shared fixtures: one embedded broker per test session, fresh topics per test."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

# Set before any test module imports litellm: otherwise it retries a remote
# price-map download for seconds. Spills go to a throwaway folder.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["SPENDBRAKE_SPILL_DIR"] = tempfile.mkdtemp(prefix="spendbrake-spill-")

from spendbrake._broker import EmbeddedBroker, ensure_topics

atexit.register(shutil.rmtree, os.environ["SPENDBRAKE_SPILL_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The Tansu broker on a random free port, started once and always stopped."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path).start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def make_topic(broker: EmbeddedBroker) -> Callable[..., str]:
    """Create a uniquely named topic on the session broker."""

    def make(prefix: str = "t", partitions: int = 4) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        asyncio.run(ensure_topics(broker.bootstrap_servers, [name], partitions))
        return name

    return make
