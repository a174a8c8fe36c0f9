"""The worker's progress lines: what each stage did and what is left, from its own metrics."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import Config
from spendbrake.stages import Worker, WorkerSettings
from spendbrake.stages.metrics import ActionMetrics, DetectMetrics, IngestMetrics, StoreMetrics
from spendbrake.stages.progress import Progress
from spendbrake.streamer import ProcessorStats, load_offsets, opened
from tests.streamer.kafka_io import publish_raw
from tests.streamer.streams import make_stream

#: The workers' group session: Tansu holds a first join for about half of it (15 s at the
#: default 30), and a member a test before left behind for all of it.
SESSION_S = 6.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_stage_says_what_it_did_and_what_is_left_then_nothing_when_idle() -> None:
    ingest = IngestMetrics()
    event_time = [float("-inf")]
    detect = DetectMetrics(series=lambda: 0, event_time=lambda: event_time[0])
    pending = {"slack": 0, "gateway": 0}
    act = ActionMetrics(pending=lambda lane: pending[lane], waiting_since=lambda lane: None)
    clock = _Clock()
    progress = Progress(
        {"ingest": ingest.registry, "detect": detect.registry, "act": act.registry},
        every_s=60,
        clock=clock,
        wall=lambda: 1_795_000_000.0 + 600,  # event time is 10 minutes old
    )
    assert progress.lines() == []  # nothing done, nothing left

    ingest.absorb(0, ProcessorStats(records=9_000, dead={"model": 3}))
    ingest.lag.labels("0").set(20_000)
    ingest.lag.labels("1").set(16_000)
    event_time[0] = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC
    detect.alerts.labels("runaway", "critical", "pause").inc(2)
    detect.lag.labels("0").set(5)
    act.effects.labels("slack", "post", "ok").inc(3)
    act.effects.labels("gateway", "block", "retrying").inc()
    pending["gateway"] = 1
    clock.now += 60
    assert progress.lines() == [
        "ingest: 9,000 records read (150/s), 36,000 behind, about 4 min to go, "
        "3 to the dead-letter topic",
        "detect: event time 2026-11-18 11:06 UTC, 5 rollup records behind, "
        "2 alert record(s) written",
        "act: 3 effect(s) done, 1 attempt(s) to retry, 1 waiting",
    ]

    ingest.absorb(0, ProcessorStats(records=9_600, dead={"model": 3}))
    for partition in ("0", "1"):
        ingest.lag.labels(partition).set(0)
    detect.lag.labels("0").set(0)
    pending["gateway"] = 0
    clock.now += 30
    assert progress.lines() == ["ingest: 600 records read (20/s), caught up"]
    clock.now += 60
    assert progress.lines() == []  # idle: no line at all


def test_a_detect_stage_with_every_rollup_read_but_days_behind_is_not_caught_up() -> None:
    """A new deployment reading three weeks of history: the detect stage reads the rollups
    as fast as the ingest writes them, and its line said "caught up" for minutes while its
    event time was a week old. It now says how far event time is behind the clock."""
    event_time = [1_795_000_000.0]
    detect = DetectMetrics(series=lambda: 0, event_time=lambda: event_time[0])
    clock = _Clock()
    wall = [event_time[0] + 19 * 86400]
    progress = Progress({"detect": detect.registry}, every_s=60, clock=clock, wall=lambda: wall[0])
    progress.lines()
    event_time[0] += 3 * 3600
    clock.now += 60
    assert progress.lines() == [
        "detect: event time 2026-11-18 14:06 UTC (19 d behind the clock), every rollup written "
        "so far read"
    ]
    event_time[0] = wall[0] - 120  # caught up with the clock
    clock.now += 60
    assert progress.lines() == ["detect: event time 2026-12-07 11:04 UTC, caught up"]


def test_the_store_stage_says_what_it_read_and_wrote_and_what_is_left() -> None:
    """A store catching up on weeks of rollups logged nothing: the digest waited on it, and
    nobody could tell a slow store from a stuck one."""
    store = StoreMetrics()
    clock = _Clock()
    progress = Progress({"store": store.registry}, every_s=60, clock=clock)
    assert progress.lines() == []
    store.records.labels("spend.rollups").inc(5_000)
    store.records.labels("spend.traces").inc(1_000)
    store.rows.inc(4_200)
    store.skipped.labels("spend.alerts").inc()
    store.lag.labels("spend.rollups", "0").set(30_000)
    store.lag.labels("spend.traces", "1").set(6_000)
    clock.now += 60
    assert progress.lines() == [
        "store: 6,000 records read (100/s), 4,200 rows written, 36,000 behind, about 6 min "
        "to go, 1 skipped (see the warnings)"
    ]
    store.records.labels("spend.rollups").inc(300)
    store.lag.labels("spend.rollups", "0").set(0)
    store.lag.labels("spend.traces", "1").set(0)
    clock.now += 60
    assert progress.lines() == ["store: 300 records read (5/s), caught up"]
    store.rows.inc(300)  # the last write of what was read
    clock.now += 60
    assert progress.lines() == ["store: 0 records read (0/s), 300 rows written, caught up"]
    clock.now += 60
    assert progress.lines() == []


def test_a_store_stage_logs_every_record_it_stores_once_then_caught_up(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real worker's store stage on a backlog: its lines' counts add up to the records
    whose offsets it committed to the store."""
    topics = {name: make_topic(name) for name in ("events", "rollups", "traces", "alerts")}
    topics["actions"] = make_topic("actions")
    config = Config.model_validate(
        {"kafka": {"bootstrap_servers": broker.bootstrap_servers, "topics": topics}}
    )
    records = make_stream(3_000, seed=11).records
    settings = WorkerSettings(
        state_dir=tmp_path, progress_s=0.2, flush_interval_s=0.2, session_timeout_s=SESSION_S
    )
    worker = Worker(config, settings, ["ingest", "store"])
    caplog.set_level(logging.INFO, logger="spendbrake.stages.progress")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "spendbrake.stages.progress"]

    async def scenario() -> None:
        await publish_raw(broker.bootstrap_servers, topics["events"], records)
        running = asyncio.create_task(worker.run())
        while True:  # the ingest caught up, then the store read all it wrote
            seen = lines()
            ingest = [i for i, line in enumerate(seen) if line.startswith("ingest: ")]
            if ingest and "caught up" in seen[ingest[-1]]:
                after = [line for line in seen[ingest[-1] :] if line.startswith("store: ")]
                if any("caught up" in line for line in after):
                    break
            await asyncio.sleep(0.1)
        worker.stop()
        await running

    asyncio.run(asyncio.wait_for(scenario(), 90))  # a guard against a hang, not a timing
    store_lines = [line for line in lines() if line.startswith("store: ")]
    store_lines += [line for line in worker.progress.lines() if line.startswith("store: ")]
    counted = re.compile(r"store: ([\d,]+) records read")
    read = sum(int(m[1].replace(",", "")) for m in map(counted.match, store_lines) if m)
    with opened(worker.stages["store"].path) as con:
        stored = load_offsets(con)
    assert read == sum(stored.values()) > 0  # every partition read from offset 0
    assert any("rows written" in line for line in store_lines)


@pytest.mark.parametrize("stages", [["ingest"]])
def test_a_worker_logs_every_record_it_reads_once_then_caught_up(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    stages: list[str],
) -> None:
    """A real worker on a backlog: its lines' counts add up to the records on the topic."""
    events, rollups = make_topic("events"), make_topic("rollups")
    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": {"events": events, "rollups": rollups},
            }
        }
    )
    records = make_stream(3_000, seed=7).records
    settings = WorkerSettings(state_dir=tmp_path, progress_s=0.2, session_timeout_s=SESSION_S)
    worker = Worker(config, settings, stages)
    caplog.set_level(logging.INFO, logger="spendbrake.stages.progress")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "spendbrake.stages.progress"]

    async def scenario() -> None:
        await publish_raw(broker.bootstrap_servers, events, records)
        running = asyncio.create_task(worker.run())
        while not any("caught up" in line for line in lines()):
            await asyncio.sleep(0.1)
        worker.stop()
        await running

    asyncio.run(asyncio.wait_for(scenario(), 90))  # a guard against a hang, not a timing
    read = [
        int(m[1].replace(",", ""))
        for m in map(re.compile(r"ingest: ([\d,]+) ").match, lines())
        if m
    ]
    assert sum(read) == len(records)
