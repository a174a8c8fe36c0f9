"""Ingest speed: the worker against a bare aiokafka loop on the same topic, same run.

Publishes N simulated events (4 partitions) to the embedded broker once, then:

(a) bare: ``getmany`` + ``orjson.loads`` + a dict sum of cost per team: the
    practical ceiling for one Python process;
(b) naive Faust: ``bench/bench_faust.py``, the windowed-table pipeline the
    Faust docs show (Record model, ``group_by``, tumbling table summing cost per
    team), in its own process, on the first ``--faust-events`` records only
    (default 20,000: it runs at about a thousand events/s here), timed from
    its first event to its last;
(c) worker: ``stages.IngestStage`` (validate, dedupe, price, 1m/1h/1d rollups
    for six dimension sets, traces, outputs and snapshots), timed until it has
    read every record.

Prints events/s of each, the ratios worker/bare and worker/naive-Faust, the
worker/bare ratio of CPU seconds spent by this process over the same spans
(steadier than wall time on a shared machine), the worker's rate up to its
final checkpoint (every output acknowledged, snapshots saved), and
peak RSS (of this process, which runs the bare loop and the worker, and of
the Faust process).

    python -m bench ingest [--events N] [--faust-events M] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._output import show
from spendbrake._broker import EmbeddedBroker, ensure_topics
from spendbrake._simulate import simulate
from spendbrake.schemas import Config
from spendbrake.stages import Worker, WorkerSettings, tune_gc

PARTITIONS = 4
START_TS = 1_791_158_400.0  # a Monday


async def publish(bootstrap: str, topic: str, events: int) -> tuple[float, int]:
    """Publish up to ``events`` simulated events; return the seconds taken and the count."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        enable_idempotence=False,
        linger_ms=20,
        max_batch_size=1 << 20,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        # A large organisation's density: N events in about two hours of event time.
        span_s = 2 * 3600
        rate = max(events / span_s, 1.0)
        pending = []
        count = 0
        stream = simulate(START_TS + 10 * 3600, 4 * span_s, rate_per_s=rate, seed=1)
        for count, event in enumerate(stream, start=1):
            pending.append(await producer.send(topic, event.to_json(), key=event.event_id.encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
            if count >= events:
                break
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started, count


async def bare_loop(bootstrap: str, topic: str, events: int) -> tuple[float, float]:
    """Seconds from the first ``getmany`` to the last record, and this process's CPU seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    spend: dict[str, float] = defaultdict(float)
    seen = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        while seen < events:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)
                    spend[event["team"]] += event.get("cost_usd") or 0.0
                seen += len(messages)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await consumer.stop()
    return elapsed, cpu


async def worker_run(bootstrap: str, topic: str, events: int) -> tuple[float, dict[str, Any]]:
    """Seconds from the worker's first record to its last; ``stats`` adds CPU seconds over the
    same span and the seconds until its final checkpoint is done (every output acknowledged,
    every partition's snapshot saved)."""
    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"bench-{time.time_ns()}",
                "topics": {"events": topic},
            }
        }
    )
    state = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    tune_gc()  # as `spendbrake worker` does
    worker = Worker(config, WorkerSettings(state_dir=state), ["ingest"])
    ingest = worker.ingest
    task = asyncio.create_task(worker.run())
    # Timing starts at the first record read, so group join is not counted.
    while not any(p.stats.records for p in ingest.processors.values()):
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    cpu_started = time.process_time()
    while sum(p.stats.records for p in ingest.processors.values()) < events:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    worker.stop()
    await task
    shutil.rmtree(state, ignore_errors=True)  # its snapshots: 24 MB a run at 1M events
    stats = {
        "valid": sum(p.stats.valid for p in ingest.processors.values()),
        "rollups_out": ingest.rollups_out,
        "cpu_s": cpu,
        "done_s": time.perf_counter() - started,
    }
    return elapsed, stats


async def naive_faust(bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    """Run ``bench.bench_faust`` in a subprocess; its JSON line, or the reason it gave none."""
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_faust",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--events",
            str(events),
            "--datadir",
            datadir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=600)
        except TimeoutError:
            process.kill()
            await process.wait()
            return {"error": "timed out after 600 s"}
    for line in out.decode(errors="replace").splitlines():
        if '{"events"' in line:  # Faust may put terminal escapes before it
            return orjson.loads(line[line.index('{"events"') :])
    return {"error": err.decode(errors="replace")[-500:] or f"exit code {process.returncode}"}


async def run(events: int, faust_events: int = 20_000) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        topics = [
            "bench.events",
            "spend.dlq",
            "spend.rollups",
            "spend.alerts",
            "spend.actions",
            "spend.traces",
        ]
        await ensure_topics(bootstrap, topics, PARTITIONS)
        publish_s, events = await publish(bootstrap, "bench.events", events)
        bare_s, bare_cpu_s = await bare_loop(bootstrap, "bench.events", events)
        worker_s, stats = await worker_run(bootstrap, "bench.events", events)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        faust: dict[str, Any] = {}
        if faust_events > 0:
            faust = await naive_faust(bootstrap, "bench.events", min(faust_events, events))
    worker_rate = events / worker_s
    faust_rate = faust.get("events_per_s")
    return {
        "events": events,
        "partitions": PARTITIONS,
        "publish_events_per_s": round(events / publish_s),
        "bare_events_per_s": round(events / bare_s),
        "worker_events_per_s": round(worker_rate),
        "naive_faust_events_per_s": None if faust_rate is None else round(faust_rate),
        "naive_faust_events": faust.get("events"),
        "naive_faust_error": faust.get("error"),
        "worker_over_bare": round(bare_s / worker_s, 3),
        # CPU seconds of this process: steadier than wall time on a shared machine.
        "worker_over_bare_cpu": round(bare_cpu_s / stats["cpu_s"], 3),
        # Until the final checkpoint is done: every output acknowledged, snapshots saved.
        "worker_done_events_per_s": round(events / stats["done_s"]),
        "worker_over_naive_faust": None
        if faust_rate is None
        else round(worker_rate / faust_rate, 1),
        "worker_rollups_out": stats["rollups_out"],
        "peak_rss_mb": round(peak_rss_mb, 1),
        "naive_faust_peak_rss_mb": None
        if faust.get("peak_rss_mb") is None
        else round(faust["peak_rss_mb"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--faust-events",
        type=int,
        default=20_000,
        help="records the naive Faust pipeline reads (0: skip it)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.events, args.faust_events))
    show(result, args.json)
    if result["naive_faust_events"]:
        print(
            f"(naive Faust measured on the first {result['naive_faust_events']} events only; "
            "its windows close on wall-clock time and it neither validates, dedupes nor prices)"
        )


if __name__ == "__main__":
    main()
