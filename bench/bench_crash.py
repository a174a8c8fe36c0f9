"""Crash exactness at scale: the worker SIGKILLed K times while it rolls up N events.

Publishes N simulated events (default 1,000,000 over two days of event time; 4
partitions) to the embedded broker, and sends 5 % of them again further on (the same
record and key, up to tens of thousands of records later: a producer's retry). Then runs
``spendbrake worker --stages ingest`` in a subprocess and SIGKILLs it K times (default 5),
each at a random 0-``--max-delay`` seconds after that run's first new rollup (so some
kills land before a run's first checkpoint and some after it), restarting it each time;
the last run goes on until the rollups are exact or ``--timeout`` passes.

A consumer in this process tails ``spend.rollups`` throughout and merges it the way a
reader does (``streamer.RollupTotals``: the latest record per key, summed across
partitions). Exact means: cost in nano-dollars and calls per team/feature/day, per api
key/hour, per team/minute and of the global total per hour equal the ground truth of the
unique events, every cell, and no event is counted twice (calls).

Prints whether it was exact, the kills, the seconds until exact (restarts included, from
the first start) and the events/s that gives, the cells compared, any cells that differ,
and the rollup records read. The test suite runs the same check on 50,000 events with
late and malformed records too (``tests/streamer/test_worker.py``); this one takes a few
minutes.

    python -m bench crash [--events N] [--kills K] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._output import show
from spendbrake._broker import EmbeddedBroker, ensure_topics
from spendbrake._simulate import simulate
from spendbrake.schemas import PriceTable, RollupRecord, decode_rollup, to_nusd
from spendbrake.streamer import RollupTotals

from ._worker import worker_command

PARTITIONS = 4
START_TS = 1_791_158_400.0  # a Monday in the past: the worker refuses future events
SPAN_S = 2 * 86400
DUPLICATE_SHARE = 0.05
TOPICS = ["spend.events", "spend.dlq", "spend.rollups", "spend.alerts", "spend.actions"]
#: What is compared: (dimension set, window seconds).
CHECKS: list[tuple[tuple[str, ...], int]] = [
    (("team", "feature"), 86400),
    (("api_key",), 3600),
    (("team",), 60),
    ((), 3600),
]

Cells = dict[tuple[tuple[str | None, ...], int], tuple[int, int]]
Truth = dict[tuple[tuple[str, ...], int], Cells]


async def publish(bootstrap: str, events: int, seed: int) -> tuple[Truth, int, int]:
    """Publish the stream with its resent duplicates; the ground truth of the unique events."""
    rng = random.Random(seed)
    prices = PriceTable.default()
    truth: dict[tuple[tuple[str, ...], int], dict[Any, list[int]]] = {
        check: defaultdict(lambda: [0, 0]) for check in CHECKS
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=20
    )
    await producer.start()
    recent: list[tuple[bytes, bytes]] = []  # (key, record) of earlier events, to resend
    sent = duplicates = 0
    try:
        pending = []
        stream = simulate(START_TS, SPAN_S, rate_per_s=events / SPAN_S, seed=seed)
        for event in stream:
            if sent >= events:
                break
            key, raw = event.event_id.encode(), event.to_json()
            cost = event.cost_usd if event.cost_usd is not None else prices.price(event)
            for dims, window_s in CHECKS:
                cell = (
                    tuple(getattr(event, d) for d in dims),
                    int(event.ts // window_s) * window_s,
                )
                total = truth[(dims, window_s)][cell]
                total[0] += to_nusd(cost or 0.0)
                total[1] += 1
            pending.append(await producer.send("spend.events", raw, key=key))
            sent += 1
            if len(recent) < 50_000:
                recent.append((key, raw))
            else:
                recent[rng.randrange(len(recent))] = (key, raw)
            if rng.random() < DUPLICATE_SHARE:
                again_key, again = rng.choice(recent)
                pending.append(await producer.send("spend.events", again, key=again_key))
                duplicates += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    exact = {check: {k: (v[0], v[1]) for k, v in cells.items()} for check, cells in truth.items()}
    return exact, sent, duplicates


class RollupTail:
    """Reads ``spend.rollups`` from the start, for as long as it runs, into ``totals``."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.totals = RollupTotals()
        self.records = 0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_bytes=16 << 20,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition("spend.rollups", p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
                for messages in batches.values():
                    decoded = (decode_rollup(m.value) for m in messages)
                    # Watermark marks share the topic with the windows.
                    self.totals.update(r for r in decoded if isinstance(r, RollupRecord))
                    self.records += len(messages)
        finally:
            await consumer.stop()

    def observed(self) -> Truth:
        return {
            (dims, w): {k: (v[0], v[1]) for k, v in self.totals.totals(dims, w).items()}
            for dims, w in CHECKS
        }


def differences(want: Truth, got: Truth) -> list[str]:
    """Cells that differ, as ``dims window values: got vs want`` lines."""
    out = []
    for check, cells in want.items():
        seen = got.get(check, {})
        for cell in sorted(set(cells) | set(seen), key=repr):
            if cells.get(cell) != seen.get(cell):
                out.append(f"{check} {cell}: got {seen.get(cell)} want {cells.get(cell)}")
    return out


def start_worker(bootstrap: str, config: Path, state: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command(
            config,
            state,
            "--bootstrap",
            bootstrap,
            "--stages",
            "ingest",
            "--session-timeout",  # a killed worker's partitions come back after 6 s
            "6s",
            "--metrics-port",
            "0",
        ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def crash_run(
    bootstrap: str, tail: RollupTail, want: Truth, kills: int, max_delay_s: float, seed: int,
    timeout_s: float, workdir: Path,
) -> dict[str, Any]:  # fmt: skip
    """Start, kill and restart the worker; then wait for exact totals. Seconds from the start."""
    rng = random.Random(seed)
    config = workdir / "crash.yaml"
    # Every team's minutes are checked, not only budgets' (the default).
    config.write_text("minute_windows: all\nkafka:\n  group_id: bench-crash\n")
    state, log = workdir / "state", workdir / "worker.log"
    started = time.perf_counter()
    worker = start_worker(bootstrap, config, state, log)
    try:
        for _ in range(kills):
            seen = tail.records
            while tail.records == seen:  # this run's first new rollup: it is working
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, max_delay_s))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(bootstrap, config, state, log)
        deadline = time.perf_counter() + timeout_s
        got = tail.observed()
        while got != want and time.perf_counter() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(2.0)
            got = tail.observed()
        elapsed = time.perf_counter() - started
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return {"seconds": elapsed, "differences": differences(want, got)}


async def run(
    events: int, kills: int, seed: int, max_delay_s: float = 10.0, timeout_s: float = 600.0
) -> dict[str, Any]:
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        bootstrap = broker.bootstrap_servers
        await ensure_topics(bootstrap, [*TOPICS, "spend.traces"], PARTITIONS)
        publish_started = time.perf_counter()
        want, events, duplicates = await publish(bootstrap, events, seed)
        publish_s = time.perf_counter() - publish_started
        tail = RollupTail(bootstrap)
        reading = asyncio.create_task(tail.run())
        try:
            result = await crash_run(
                bootstrap, tail, want, kills, max_delay_s, seed, timeout_s, Path(tmp)
            )
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
    diff = result["differences"]
    return {
        "events": events,
        "duplicates_sent": duplicates,
        "partitions": PARTITIONS,
        "kills": kills,
        "exact": not diff,
        "cells_compared": sum(len(cells) for cells in want.values()),
        "cells_different": len(diff),
        "first_differences": diff[:5],
        "seconds_to_exact" if not diff else "seconds_until_timeout": round(result["seconds"], 1),
        "events_per_s_with_restarts": round(events / result["seconds"]),
        "publish_events_per_s": round(events / publish_s),
        "rollup_records_read": tail.records,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.events, args.kills, args.seed, args.max_delay, args.timeout))
    show(result, args.json)
    if not result["exact"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
