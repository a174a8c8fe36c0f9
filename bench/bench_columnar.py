"""Replay's rollup half in DuckDB against the Python one: the same records, at what cost.

A measurement for step 2 of the replay plan (docs/benchmarks.md, "The seam, planned"), not an
engine: ``spendbrake replay`` runs the Python half. On the replay benchmark's simulated file
(``bench replay``'s, default 1,000,000 events over 5 weeks), in the same run:

(a) Python: ``spendbrake._replay.rolled_up``, what replay's rollup half runs (decode, checks,
    dedupe, pricing, the partition processor's fine cells, folded many early-look steps at a
    time by ``StepFold``);
(b) DuckDB: the same steps from SQL: the file read by ``read_json``, each event's step from
    the running watermark, costs from ``cost_usd`` or the price table, then for every
    dimension set and window the step's changed series with their absolute totals, ordered
    as the fold hands them over (a block per set, keyed sets first, and window size, each
    block's series by the step's first event of their window).

Prints the CPU each took (DuckDB's threads included), their ratio, and whether the records
are the same, step by step and in order. ``--duplicates P`` re-sends that share of the
events a few lines later, as a producer's retries do (the SQL keeps an event's first copy,
as the dedupe does). The SQL covers what such a file holds: well-formed
events in file order, each priced by its ``cost_usd`` or one price row, none late, no
outcomes; for anything else it says what it met and stops.

    python -m bench columnar [--events N] [--weeks W] [--duplicates P] [--threads T] [--json]
"""

from __future__ import annotations

import random
import resource
import tempfile
from pathlib import Path
from typing import Any

from numpy.ma import masked

from bench._output import show
from bench.bench_replay import bench_config, file_parser, write_events
from spendbrake._replay import ReplayStats, RollupPlan, rolled_up
from spendbrake.detectors import SpendWatch
from spendbrake.schemas import KEY_DIMENSIONS, Config, PriceTable

LATENESS_S = 600.0
#: (step, dimensions, values, window_s, window_start, partition, epoch, metrics): a record
#: as both halves give it.
Record = tuple[int, tuple[str, ...], tuple[str | None, ...], int, int, int, int, tuple[int, ...]]


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _plan(config: Config) -> tuple[list[tuple[str, ...]], RollupPlan]:
    watch = SpendWatch(config, lateness_s=LATENESS_S, partitions=1)
    dims = [tuple(d) for d in config.rollup_dimensions()]
    return dims, RollupPlan(watch.windows_read(dims), watch.minutes_read(dims), watch.peek_s)


