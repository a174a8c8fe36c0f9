"""Report math on small hand-made inputs, a hand-made store, the chart and the command's
errors. (The end-to-end exactness test is tests/streamer/test_store_stage.py.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from spendbrake._chart import spend_chart
from spendbrake._report import (
    ReportError,
    build_report,
    cache_savings_usd,
    grow,
    parse_period,
    percentile,
    project,
    share_pct,
    team_model_costs,
    trend_pct,
)
from spendbrake.cli import main
from spendbrake.schemas import PriceTable, RollupRecord, format_ts, parse_ts
from spendbrake.streamer import StoreBatch, apply_batch, connect_store

OCT = parse_ts("2026-10-01T00:00:00Z")
SEP = parse_ts("2026-09-01T00:00:00Z")
NOV = parse_ts("2026-11-02T00:00:00Z")
PNG = b"\x89PNG\r\n\x1a\n"
PRICES = PriceTable.from_entries(
    [
        {
            "model": "m1",
            "provider": "acme",
            "prices": [
                {"effective_from": "2026-01-01", "input": 3.0, "cache_read": 0.3, "output": 15.0}
            ],
        }
    ]
)


def test_periods() -> None:
    month = parse_period("2026-10")
    assert (month.start, month.days, month.prior().label) == (OCT, 31.0, "2026-09")
    week = parse_period("2026-W41")
    assert week.start == parse_ts("2026-10-05T00:00:00Z") and week.prior().label == "2026-W40"
    day = parse_period("2026-01-01")
    assert day.days == 1 and day.prior().label == "2025-12-31"
    assert parse_period("2026-01").prior().label == "2025-12"
    for bad in ("2026-13", "October", "2026-W60", "2026-02-30"):
        with pytest.raises(ReportError, match="period"):
            parse_period(bad)


def test_trend_share_and_percentiles() -> None:
    assert trend_pct(150, 100) == 50.0 and trend_pct(50, 100) == -50.0
    assert trend_pct(10, 0) is None
    assert share_pct(25, 200) == 12.5 and share_pct(1, 0) == 0.0
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile([7], 0.5)) == (5, 10, 7)
    assert percentile([], 0.5) is None


def test_cache_savings_use_full_input_minus_cache_read_price() -> None:
    # 1M cached tokens: $3.00 at the input price, $0.30 at the cache-read price.
    assert cache_savings_usd(PRICES, "m1", OCT, 1_000_000) == pytest.approx(2.70)
    assert cache_savings_usd(PRICES, "unknown-model", OCT, 1_000_000) is None


def test_projection_flat_and_growing() -> None:
    flat = project(100.0, [10.0] * 10, 10.0, 10.0, 30.0, 20.0, 100.0, 1000.0)
    assert flat["run_rate_usd_per_day"] == 10.0 and flat["growth_per_period_pct"] == 0.0
    assert flat["period_end_usd"] == pytest.approx(300.0)
    assert flat["year_end_usd"] == pytest.approx(1000.0 + 10.0 * 100)
    # Twice the prior per-day spend: +100% a period, compounded daily over 30 days.
    up = project(100.0, [10.0] * 10, 5.0, 10.0, 30.0, 20.0, 100.0, 1000.0)
    daily = 2 ** (1 / 30) - 1
    assert up["daily_growth_pct"] == pytest.approx(daily * 100)
    # The closed form against a fine sum of the growing daily rate.
    steps = 200_000
    numeric = sum(10.0 * (1 + daily) ** ((i + 0.5) * 20 / steps) for i in range(steps)) * 20 / steps
    assert up["period_end_usd"] == pytest.approx(100.0 + numeric, rel=1e-6)
    assert up["period_end_usd"] > flat["period_end_usd"]
    # "$X/month by the year's end": the run rate grown over the 100 days left, per month.
    assert flat["monthly_rate_at_year_end_usd"] == pytest.approx(10.0 * 30.4375)
    assert up["monthly_rate_at_year_end_usd"] == pytest.approx(10.0 * 2 ** (100 / 30) * 30.4375)
    assert any("run rate $10.00/day" in line for line in up["assumptions"])
    # No complete day yet: spend so far per elapsed day; no prior spend: flat.
    young = project(6.0, [], 0.0, 0.5, 31.0, 30.5, 90.0, 6.0)
    assert young["run_rate_usd_per_day"] == 12.0 and "assumed flat" in young["assumptions"][1]
    assert grow(1.0, 0.0, 0) == 0.0 and grow(2.0, 0.1, 1.0) == pytest.approx(0.2 / math.log(1.1))


def rollup(
    dims: tuple[str, ...], values: tuple[Any, ...], day: float, cost_usd: float, **kw: Any
) -> RollupRecord:
    calls, input_t, cached = kw.get("calls", 10), kw.get("input", 1000), kw.get("cached", 0)
    return RollupRecord(
        dims,
        values,
        86400,
        int(day),
        kw.get("partition", 0),
        0,
        (round(cost_usd * 1e9), calls, input_t, cached, 0, 100, 0, 0),
        kw.get("outcomes", {}),
    )


def make_store(path: Path, team_model: bool = True) -> Path:
    """October: search $30 + support $10 on Oct 1-2; September: search $10, support $10."""
    batch = StoreBatch()
    for day, search, support in ((OCT, 20.0, 6.0), (OCT + 86400, 10.0, 4.0), (SEP, 10.0, 10.0)):
        batch.add_rollup(rollup((), (), day, search + support, outcomes={"ticket_resolved": 4}))
        batch.add_rollup(rollup(("team",), ("search",), day, search))
        # Support's day comes from two input partitions: the report adds them.
        batch.add_rollup(rollup(("team",), ("support",), day, support / 2, partition=0))
        batch.add_rollup(rollup(("team",), ("support",), day, support / 2, partition=1))
        batch.add_rollup(rollup(("model",), ("m1",), day, search + support, cached=1_000_000))
        batch.add_rollup(rollup(("customer",), ("acme-corp",), day, search))
        batch.add_rollup(rollup(("customer",), (None,), day, support))
        if team_model:
            batch.add_rollup(rollup(("team", "model"), ("search", "m1"), day, search))
            batch.add_rollup(rollup(("team", "model"), ("support", "m1"), day, support))
    batch.add_alert(
        {
            "id": "budget:search",
            "seq": 0,
            "kind": "budget",
            "scope": {"team": "search"},
            "detected_at": "2026-10-02T10:00:00Z",
            "severity": "warning",
            "action": "alert",
            "reason": "team=search: search-daily spent $812.40 of its $1,000.00 daily budget: "
            "81% by 10:00, past its 80% alert",
        }
    )
    # Its escalation: one more record of the same incident.
    batch.add_alert(
        {
            "id": "budget:search",
            "seq": 1,
            "kind": "budget",
            "scope": {"team": "search"},
            "detected_at": "2026-10-02T11:00:00Z",
            "severity": "critical",
            "action": "alert",
        }
    )
    # A trend: severity info, never paged; the digest lists it.
    batch.add_alert(
        {
            "id": "wow/api_key=key-1/1791331200",
            "seq": 0,
            "kind": "wow",
            "scope": {"api_key": "key-1"},
            "detected_at": "2026-10-02T00:10:00Z",
            "window_start": "2026-10-01T00:00:00Z",
            "window_end": "2026-10-02T00:00:00Z",
            "severity": "info",
            "action": "alert",
            "reason": "api_key=key-1: creeping up",
        }
    )
    batch.add_action(
        {
            "id": "t1",
            "action": "pause",
            "target": "key-1",
            "result": "ok",
            "at": "2026-10-02T10:00:05Z",
        }
    )
    # Performed in November (a backlog caught up late) for an alert of October: October's.
    batch.add_action(
        {"id": "t2", "action": "block", "alert": "budget:search#0", "result": "dry_run", "at": NOV}
    )
    # Performed in November for nothing of October: not October's.
    batch.add_action({"id": "t3", "action": "unblock", "result": "ok", "at": NOV})
    con = connect_store(path)
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    return path


def test_report_on_a_hand_made_store(tmp_path: Path) -> None:
    con = connect_store(make_store(tmp_path / "s.duckdb"), read_only=True)
    now = OCT + 2 * 86400  # two complete days of October
    report = build_report(con, parse_period("2026-10"), "team", now=now, prices=PRICES)
    assert report["total"]["cost_nusd"] == 40 * 10**9
    assert report["total"]["trend_pct"] == pytest.approx(100.0)
    rows = {r["team"]: r for r in report["rows"]}
    assert rows["search"]["cost_usd"] == 30.0 and rows["support"]["cost_usd"] == 10.0
    assert rows["search"]["share_pct"] == 75.0 and rows["support"]["share_pct"] == 25.0
    assert (
        rows["search"]["trend_pct"] == pytest.approx(200.0) and rows["support"]["trend_pct"] == 0.0
    )
    assert rows["support"]["calls"] == 40  # two partitions a day, two days
    assert report["outcomes"] == [
        {"outcome": "ticket_resolved", "count": 8, "cost_per_outcome_usd": 5.0}
    ]
    assert report["caching"]["saved_usd"] == pytest.approx(2 * 2.70)
    assert report["total"]["cache_hit_ratio"] is not None
    assert report["customers"]["count"] == 1
    assert report["customers"]["top"][0] == {
        "customer": "acme-corp",
        "cost_nusd": 30 * 10**9,
        "cost_usd": 30.0,
        "calls": 20,
        "cost_per_call_usd": 1.5,
        "share_pct": 75.0,
    }
    assert report["alerts"]["trends"] == [
        {
            "detected_at": "2026-10-02T00:10:00.000000Z",
            "kind": "wow",
            "scope": {"api_key": "key-1"},
            "reason": "api_key=key-1: creeping up",
            "id": "wow/api_key=key-1/1791331200",
            "window_start": "2026-10-01T00:00:00.000000Z",
            "window_end": "2026-10-02T00:00:00.000000Z",
        }
    ]
    # Three records; one incident alerted (escalated once) and one trend.
    alerts = report["alerts"]
    assert (alerts["count"], alerts["incidents"], alerts["trend_count"]) == (3, 1, 1)
    assert alerts["incidents_by_kind"] == {"budget": 1}
    assert report["actions"]["by_result"] == {
        "pause ok": 1,
        "block dry_run": 1,
    }
    # Run rate $20/day (mean of Oct 1-2), +200% per-day growth vs September spread over 31 days.
    projection = report["projection"]
    assert projection["run_rate_usd_per_day"] == 20.0
    assert projection["growth_per_period_pct"] == pytest.approx((20 / (20 / 30) - 1) * 100)
    assert projection["period_end_usd"] > 40 + 20 * 29
    assert report["traces"] is None
    with pytest.raises(
        ReportError,
        match="no spend recorded for 2026-11: the store holds days 2026-09-01 to 2026-10-02",
    ):
        build_report(con, parse_period("2026-11"), "team", now=now)


def test_chart_stacked_and_unstacked(tmp_path: Path) -> None:
    for team_model in (True, False):
        con = connect_store(
            make_store(tmp_path / f"{team_model}.duckdb", team_model), read_only=True
        )
        costs, stacked = team_model_costs(con, parse_period("2026-10"))
        assert stacked is team_model
        assert costs["search"] == ({"m1": 30 * 10**9} if team_model else {"all": 30 * 10**9})
        out = spend_chart(costs, stacked, "Spend by team, 2026-10", tmp_path / f"{team_model}.png")
        data = out.read_bytes()
        assert data[:8] == PNG and len(data) > 2000


def test_report_command(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.duckdb")
    runner = CliRunner()
    table = runner.invoke(main, ["report", "--period", "2026-10", "--store", str(store)])
    assert table.exit_code == 0, table.output
    assert "search" in table.output and "per ticket_resolved" in table.output
    # The last day, not the next period's first ("2026-10-01 to 2026-11-01" read as 32 days).
    assert "Spend report 2026-10 (Thu 2026-10-01 to Sat 2026-10-31, UTC; by team;" in table.output
    assert "assumes run rate" in table.output
    # Its alert's reason whole, the scope it opens with said once (cut at 64 characters, it
    # lost its figures: "... where 97.8 a…").
    assert (
        "team=search warning alert: search-daily spent $812.40 of its $1,000.00 daily budget: "
        "81% by 10:00, past its 80% alert" in " ".join(table.output.split())
    ), table.output
    csv = runner.invoke(
        main,
        [
            "report",
            "--period",
            "2026-10",
            "--store",
            str(store),
            "--format",
            "csv",
            "--by",
            "model",
        ],
    )
    lines = csv.output.strip().splitlines()
    assert lines[0].startswith("model,calls,") and lines[1].startswith("m1,20,2000,")
    chart = tmp_path / "c.png"
    charted = runner.invoke(
        main,
        [
            "report",
            "--period",
            "2026-10",
            "--store",
            str(store),
            "--chart",
            str(chart),
            "--format",
            "json",
        ],
    )
    assert charted.exit_code == 0 and chart.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-10", "--store", "missing.duckdb"], "error: no store at missing.duckdb"),
        (["--period", "2026-11"], "error: no spend recorded for 2026-11"),
        (["--period", "Oct"], "error: period 'Oct'"),
        (["--period", "2026-W60"], "error: period '2026-W60': week must be in 1..53 for 2026\n"),
        (["--period", "2027-W53"], "error: period '2027-W53': week must be in 1..52 for 2027\n"),
        (["--period", "2026-10", "--chart", "/dev/full"], "error: cannot write the chart"),
        # A file that is no store: it said "Catalog Error: Cannot launch in-memory database
        # in read-only mode!", or to move a config file aside, or raised a traceback.
        (["--period", "2026-10", "--store", "spendbrake.yaml"], "error: spendbrake.yaml is not a"),
        (
            ["--period", "2026-10", "--store", "other.duckdb"],
            "error: other.duckdb is a DuckDB file",
        ),
    ],
)
def test_report_errors_are_one_line(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "state" / "store" / "spend.duckdb")
    (tmp_path / "spendbrake.yaml").write_text("budgets: []\n")
    with duckdb.connect(str(tmp_path / "other.duckdb")) as other:
        other.execute("CREATE TABLE t (a INT)")
    result = CliRunner().invoke(main, ["report", *args, "--state-dir", "state"])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


HOSTILE_TEAM = '=HYPERLINK("http://evil")\x1b[2J\u202e'
LINK_TEAM = "[link=http://evil]ops[/link][bold]"


def test_caller_names_reach_the_terminal_and_csv_inert(tmp_path: Path) -> None:
    batch = StoreBatch()
    for team, cost in ((HOSTILE_TEAM, 5.0), (LINK_TEAM, 3.0), ("-2+3", 1.0)):
        batch.add_rollup(rollup(("team",), (team,), OCT, cost))
    batch.add_rollup(rollup((), (), OCT, 9.0))
    batch.add_rollup(rollup(("customer",), ("@evil\x07",), OCT, 9.0))
    batch.add_action(
        {"id": "t1", "action": "block", "target": "k\x1b]0;pwned\x07", "result": "ok", "at": OCT}
    )
    con = connect_store(tmp_path / "s.duckdb")
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    runner = CliRunner()
    args = ["report", "--period", "2026-10", "--store", str(tmp_path / "s.duckdb")]
    table = runner.invoke(main, args, env={"COLUMNS": "300"})  # no cell cut short
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.output and "\x07" not in table.output
    assert "\u202e" not in table.output and "\\x1b[2J\\u202e" in table.output
    assert "[link=http://evil]ops[/link][bold]" in table.output  # shown, not applied
    assert "@evil\\x07" in table.output and "k\\x1b]0;pwned\\x07" in table.output
    csv = runner.invoke(main, [*args, "--format", "csv"]).output.splitlines()
    assert any(
        line.startswith('"\'=HYPERLINK(""http://evil"")\\x1b[2J\\u202e",') for line in csv
    ), csv
    assert any(line.startswith("'-2+3,") for line in csv), csv
    assert not any(line.startswith(("=", "-", "+", "@", '"=')) for line in csv), csv


def stored(path: Path, batch: StoreBatch) -> Any:
    """A store holding ``batch``, opened read-only as ``report`` opens it."""
    con = connect_store(path)
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    return connect_store(path, read_only=True)


def test_a_projection_leaves_out_the_days_before_counting_began(tmp_path: Path) -> None:
    """A deployment begun on October 3 at 22:00 ($20 that day, $240 on each of the next
    two): on October 6 the run rate is $240 a day, not the five days' mean with October
    1-3 taken as $0 ($100), and the projection says why."""
    batch = StoreBatch()
    for day, cost in ((OCT + 2 * 86400, 20.0), (OCT + 3 * 86400, 240.0), (OCT + 4 * 86400, 240.0)):
        batch.add_rollup(rollup((), (), day, cost))
        batch.add_rollup(rollup(("team",), ("search",), day, cost))
        hours = range(22, 24) if cost == 20.0 else range(24)
        for hour in hours:
            numbers = (round(cost / len(hours) * 1e9), 1, 0, 0, 0, 0, 0, 0)
            batch.add_rollup(RollupRecord((), (), 3600, int(day) + hour * 3600, 0, 0, numbers, {}))
    con = stored(tmp_path / "s.duckdb", batch)
    report = build_report(con, parse_period("2026-10"), "team", now=OCT + 5.5 * 86400)
    projection = report["projection"]
    assert projection["run_rate_usd_per_day"] == pytest.approx(240.0)
    assert any("counting began 2026-10-03 22:00 UTC" in a for a in projection["assumptions"])
    assert projection["period_end_usd"] == pytest.approx(500.0 + 240.0 * 25.5)


def test_a_projection_grows_against_the_prior_period_s_days_counted(tmp_path: Path) -> None:
    """Counting began September 21: $100 a day through ten days of September and five of
    October is flat, not +200 % against September's $1,000 spread over all its 30 days
    (seen on the demo's store: December "grew" +126 % and the year's end doubled)."""
    batch = StoreBatch()
    for day in [SEP + i * 86400 for i in range(20, 30)] + [OCT + i * 86400 for i in range(5)]:
        batch.add_rollup(rollup((), (), day, 100.0))
        batch.add_rollup(rollup(("team",), ("search",), day, 100.0))
        batch.add_rollup(
            RollupRecord((), (), 3600, int(day), 0, 0, (100 * 10**9, 1) + (0,) * 6, {})
        )
    con = stored(tmp_path / "s.duckdb", batch)
    report = build_report(con, parse_period("2026-10"), "team", now=OCT + 5 * 86400)
    projection = report["projection"]
    assert projection["growth_per_period_pct"] == pytest.approx(0.0, abs=1e-6)
    assert projection["period_end_usd"] == pytest.approx(100.0 * 31)


def test_a_period_still_running_is_compared_with_as_much_of_the_one_before(
    tmp_path: Path,
) -> None:
    """$10 a day through September and the first days of October: on October 3 at noon the
    month so far ($25: two days and half of the third's $10) is flat against September's
    first 2.5 days, not -92 % against all of September."""
    batch = StoreBatch()
    days = [SEP + i * 86400 for i in range(30)] + [OCT, OCT + 86400]
    for day in days:
        batch.add_rollup(rollup((), (), day, 10.0))
        batch.add_rollup(rollup(("team",), ("search",), day, 10.0))
    batch.add_rollup(rollup((), (), OCT + 2 * 86400, 5.0))  # October 3 so far
    batch.add_rollup(rollup(("team",), ("search",), OCT + 2 * 86400, 5.0))
    path = tmp_path / "s.duckdb"
    con = connect_store(path)
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    con = connect_store(path, read_only=True)
    now = OCT + 2.5 * 86400
    running = build_report(con, parse_period("2026-10"), "team", now=now, prices=PRICES)
    assert running["total"]["prior_cost_usd"] == 300.0  # the whole prior month, as shown
    assert running["total"]["trend_pct"] == pytest.approx(0.0)
    assert running["rows"][0]["trend_pct"] == pytest.approx(0.0)
    assert any("still running (2.5 of 31 days)" in note for note in running["notes"])
    done = build_report(con, parse_period("2026-09"), "team", now=now, prices=PRICES)
    assert not any("still running" in note for note in done["notes"])


def test_year_so_far_ends_with_the_period_or_the_day_holding_now(tmp_path: Path) -> None:
    """$10 a day through October, $500 on November 1 (and, from a skewed clock, $1,000 on
    November 2). October's report run on November 15 counts October alone as the year so
    far: November 1 lies in the 61 projected days. November's report on November 1 at
    noon counts the day holding now, not the day after it."""
    batch = StoreBatch()
    for day, cost in [*((OCT + i * 86400, 10.0) for i in range(31)), (NOV - 86400, 500.0)]:
        batch.add_rollup(rollup((), (), day, cost))
        batch.add_rollup(rollup(("team",), ("search",), day, cost))
    batch.add_rollup(rollup((), (), NOV, 1000.0))
    path = tmp_path / "s.duckdb"
    con = connect_store(path)
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    con = connect_store(path, read_only=True)
    october = build_report(
        con, parse_period("2026-10"), "team", now=NOV + 13 * 86400, prices=PRICES
    )["projection"]
    assert october["assumptions"][2].endswith("61.0 to the year end; year so far $310.00")
    assert october["year_end_usd"] == pytest.approx(310 + 61 * 10)  # September empty: flat
    november = build_report(
        con, parse_period("2026-11"), "team", now=NOV - 86400 / 2, prices=PRICES
    )["projection"]
    assert november["assumptions"][2].endswith("year so far $810.00")


def test_a_report_says_when_its_traces_were_dropped(tmp_path: Path) -> None:
    """Weeks of trace partials dropped by ``store.trace_weeks`` leave a period before them
    with no (or a partial) cost per trace: the report says so instead of reading as none."""
    from spendbrake.streamer import TracePartial, drop_trace_weeks

    path = make_store(tmp_path / "s.duckdb")
    con = connect_store(path)
    batch = StoreBatch()
    for i, ts in enumerate((OCT + 3600, NOV + 3600)):
        batch.add_trace(TracePartial(f"t{i}", 0, "e", "search", None, None, 10**9, 1, ts, ts))
    apply_batch(con, batch, {})
    assert drop_trace_weeks(con, 1)
    con.close()
    con = connect_store(path, read_only=True)
    report = build_report(con, parse_period("2026-10"), "team", now=OCT + 2 * 86400)
    assert report["traces"] is None
    (note,) = [n for n in report["notes"] if "trace" in n]
    assert note.startswith("cost per trace counts traces from 2026-11-02 on"), note


def test_the_cost_per_trace_line_says_from_when_it_counts(tmp_path: Path) -> None:
    """October's report after ``store.trace_weeks`` kept only the week of Oct 26 printed
    "cost per trace (1 traces): ..." as if over the month; the note saying otherwise came
    a dozen lines below. The line says from when its traces count."""
    from spendbrake.streamer import TracePartial, drop_trace_weeks

    path = make_store(tmp_path / "s.duckdb")
    con = connect_store(path)
    batch = StoreBatch()
    for i, ts in enumerate((OCT + 3600, OCT + 27 * 86400)):  # Oct 1 and Oct 28
        batch.add_trace(TracePartial(f"t{i}", 0, "e", "search", None, None, 10**9, 1, ts, ts))
    apply_batch(con, batch, {})
    assert drop_trace_weeks(con, 1) == ["traces_20260928"]
    con.close()
    args = ["report", "--period", "2026-10", "--store", str(path)]
    table = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "cost per trace (1 traces from 2026-10-26 on): p50 $1.00" in table.output


def test_an_action_with_no_target_reads_without_a_gap(tmp_path: Path) -> None:
    """The action line joined its words with a space each, so an empty target left two."""
    batch = StoreBatch()
    batch.add_rollup(rollup(("team",), ("search",), OCT, 5.0))
    batch.add_rollup(rollup((), (), OCT, 5.0))
    batch.add_action({"id": "t2", "action": "resume", "target": "", "result": "ok", "at": OCT})
    con = connect_store(tmp_path / "s.duckdb")
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    args = ["report", "--period", "2026-10", "--store", str(tmp_path / "s.duckdb")]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    line = next(s for s in result.output.splitlines() if s.endswith("resume ok"))
    assert "  resume" not in line.strip(), line


def test_calls_without_a_price_are_marked_not_shown_as_spend_of_zero(tmp_path: Path) -> None:
    """A model the price table does not know counted as $0.00 in ``--by model``, unmarked:
    only the JSON's ``unpriced_calls`` told."""
    batch = StoreBatch()
    priced = (round(30 * 1e9), 10, 1000, 0, 0, 100, 0, 0)
    unknown = (0, 4, 400, 0, 0, 40, 0, 4)  # 4 calls, none priced
    total = tuple(a + b for a, b in zip(priced, unknown, strict=True))
    batch.add_rollup(RollupRecord((), (), 86400, OCT, 0, 0, total, {}))
    batch.add_rollup(RollupRecord(("model",), ("gpt-4o",), 86400, OCT, 0, 0, priced, {}))
    batch.add_rollup(RollupRecord(("model",), ("in-house-7b",), 86400, OCT, 0, 0, unknown, {}))
    path = tmp_path / "s.duckdb"
    con = connect_store(path)
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    args = ["report", "--period", "2026-10", "--store", str(path), "--by", "model"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    rows = {line.split()[0]: line for line in result.output.splitlines() if "│" in line}
    assert "$0.00*" in rows["in-house-7b"] and "$30.00 " in rows["gpt-4o"], result.output
    assert "* holds calls without a price, counted as $0" in text
    assert (
        "note: 4 of 14 calls had no price (model in-house-7b): they count as $0 in every figure"
    ) in text
    csv = CliRunner().invoke(main, [*args, "--format", "csv"]).output.splitlines()
    assert csv[0].endswith(",unpriced_calls") and csv[2].startswith("in-house-7b,4,")
    assert csv[2].endswith(",4")


def test_every_alert_and_action_is_in_the_json_and_the_table_shows_the_most_severe(
    tmp_path: Path,
) -> None:
    """24 alerts and 12 audit records: the json held 20 alerts of a count of 24, and the
    table the first 10 by time, so the month's hard stop (the last) showed nowhere."""
    batch = StoreBatch()
    batch.add_rollup(rollup((), (), OCT, 10.0))
    for i in range(23):
        at = format_ts(OCT + i * 3600)
        batch.add_alert({"id": f"wow/{i}", "seq": 0, "kind": "wow", "scope": {"team": "t"},
                         "detected_at": at, "severity": "info", "action": "alert",
                         "reason": f"trend {i}"})  # fmt: skip
    batch.add_alert({"id": "budget/b/1", "seq": 0, "kind": "budget", "scope": {"team": "t"},
                     "detected_at": format_ts(OCT + 30 * 3600), "severity": "critical",
                     "action": "pause", "reason": "b: hard stop at 120%",
                     "threshold": 1.2})  # fmt: skip
    for i in range(12):
        batch.add_action({"id": f"a{i}", "action": "post", "result": "ok",
                          "at": format_ts(OCT + i * 60)})  # fmt: skip
    path = tmp_path / "s.duckdb"
    stored(path, batch).close()
    args = ["report", "--period", "2026-10", "--store", str(path)]
    shown = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "budget 120% team=t critical pause: b: hard stop at 120%" in shown.output
    assert "… 14 more (the most severe are shown; --format json lists every one)" in shown.output
    assert "… 2 more (--format json lists every one)" in shown.output
    data = orjson.loads(CliRunner().invoke(main, [*args, "--format", "json"]).output)
    assert len(data["alerts"]["items"]) == data["alerts"]["count"] == 24
    assert len(data["actions"]["items"]) == data["actions"]["count"] == 12
