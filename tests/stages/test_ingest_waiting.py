"""A start waiting on its consumer group says so.

An operator restarted a worker and saw nothing for 54 s until "partition 0 adopted": the
broker held the group's join (Tansu holds a first join for half the session timeout).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import Config
from spendbrake.stages import IngestStage, WorkerSettings


def test_an_ingest_waiting_for_its_group_says_so_until_it_is_assigned(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Said at the start, then every ``SAY_WAITING_EVERY_S`` (after a restart the join can
    wait out the old member's session: one line, then 45 s of silence), never after."""
    from spendbrake.stages import ingest

    monkeypatch.setattr(ingest, "SAY_WAITING_EVERY_S", 1.0)
    caplog.set_level(logging.INFO, logger="spendbrake")
    topic = make_topic("waiting", partitions=1)
    group = f"waiting-{uuid.uuid4().hex[:8]}"
    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap_servers,
                "group_id": group,
                "topics": {"events": topic},
            }
        }
    )
    stage = IngestStage(config, WorkerSettings(state_dir=tmp_path, session_timeout_s=6.0))
    stage.say_waiting_after_s = 0.0  # the first fetch with no partition assigned yet

    async def run() -> None:
        task = asyncio.create_task(stage.run())
        for _ in range(300):  # up to 30 s: the join held for 3 s, then the adoption
            await asyncio.sleep(0.1)
            if "partition 0 adopted" in caplog.text:
                break
        await asyncio.sleep(2.5)  # assigned: no more
        stage.stop()
        await task

    asyncio.run(run())
    said = [
        r.getMessage() for r in caplog.records if "waiting for consumer group" in r.getMessage()
    ]
    adopted = next(i for i, r in enumerate(caplog.records) if "adopted" in r.getMessage())
    last = max(i for i, r in enumerate(caplog.records) if "waiting for" in r.getMessage())
    assert len(said) >= 2 and last < adopted, caplog.text  # held about 3 s: said again
    assert said[0].startswith(f"waiting for consumer group {group} to assign partitions of {topic}")
    assert "half its session timeout of 6 s" in said[0]
    assert "partition 0 adopted" in caplog.text
