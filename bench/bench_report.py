"""Report queries on a store holding about six months of rollups.

Fills a fresh DuckDB store through the store stage's own write path (``StoreBatch``,
``apply_batch``): hourly and daily windows for N series (default 200: global, teams,
models, team x model, features, customers) from 2026-05-01 to 2026-10-31, plus trace
partials and a few alerts. Then times ``build_report`` for the month 2026-10 by each
dimension and the chart's query, against baselines measured in the same run on the same
file: a full-table ``SELECT COUNT(*)`` and a full-table ``SUM(cost_nusd)``.

Last, a write as the store stage makes one (open the file, one batch of rollups and 5,000
trace partials of the last week, commit, close), in a fresh process, on the filled store
and on an empty one: its time and the process' peak memory over the empty store's. Trace
ids are random, as real ones are: a write's upsert checks them against the primary-key
index, and the share of it DuckDB loads is what grows with a store's age.

    python -m bench report [--series N] [--traces N] [--json]
    python -m bench report --traces 3000000   # a store of a few months' agent traffic
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from bench._output import peak_rss_mb
from spendbrake._report import build_report, parse_period, team_model_costs
from spendbrake.schemas import RollupRecord, parse_ts
from spendbrake.streamer import StoreBatch, TracePartial, apply_batch, connect_store

START = int(parse_ts("2026-05-01T00:00:00Z"))
END = int(parse_ts("2026-11-01T00:00:00Z"))
TEAMS = [f"team-{i}" for i in range(8)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-flash"]


def series(n: int) -> list[tuple[tuple[str, ...], tuple[str | None, ...]]]:
    out: list[tuple[tuple[str, ...], tuple[str | None, ...]]] = [((), ())]
    out += [(("team",), (t,)) for t in TEAMS]
    out += [(("model",), (m,)) for m in MODELS]
    out += [(("team", "model"), (t, m)) for t in TEAMS for m in MODELS]
    out += [(("team", "feature"), (t, f"feature-{i}")) for t in TEAMS for i in range(3)]
    i = 0
    while len(out) < n:
        out.append((("customer",), (f"customer-{i}",)))
        i += 1
    return out[:n]


def fill(path: Path, n_series: int, n_traces: int) -> dict[str, float]:
    """Write the store in day-sized batches, as a catching-up store stage would."""
    rng = random.Random(1)
    con = connect_store(path)
    rows = 0
    started = time.perf_counter()
    all_series = series(n_series)
    levels = [rng.uniform(0.05, 5.0) for _ in all_series]
    for day in range(START, END, 86400):
        batch = StoreBatch()
        for (dims, values), level in zip(all_series, levels, strict=True):
            day_total = [0] * 8
            for hour in range(day, day + 86400, 3600):
                cost = int(level * rng.uniform(0.5, 1.5) * 1e9 / 24)
                calls = rng.randint(10, 200)
                metrics = (cost, calls, calls * 900, calls * 300, 0, calls * 200, 0, 0)
                day_total = [a + b for a, b in zip(day_total, metrics, strict=True)]
                batch.add_rollup(RollupRecord(dims, values, 3600, hour, 0, 0, metrics, {}, True))
            outcomes = {"ticket_resolved": day_total[1] // 20}
            batch.add_rollup(
                RollupRecord(dims, values, 86400, day, 0, 0, tuple(day_total), outcomes, True)
            )
        for i in range(n_traces * 86400 // (END - START)):
            ts = day + rng.uniform(0, 86400)
            cost = int(rng.lognormvariate(-4, 1.5) * 1e9)
            batch.add_trace(
                TracePartial(
                    f"{rng.getrandbits(128):032x}",
                    0,
                    f"e-{i}",
                    rng.choice(TEAMS),
                    None,
                    None,
                    cost,
                    3,
                    ts,
                    ts + 30,
                    {"gpt-4o": 3},
                )
            )
        batch.add_alert(
            {"id": f"budget:{day}", "seq": 0, "kind": "budget", "detected_at": day + 3600}
        )
        rows += len(batch)
        apply_batch(con, batch, {("spend.rollups", 0): rows})
    elapsed = time.perf_counter() - started
    con.close()
    return {"rows": rows, "fill_s": elapsed, "rows_per_s": rows / elapsed}


def one_write(path: str, seed: int) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one store-stage write to ``path``, in this process."""
    rng = random.Random(seed)
    batch = StoreBatch()
    hour = END - 3600
    for dims, values in series(200):
        metrics = (10**9, 100, 90_000, 30_000, 0, 20_000, 0, 0)
        batch.add_rollup(RollupRecord(dims, values, 3600, hour, 0, 0, metrics, {}, True))
    for i in range(5000):
        ts = END - rng.uniform(0, 7 * 86400)
        trace = f"{rng.getrandbits(128):032x}"
        batch.add_trace(
            TracePartial(trace, 0, f"w-{i}", "team-0", None, None, 10**6, 1, ts, ts, {"m": 1})
        )
    started = time.perf_counter()
    con = connect_store(path)
    apply_batch(con, batch, {("spend.rollups", 0): 1})
    con.close()
    elapsed = time.perf_counter() - started
    return elapsed, peak_rss_mb()


