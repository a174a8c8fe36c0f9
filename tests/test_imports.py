"""Each stage loads only the libraries it uses: a worker is as small as its stages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spendbrake import actions, stages, streamer

HEAVY = ("duckdb", "slack_sdk", "aiohttp", "httpx", "river")


def loaded_after(statement: str) -> set[str]:
    """The heavy libraries a fresh interpreter holds after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("import spendbrake.stages", set()),
        ("import spendbrake.stages.ingest", set()),
        ("import spendbrake.stages.detect", set()),
        ("import spendbrake._replay", set()),
        ("import spendbrake.detectors", set()),
        ("import spendbrake.stages.store", {"duckdb"}),
    ],
)
def test_a_stage_loads_only_its_own_libraries(statement: str, allowed: set[str]) -> None:
    assert loaded_after(statement) <= allowed


def test_lazy_names_resolve_and_unknown_names_raise() -> None:
    assert stages.ActionStage.__name__ == "ActionStage"
    assert streamer.StoreBatch.__name__ == "StoreBatch"
    assert actions.make_gateway.__name__ == "make_gateway"
    for package in (stages, streamer, actions):
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            package.nope  # noqa: B018
        assert set(package.__all__) <= set(dir(package)) | set(package._LAZY)
