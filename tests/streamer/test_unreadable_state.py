"""A stage whose saved state cannot be read refuses to start, with one line that names the
file and the way out: never a silent stall, never a traceback, never a fresh start that
would count or act on things twice."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from bench._worker import worker_command
from spendbrake._broker import EmbeddedBroker
from tests.streamer.kafka_io import publish_raw
from tests.streamer.streams import make_stream
from tests.streamer.test_worker import Topics, expected, start_worker, stop, wait_exact

#: case -> (stage, its state file under --state-dir, damaged content, the way out it names).
#: The DuckDB store is not among them: its stage waits out a file it cannot open, and the
#: worker goes on (tests/streamer/test_store_stage.py).
DAMAGE = {
    "detect": ("detect", "detect/snapshot.json", b'{"kind": "spendbrake.de', "from a backup"),
    # The pickle of an earlier release, migrated on start: cut short, it cannot be.
    "detect-pickle": ("detect", "detect/snapshot.pkl", b"\x80\x05\x95\x10\x00", "from a backup"),
    "act": (
        "act",
        "actions/outbox.json",
        b'{"version": 1, "outbox": {"lan',
        "restore it from a backup",
    ),
    # An outbox of an earlier release, to migrate: unreadable, it is refused the same way.
    "act-pickle": (
        "act",
        "actions/outbox.pkl",
        b"\x80\x05\x95\x10\x00",
        "restore it from a backup",
    ),
}


def refused(config: Path, state: Path, bootstrap: str, stage: str) -> str:
    """Run ``spendbrake worker --stages STAGE``, expect exit 1, return its last stderr line."""
    run = subprocess.run(
        worker_command(
            config,
            state,
            "--bootstrap",
            bootstrap,
            "--stages",
            stage,
            "--session-timeout",
            "6s",
            "--metrics-port",
            "0",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    return run.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_unreadable_state_stops_the_stage_with_one_line(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path, case: str
) -> None:
    events, rollups, alerts = make_topic("events", 1), make_topic("rollups", 1), make_topic("a")
    config = tmp_path / "config.yaml"
    config.write_text(
        "kafka:\n  topics:\n"
        f"    events: {events}\n    rollups: {rollups}\n    alerts: {alerts}\n"
        f"    dlq: {events}-dlq\n    actions: {events}-actions\n    traces: {events}-traces\n"
    )
    stage, relative, content, way_out = DAMAGE[case]
    state = tmp_path / "state"
    damaged = state / relative
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(content)
    last = refused(config, state, broker.bootstrap_servers, stage)
    assert last.startswith(f"error: {damaged}: unreadable state ("), last
    assert way_out in last


@pytest.mark.parametrize("damage", ["snapshot", "dedupe"])
def test_unreadable_partition_state_stops_the_worker_loudly(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path, damage: str
) -> None:
    """A corrupt snapshot (or a dedupe file cut short) must not leave a partition assigned
    with its records fetched and dropped: the worker exits 1 with one line naming the file and
    the way out; ``--reset-partition`` then rebuilds it from the topic, exactly."""
    topics = Topics(make_topic)
    stream = make_stream(6_000, seed=21, span_s=6 * 3600)
    config = topics.config(tmp_path, f"broken-{damage}")
    state = tmp_path / "state"
    log = tmp_path / "worker.log"
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records))
    worker = start_worker(broker, config, state, log)
    try:
        first = wait_exact(broker, topics.rollups, expected(stream.unique))
    finally:
        stop(worker)
    assert first == expected(stream.unique), log.read_text()[-3000:]
    part = state / topics.events / "p2"
    if damage == "snapshot":
        broken = part / "snapshot.json"
        broken.write_bytes(broken.read_bytes()[:100])
    else:
        broken = max((part / "dedupe").glob("*.ids"), key=lambda p: p.stat().st_size)
        broken.write_bytes(broken.read_bytes()[:10])
    last = refused(config, state, broker.bootstrap_servers, "ingest")
    assert last.startswith(f"error: {broken}: unreadable state ("), last
    assert "--reset-partition 2" in last
    # The way out: set partition 2 aside, rebuild it from the topic; totals stay exact.
    worker = start_worker(broker, config, state, log, extra=("--reset-partition", "2"))
    try:
        # Rebuilt once it has a snapshot again (the totals on the topic were exact already:
        # checked alone, a worker stopped before it even started would pass).
        deadline = time.monotonic() + 60
        while not rebuilt(part) and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        got = wait_exact(broker, topics.rollups, expected(stream.unique))
    finally:
        stop(worker)
    assert got == expected(stream.unique), log.read_text()[-3000:]
    assert rebuilt(part), log.read_text()[-3000:]


def rebuilt(part: Path) -> bool:
    """The partition's state was set aside and a new snapshot with progress saved."""
    if not list(part.parent.glob(f"{part.name}.reset-*/snapshot.json")):
        return False
    try:
        return bool(orjson.loads((part / "snapshot.json").read_bytes())["next_offset"])
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
        return False