def python_half(path: Path, config: Config) -> tuple[list[Record], float]:
    """Replay's rollup half, as ``spendbrake replay`` runs it in one process."""
    _, plan = _plan(config)
    cpu = _cpu_s()
    out: list[Record] = []
    with path.open("rb") as lines:
        steps = rolled_up(lines, config, LATENESS_S, plan, ReplayStats())
        for step, (blocks, _, _) in enumerate(steps):
            for block in blocks:
                dims, w, partition = tuple(block.dims), block.window_s, block.partition
                metrics = zip(*block.metrics, strict=True)
                rows = zip(block.values, block.starts, block.epochs, metrics, strict=True)
                out.extend(
                    (step, dims, tuple(v), w, start, partition, epoch, tuple(m))
                    for v, start, epoch, m in rows
                )
    return out, _cpu_s() - cpu


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_half(path: Path, config: Config, threads: int) -> tuple[dict[str, Any], float]:
    """The same records from SQL, as columns; raises ``ValueError`` naming what the SQL does
    not cover."""
    import duckdb  # the store's dependency (the server extra)

    dims, plan = _plan(config)
    prices = PriceTable.default().with_overrides(config.pricing.models)
    cpu = _cpu_s()
    con = duckdb.connect(config={"threads": threads})
    con.execute(
        f"""
        create table raw as
        select row_number() over () - 1 as rn, epoch(cast(ts as timestamptz)) as t, event_id,
               team, feature, api_key, customer, environment,
               coalesce(workload, 'standard') as workload, model, provider, cost_usd,
               input_tokens as it, coalesce(cache_read_tokens, 0) as cr,
               coalesce(cache_write_tokens, 0) as cw, output_tokens as ot,
               coalesce(reasoning_tokens, 0) as rt
        from read_json({_sql_text(str(path))}, format = 'newline_delimited')
        """
    )
    columns = {name for name, *_ in con.execute("describe raw").fetchall()}
    if "outcome" in columns:
        raise ValueError("events with an outcome")
    rows = []
    for provider, model in con.execute(
        "select distinct provider, model from raw where cost_usd is null"
    ).fetchall():
        entry = prices._resolve(provider, model)
        if entry is None or len(entry.rows) != 1:
            raise ValueError(f"{provider}/{model}: unpriced, or priced by date")
        r = entry.rows[0]
        reasoning = r.output if r.reasoning is None else r.reasoning
        rows.append((provider, model, r.input, r.cache_read, r.cache_write, r.output, reasoning))
    con.execute(
        "create table price (provider varchar, model varchar, pi double, pcr double, "
        "pcw double, po double, pr double)"
    )
    if rows:
        con.executemany("insert into price values (?, ?, ?, ?, ?, ?, ?)", rows)
    # The dedupe keeps an event's first copy, whatever the ts of the others.
    con.execute(
        """create table firsts as select * from raw
           qualify row_number() over (partition by event_id order by rn) = 1"""
    )
    step_s = plan.step_s
    # A step ends with the event that takes the watermark (the latest ts so far) into the
    # next step_s; costs as the processor rounds them (half to even, in nano-dollars).
    con.execute(
        f"""
        create table e as
        with w as (select rn, t, max(t) over (order by rn rows unbounded preceding) as wm,
                          max(t) over (order by rn rows between unbounded preceding
                                       and 1 preceding) as before from firsts),
             x as (select rn, wm, before,
                          (floor(wm / {step_s}) > floor(lag(wm) over (order by rn) / {step_s}))::int
                          as inc from w),
             st as (select rn, wm, before, coalesce(sum(inc) over (order by rn rows between
                          unbounded preceding and 1 preceding), 0) as s from x)
        select r.* exclude (cost_usd), st.s, st.wm, st.before,
          round_even(coalesce(r.cost_usd,
            (greatest(it - cr - cw, 0) * p.pi + cr * p.pcr + cw * p.pcw
             + greatest(ot - rt, 0) * p.po + rt * p.pr) / 1000000) * 1000000000, 0)::BIGINT
            as cost
        from firsts r join st using (rn) left join price p using (provider, model)
        """
    )
    smallest = min(w for windows in plan.windows_s for w in windows)
    duplicates, late, odd = con.execute(
        f"""select count(*) - count(distinct event_id),  -- copies in another hour
                   count(*) filter (where floor(t / {smallest}) * {smallest} + {smallest}
                                    + {LATENESS_S} <= before),
                   count(*) filter (where event_id is null or t is null or provider is null
                                    or model is null or team is null or it is null or ot is null
                                    or cr + cw > it or rt > ot)
            from e"""
    ).fetchone()
    if duplicates or late or odd:
        raise ValueError(f"{duplicates} duplicate, {late} late and {odd} incomplete events")
    keyed = [set(d) <= set(KEY_DIMENSIONS) for d in dims]
    order = [i for i, k in enumerate(keyed) if k] + [i for i, k in enumerate(keyed) if not k]
    rank = {d: r for r, d in enumerate(order)}
    parts = []
    for d, (names, windows, only) in enumerate(
        zip(dims, plan.windows_s, plan.minute_values, strict=True)
    ):
        for w in windows:
            values = f"[{', '.join(names)}]::varchar[]" if names else "[]::varchar[]"
            where = ""
            if w == 60 and only is not None:
                where = "where " + " or ".join(
                    "("
                    + " and ".join(f"{n} = {_sql_text(x)}" for n, x in zip(names, v, strict=True))
                    + ")"
                    for v in only
                )
            group = ", ".join([*names, "ws"])
            # A record's place: its step, the sets' order (keyed first), the window size,
            # then the step's first event of its series' window.
            parts.append(
                f"""select s, {d} as d, {w} as w, {values} as v, floor(t / {w}) * {w} as ws,
                    (s::BIGINT << 40) | ({rank[d]}::BIGINT << 36)
                    | ({int(w != 60)}::BIGINT << 35) | min(rn) as pos,
                    sum(cost) c, count(*) n, sum(it) it, sum(cr) cr, sum(cw) cw, sum(ot) ot,
                    sum(rt) rt
                    from e {where} group by s, {group}"""
            )
    query = f"""
    with g as ({" union all ".join(parts)}),
    h as (
      select g.*,
        sum(c) over p as ac, sum(n) over p as an, sum(it) over p as ait, sum(cr) over p as acr,
        sum(cw) over p as acw, sum(ot) over p as aot, sum(rt) over p as art
      from g
      window p as (partition by d, w, v, ws order by s rows unbounded preceding))
    select s, d, v, w, ws::BIGINT as ws, ac::BIGINT as ac, an::BIGINT as an,
           ait::BIGINT as ait, acr::BIGINT as acr, acw::BIGINT as acw, aot::BIGINT as aot,
           art::BIGINT as art
    from h
    order by pos
    """
    # Fetched as columns: what a watch that reads columns would take (step 2 of the plan);
    # records are made apart.
    columns = con.execute(query).fetchnumpy()
    con.close()
    return columns, _cpu_s() - cpu


