"""What ``SpendProducer.emit()`` costs the caller, with the broker up and down.

The baseline, measured in the same run, is serializing the event with orjson:
the least any producer must do. Ratios, not absolute times, are what to
compare across machines.

    python -m bench sdk [--events N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from bench._output import show
from spendbrake._broker import EmbeddedBroker, ensure_topics, free_port
from spendbrake.schemas import UsageEvent
from spendbrake.sdk import SpendProducer


def events(n: int, prefix: str) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "ts": 1_795_428_000 + i * 0.01,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "input_tokens": 2600,
            "output_tokens": 300,
            "cache_read_tokens": 2000,
            "team": "search",
            "feature": "agent",
            "api_key": "search-agent-prod",
            "workload": "batch",
        }
        for i in range(n)
    ]


def time_calls(fn: object, items: list[dict[str, object]]) -> tuple[float, float]:
    """Mean and worst per-call time in microseconds."""
    worst = 0.0
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        fn(item)  # type: ignore[operator]
        worst = max(worst, time.perf_counter() - t0)
    total = time.perf_counter() - start
    return total / len(items) * 1e6, worst * 1e6


def baseline(item: dict[str, object]) -> bytes:
    return orjson.dumps(UsageEvent(**{**item, "ts": float(item["ts"])}).to_wire())  # type: ignore[arg-type]


def run(n: int) -> dict[str, float]:
    spill_dir = Path(tempfile.mkdtemp(prefix="bench-sdk-"))
    base_mean, _base_worst = time_calls(baseline, events(n, "b"))
    with EmbeddedBroker() as broker:
        asyncio.run(ensure_topics(broker.bootstrap_servers, ["spend.events"]))
        producer = SpendProducer(broker.bootstrap_servers, spill_path=spill_dir / "up.jsonl")
        up_mean, up_worst = time_calls(producer.emit, events(n, "u"))
        start = time.perf_counter()
        producer.flush(120)
        drain_s = time.perf_counter() - start
        producer.close()
    down = SpendProducer(
        f"127.0.0.1:{free_port()}", spill_path=spill_dir / "down.jsonl", max_queue=10_000
    )
    down_mean, down_worst = time_calls(down.emit, events(n, "d"))
    down.close(timeout_s=0)
    shutil.rmtree(spill_dir, ignore_errors=True)
    return {
        "events": n,
        "serialize_us": round(base_mean, 2),
        "emit_broker_up_us": round(up_mean, 2),
        "emit_broker_up_worst_us": round(up_worst, 1),
        "emit_broker_down_us": round(down_mean, 2),
        "emit_broker_down_worst_us": round(down_worst, 1),
        "up_over_serialize": round(up_mean / base_mean, 2),
        "down_over_serialize": round(down_mean / base_mean, 2),
        "drain_after_emit_s": round(drain_s, 2),
        "spilled_when_down": down.stats.spilled,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.events)
    show(result, args.json)


if __name__ == "__main__":
    main()
