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

Prints events/s of each, replay/bare, the alerts replay produced and peak RSS; with
``--rounds N``, medians of N rounds with ratios taken within each round. Density
matters: the same N over fewer weeks puts more events into each window, and replay's
per-window work (rollup flushes, early looks, budget checks) is then shared by more
events. The issue's target is 200,000 events/s.

    python -m bench replay [--events N] [--weeks W] [--customers N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import statistics
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


def run(events: int, weeks: float, customers: int = 0, rounds: int = 1) -> dict[str, Any]:
    """Replay's speed on the simulated file; with ``customers``, also on the same traffic
    with its customer-facing calls spread over that many customers (a cardinality flood),
    as a ratio to the first (the target: within 2x, under ``limits.series_per_set``).

    ``rounds`` > 1 measures each in turn that many times and gives each figure's median,
    ratios taken within a round (two runs of the same code on this machine can differ by a
    fifth; a ratio to a baseline measured beside it differs less), with the lowest and
    highest ratio of the rounds."""
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = Path(tmp) / "events.jsonl"
        flood_path = Path(tmp) / "flood.jsonl"
        events = write_events(path, events, weeks)
        if customers:
            write_events(flood_path, events, weeks, customers)
        config = bench_config(events, weeks)
        measured = [_round(path, flood_path if customers else None, config) for _ in range(rounds)]
        stats = measured[0]["stats"]
        if any(m["stats"] != stats for m in measured):
            raise SystemExit("replay counted differently from one round to the next")
        file_mb = path.stat().st_size / 2**20

    def median(name: str) -> float:
        return statistics.median(m[name] for m in measured)

    def ratios(name: str, over: str) -> list[float]:
        return sorted(m[over] / m[name] for m in measured)

    rate = events / median("replay_s")
    split_rate = events / median("split_s")
    out: dict[str, Any] = {
        "events": events,
        "weeks": weeks,
        "file_mb": round(file_mb, 1),
        "rounds": rounds,
        "bare_events_per_s": round(events / median("bare_s")),
        "replay_events_per_s": round(rate),
        "replay_over_bare": round(statistics.median(ratios("replay_s", "bare_s")), 3),
        "replay_cpu_us_per_event": round(median("replay_cpu_s") / events * 1e6, 2),
        "two_process_events_per_s": round(split_rate),
        "two_process_over_bare": round(statistics.median(ratios("split_s", "bare_s")), 3),
        "two_process_speedup": round(statistics.median(ratios("split_s", "replay_s")), 2),
        "two_process_cpu_us_per_event": round(median("split_cpu_s") / events * 1e6, 2),
        "replay_valid": stats.valid,
        "replay_alerts": stats.alerts,
        "target_events_per_s": TARGET,
        "target_met_one_process": rate >= TARGET,
        "target_met_two_processes": split_rate >= TARGET,
    }
    if rounds > 1:
        for name, over, key in (
            ("replay_s", "bare_s", "replay_over_bare"),
            ("split_s", "bare_s", "two_process_over_bare"),
        ):
            low, *_, high = ratios(name, over)
            out[f"{key}_range"] = f"{low:.3f}-{high:.3f}"
    if customers:
        flood = measured[0]["flood"]
        slowdown = statistics.median(m["flood_s"] / m["replay_s"] for m in measured)
        split_slowdown = statistics.median(m["flood_split_s"] / m["split_s"] for m in measured)
        out |= {
            "flood_customers": customers,
            "flood_series_per_set": config.limits.series_per_set,
            "flood_events_per_s": round(events / median("flood_s")),
            "flood_slowdown": round(slowdown, 2),
            "flood_two_process_events_per_s": round(events / median("flood_split_s")),
            "flood_two_process_slowdown": round(split_slowdown, 2),
            "flood_alerts": flood.alerts,
            "flood_target_met": slowdown <= 2,
            "flood_target_met_two_processes": split_slowdown <= 2,
        }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _round(path: Path, flood_path: Path | None, config: Config) -> dict[str, Any]:
    """One of each measurement, in turn; two processes must count as one does."""
    bare_s = bare(path)
    replay_s, replay_cpu_s, stats = replay(path, config)
    split_s, split_cpu_s, split = replay(path, config, jobs=2)
    if split != stats:
        raise SystemExit(f"two processes replayed differently: {split} vs {stats}")
    out: dict[str, Any] = {
        "bare_s": bare_s,
        "replay_s": replay_s,
        "replay_cpu_s": replay_cpu_s,
        "split_s": split_s,
        "split_cpu_s": split_cpu_s,
        "stats": stats,
    }
    if flood_path is not None:
        flood_s, _, flood = replay(flood_path, config)
        flood_split_s, _, flood_split = replay(flood_path, config, jobs=2)
        if flood_split != flood:
            raise SystemExit(f"two processes replayed the flood differently: {flood_split}")
        out |= {"flood_s": flood_s, "flood_split_s": flood_split_s, "flood": flood}
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
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure everything this many times in turn and print medians, ratios taken "
        "within a round, with their range (this machine's runs differ by up to a fifth)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(args.events, args.weeks, args.customers, args.rounds)
    show(result, args.json)


if __name__ == "__main__":
    main()
