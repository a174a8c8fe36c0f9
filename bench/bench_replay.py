"""Replay speed: ``spendbrake replay``'s code over a simulated file, against a bare file loop.

Writes N simulated events (default 1,000,000) over W weeks of event time (default 5: an
operator replays a month or so before deploying a change), with a batch runaway and a
spike injected, to a temporary .jsonl once. Then, on that file, in the same run:

(a) bare: read the lines, ``orjson.loads`` each and sum cost per team: the practical
    ceiling of a Python loop over the file;
(b) replay: ``spendbrake._replay.replay_lines`` (what ``spendbrake replay`` runs) with the
    default detectors, a monthly team budget, a daily batch budget and a batch pause
    policy: validation, dedupe, pricing, rollups, detectors, budgets and policies; in one
    process, then with ``jobs=2`` (the rollup half in a child process: what
    ``spendbrake replay`` does with a file this large on two cores), which must count and
    alert alike. CPU time is both processes' (the child's once it has ended).

Prints events/s of each, replay/bare, the alerts replay produced and peak RSS. Density
matters: the same N over fewer weeks puts more events into each window, and replay's
per-window work (rollup flushes, early looks, budget checks) is then shared by more
events. The issue's target is 200,000 events/s.

    python -m bench replay [--events N] [--weeks W] [--customers N] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import orjson

from bench._output import show
from spendbrake._replay import ReplayStats, replay_lines
from spendbrake._simulate import TrafficProfile, parse_incident, simulate
from spendbrake.schemas import Config

START_TS = 1_790_812_800.0  # 2026-10-01T00:00:00Z, a Thursday
TARGET = 200_000


def bench_config(events: int, weeks: float) -> Config:
    """Defaults plus budgets sized to the simulated spend (about $0.01 a call)."""
    per_day = events / (weeks * 7) * 0.01
    return Config.model_validate(
        {
            "budgets": [
                {
                    "name": "search-monthly",
                    "scope": {"team": "search"},
                    "amount_usd": round(per_day * 30 * 0.4, 2),
                    "period": "month",
                },
                {
                    "name": "research-batch-daily",
                    "scope": {"team": "research", "workload": "batch"},
                    "amount_usd": round(per_day * 0.05, 2),
                    "period": "day",
                },
            ],
            "policies": [{"match": {"workload": "batch"}, "action": "pause"}],
            "keys": {"rules": TrafficProfile.default().key_rules()},
        }
    )


def write_events(path: Path, events: int, weeks: float, customers: int = 0) -> int:
    """Simulated events to ``path``; ``customers`` > 0 spreads the customer-facing calls over
    that many distinct customers (a cardinality flood), instead of the simulator's seven."""
    span_s = weeks * 7 * 86400
    incidents = [
        parse_incident(f"batch_runaway:team=research,x=20,start=+{int(span_s * 0.8)}s,duration=3h"),
        parse_incident(f"spike:team=support,x=8,start=+{int(span_s * 0.9)}s,duration=1h"),
    ]
    stream = simulate(START_TS, span_s, rate_per_s=events / span_s, seed=7, incidents=incidents)
    count = 0
    rng = random.Random(3)
    with path.open("wb") as out:
        for event in itertools.islice(stream, events):
            if customers and event.customer is not None:
                event = msgspec.structs.replace(event, customer=f"cust-{rng.randrange(customers)}")
            out.write(event.to_json() + b"\n")
            count += 1
    return count


def bare(path: Path) -> float:
    """Seconds to read, parse and sum the file: the ceiling for a Python loop over it."""
    started = time.perf_counter()
    spend: dict[str, float] = defaultdict(float)
    with path.open("rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            spend[event["team"]] += event.get("cost_usd") or 0.0
    return time.perf_counter() - started


def replay(path: Path, config: Config, jobs: int = 1) -> tuple[float, float, ReplayStats]:
    """Seconds, CPU seconds (this process and its children) and counts of one replay."""
    stats = ReplayStats()
    cpu = _cpu_s()
    started = time.perf_counter()
    with path.open("rb") as lines:
        for _ in replay_lines(lines, config, stats=stats, jobs=jobs):
            pass
    return time.perf_counter() - started, _cpu_s() - cpu, stats


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # a child once it has ended
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(events: int, weeks: float, customers: int = 0) -> dict[str, Any]:
    """Replay's speed on the simulated file; with ``customers``, also on the same traffic
    with its customer-facing calls spread over that many customers (a cardinality flood),
    as a ratio to the first (the target: within 2x, under ``limits.series_per_set``)."""
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = Path(tmp) / "events.jsonl"
        events = write_events(path, events, weeks)
        config = bench_config(events, weeks)
        bare_s = bare(path)
        replay_s, replay_cpu_s, stats = replay(path, config)
        split_s, split_cpu_s, split = replay(path, config, jobs=2)
        if split != stats:
            raise SystemExit(f"two processes replayed differently: {split} vs {stats}")
        file_mb = path.stat().st_size / 2**20
        rate = events / replay_s
        split_rate = events / split_s
        out: dict[str, Any] = {
            "events": events,
            "weeks": weeks,
            "file_mb": round(file_mb, 1),
            "bare_events_per_s": round(events / bare_s),
            "replay_events_per_s": round(rate),
            "replay_over_bare": round(bare_s / replay_s, 3),
            "replay_cpu_us_per_event": round(replay_cpu_s / events * 1e6, 2),
            "two_process_events_per_s": round(split_rate),
            "two_process_speedup": round(replay_s / split_s, 2),
            "two_process_cpu_us_per_event": round(split_cpu_s / events * 1e6, 2),
            "replay_valid": stats.valid,
            "replay_alerts": stats.alerts,
            "target_events_per_s": TARGET,
            "target_met_one_process": rate >= TARGET,
            "target_met_two_processes": split_rate >= TARGET,
        }
        if customers:
            path.unlink()
            write_events(path, events, weeks, customers)
            flood_s, _, flood = replay(path, config)
            flood_split_s, _, flood_split = replay(path, config, jobs=2)
            if flood_split != flood:
                raise SystemExit(f"two processes replayed the flood differently: {flood_split}")
            out |= {
                "flood_customers": customers,
                "flood_series_per_set": config.limits.series_per_set,
                "flood_events_per_s": round(events / flood_s),
                "flood_slowdown": round(flood_s / replay_s, 2),
                "flood_two_process_events_per_s": round(events / flood_split_s),
                "flood_two_process_slowdown": round(flood_split_s / split_s, 2),
                "flood_alerts": flood.alerts,
                "flood_target_met": flood_s <= 2 * replay_s,
                "flood_target_met_two_processes": flood_split_s <= 2 * split_s,
            }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def file_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser for a benchmark of the simulated replay file: its size (``--events``,
    ``--weeks``) and ``--json``; the benchmark adds its own."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--weeks", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = file_parser(__doc__)
    parser.add_argument(
        "--customers",
        type=int,
        default=0,
        help="also replay the traffic with its customer-facing calls spread over this many "
        "customers (a cardinality flood), and print the slowdown",
    )
    args = parser.parse_args(argv)
    result = run(args.events, args.weeks, args.customers)
    show(result, args.json)


if __name__ == "__main__":
    main()