def write_cost(path: Path, writes: int = 3) -> tuple[float, float]:
    """Median seconds and peak RSS (MB) of ``writes`` writes of new partials, in one fresh
    process (its peak memory is those writes' alone)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        runs = [pool.submit(one_write, str(path), seed).result() for seed in range(writes)]
    return statistics.median(s for s, _ in runs), max(mb for _, mb in runs)


def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Median seconds of ``repeat`` runs after one warm-up."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--traces", type=int, default=200_000, help="Traces over six months.")
    parser.add_argument("--writes", type=int, default=3, help="Store-stage writes timed (median).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        filled = fill(path, args.series, args.traces)
        size_mb = path.stat().st_size / 2**20
        con = connect_store(path, read_only=True)
        count = con.execute("SELECT COUNT(*) FROM rollups").fetchone()[0]
        period = parse_period("2026-10")
        now = float(END)
        results = {
            "baseline: SELECT COUNT(*) FROM rollups": timed(
                lambda: con.execute("SELECT COUNT(*) FROM rollups").fetchone()
            ),
            "baseline: SELECT SUM(cost_nusd) FROM rollups": timed(
                lambda: con.execute("SELECT SUM(cost_nusd) FROM rollups").fetchone()
            ),
        }
        for by in ("team", "model", "customer", "feature"):
            results[f"report --by {by}"] = timed(
                lambda by=by: build_report(con, period, by, now=now)
            )
        results["chart query (team x model)"] = timed(lambda: team_model_costs(con, period))
        con.close()
        write_s, write_mb = write_cost(path, args.writes)
        empty_s, empty_mb = write_cost(Path(tmp) / "empty.duckdb", args.writes)
    base = results["baseline: SELECT COUNT(*) FROM rollups"]
    scan = results["baseline: SELECT SUM(cost_nusd) FROM rollups"]
    out = {
        "series": args.series,
        "rollup_rows": count,
        "store_mb": round(size_mb, 1),
        "fill_rows": filled["rows"],
        "fill_rows_per_s": round(filled["rows_per_s"]),
        "timings_ms": {k: round(v * 1000, 2) for k, v in results.items()},
        "ratio_vs_count": {k: round(v / base, 1) for k, v in results.items()},
        "ratio_vs_sum_scan": {k: round(v / scan, 1) for k, v in results.items()},
        "write_s": round(write_s, 3),
        "write_empty_s": round(empty_s, 3),
        "write_extra_mb": round(write_mb - empty_mb, 1),
    }
    if args.json:
        print(orjson.dumps(out).decode())
        return out
    print(
        f"store: {count:,} rollup rows ({args.series} series, hourly + daily, 6 months), "
        f"{filled['rows']:,} rows written at {filled['rows_per_s']:,.0f} rows/s, {size_mb:.1f} MB"
    )
    for name, seconds in results.items():
        print(
            f"  {name:<46} {seconds * 1000:8.2f} ms  {seconds / base:6.1f}x count(*)  "
            f"{seconds / scan:5.1f}x sum scan"
        )
    print(
        f"  a store-stage write (5,000 new trace partials, median): {write_s:.2f} s and "
        f"{write_mb - empty_mb:+.0f} MB of peak memory, against {empty_s:.2f} s on an empty store"
    )
    return out


if __name__ == "__main__":
    main()
