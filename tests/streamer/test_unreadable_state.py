"""A stage whose saved state cannot be read refuses to start, with one line that names the
file and the way out: never a silent stall, never a traceback, never a fresh start that
would count or act on things twice."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bench._worker import worker_command
from spendbrake._broker import EmbeddedBroker

#: stage -> (its state file under --state-dir, damaged content, the way out it must name)
DAMAGE = {
    "detect": ("detect/snapshot.pkl", b"\x80\x05\x95\x10\x00", "restore it from a backup"),
    "store": ("store/spend.duckdb", b"not a database" * 500, "restore it from a backup"),
}


@pytest.mark.parametrize("stage", sorted(DAMAGE))
def test_unreadable_state_stops_the_stage_with_one_line(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path, stage: str
) -> None:
    events, rollups, alerts = make_topic("events", 1), make_topic("rollups", 1), make_topic("a")
    config = tmp_path / "config.yaml"
    config.write_text(
        "kafka:\n  topics:\n"
        f"    events: {events}\n    rollups: {rollups}\n    alerts: {alerts}\n"
        f"    dlq: {events}-dlq\n    actions: {events}-actions\n    traces: {events}-traces\n"
    )
    relative, content, way_out = DAMAGE[stage]
    state = tmp_path / "state"
    damaged = state / relative
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(content)
    run = subprocess.run(
        worker_command(
            config,
            state,
            "--bootstrap",
            broker.bootstrap_servers,
            "--stages",
            stage,
            "--metrics-port",
            "0",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {damaged}: unreadable state ("), last
    assert way_out in last
    assert "Traceback" not in run.stderr