def records_of(columns: dict[str, Any], config: Config) -> list[Record]:
    """The columns as ``Record`` tuples, to compare with the Python half's."""
    dims, _ = _plan(config)
    names = ["s", "d", "v", "w", "ws", "ac", "an", "ait", "acr", "acw", "aot", "art"]
    lists = [columns[n].tolist() for n in names]
    out: list[Record] = []
    for s, d, v, w, ws, *metrics in zip(*lists, strict=True):
        values = tuple(None if x is None or x is masked else x for x in v)
        out.append((int(s), dims[d], values, int(w), int(ws), 0, 0, (*map(int, metrics), 0)))
    return out


def resend(path: Path, share: float, seed: int = 5) -> int:
    """Re-send ``share`` of the file's lines 1-200 lines after the first copy; the copies."""
    rng = random.Random(seed)
    lines = path.read_bytes().splitlines(keepends=True)
    due: dict[int, list[bytes]] = {}
    copies = 0
    with path.open("wb") as out:
        for i, line in enumerate(lines):
            out.write(line)
            for again in due.pop(i, ()):
                out.write(again)
            if rng.random() < share:
                due.setdefault(i + rng.randint(1, 200), []).append(line)
                copies += 1
        for rest in due.values():
            out.writelines(rest)
    return copies


def run(events: int, weeks: float, threads: int, duplicates: float = 0.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-columnar-") as tmp:
        path = Path(tmp) / "events.jsonl"
        events = write_events(path, events, weeks)
        copies = resend(path, duplicates) if duplicates else 0
        config = bench_config(events, weeks)
        want, python_cpu = python_half(path, config)
        columns, duck_cpu = duckdb_half(path, config, threads)
        cpu = _cpu_s()
        got = records_of(columns, config)
        records_cpu = _cpu_s() - cpu
    mismatches = [i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b]
    first = mismatches[0] if mismatches else None
    return {
        "events": events,
        "copies_resent": copies,
        "records": len(want),
        "steps": want[-1][0] + 1 if want else 0,
        "python_cpu_s": round(python_cpu, 2),
        "duckdb_cpu_s": round(duck_cpu, 2),
        "duckdb_threads": threads,
        "columns_to_records_cpu_s": round(records_cpu, 2),
        "python_over_duckdb_cpu": round(python_cpu / duck_cpu, 2) if duck_cpu else None,
        "same_records": len(want) == len(got) and not mismatches,
        "records_differing": len(mismatches) + abs(len(want) - len(got)),
        "first_difference": None if first is None else [str(want[first]), str(got[first])],
    }


def main(argv: list[str] | None = None) -> None:
    parser = file_parser(__doc__)
    parser.add_argument(
        "--duplicates", type=float, default=0.0, help="share of events re-sent (default 0)"
    )
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's threads (default 2)")
    args = parser.parse_args(argv)
    result = run(args.events, args.weeks, args.threads, args.duplicates)
    show(result, args.json)


if __name__ == "__main__":
    main()
