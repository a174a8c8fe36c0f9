"""The store module on a real DuckDB file, no broker: keyed upserts and offsets that
commit with their rows or not at all."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from spendbrake.schemas import RollupRecord, encode_alert
from spendbrake.streamer import StoreBatch, TracePartial, apply_batch, connect_store
from spendbrake.streamer._processor import unpriced_model_alert
from spendbrake.streamer._store import load_offsets
from tests.streamer.streams import T0

HOUR = 1_791_158_400


def rollup(cost: int, partition: int = 0, epoch: int = 0, window_s: int = 3600) -> RollupRecord:
    return RollupRecord(
        dims=("team", "model"),
        values=("search", None),
        window_s=window_s,
        window_start=HOUR,
        partition=partition,
        epoch=epoch,
        metrics=(cost, 2, 100, 40, 0, 10, 0, 0),
        outcomes={"ticket_resolved": 1},
    )


def batch(*records: RollupRecord) -> StoreBatch:
    out = StoreBatch()
    for record in records:
        out.add_rollup(record)
    return out


def totals(con: object) -> tuple[int, int, int]:
    return con.execute(  # type: ignore[attr-defined]
        "SELECT COUNT(*), SUM(cost_nusd), SUM(calls) FROM rollups"
    ).fetchone()


def test_upsert_twice_is_once(tmp_path: Path) -> None:
    con = connect_store(tmp_path / "s.duckdb")
    records = [rollup(5, partition=0), rollup(7, partition=1), rollup(1, epoch=3)]
    apply_batch(con, batch(*records), {("r", 0): 10})
    apply_batch(con, batch(*records), {("r", 0): 10})  # a replay after a crash
    assert totals(con) == (3, 13, 6)
    # A later absolute total for a key replaces it; other keys stay.
    apply_batch(con, batch(rollup(9, partition=0)), {("r", 0): 11})
    assert totals(con) == (3, 17, 6)
    row = con.execute("SELECT team, model, feature, outcomes FROM rollups LIMIT 1").fetchone()
    assert row == ("search", None, None, '{"ticket_resolved":1}')


def test_only_hourly_and_daily_windows_are_kept(tmp_path: Path) -> None:
    kept = batch(rollup(1, window_s=60), rollup(2, window_s=3600), rollup(3, window_s=86400))
    assert len(kept) == 2


def test_a_batch_keeps_the_last_record_per_key() -> None:
    assert len(batch(rollup(1), rollup(2))) == 1
    only = batch(rollup(1), rollup(2))
    assert next(iter(only.rollups.values()))[14] == 2  # cost_nusd after 6 key + 8 attrs


def test_offsets_commit_with_the_rows_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    con = connect_store(path)
    apply_batch(con, batch(rollup(5)), {("r", 0): 1, ("r", 1): 4})
    # The offsets step fails (no offset): the rows written before it in the same
    # transaction must be gone too.
    with pytest.raises(Exception, match="NOT NULL"):
        apply_batch(con, batch(rollup(5, partition=2)), {("r", 0): None})  # type: ignore[dict-item]
    assert totals(con) == (1, 5, 2)
    assert load_offsets(con) == {("r", 0): 1, ("r", 1): 4}
    con.close()
    # And what was committed survives a reopen.
    again = connect_store(path, read_only=True)
    assert totals(again) == (1, 5, 2) and load_offsets(again) == {("r", 0): 1, ("r", 1): 4}


def test_traces_alerts_and_audit_records_upsert_by_key(tmp_path: Path) -> None:
    con = connect_store(tmp_path / "s.duckdb")
    rows = StoreBatch()
    rows.add_trace(TracePartial("t1", 0, "e1", "search", None, "c1", 50, 2, 10.0, 12.0, {"m": 2}))
    rows.add_alert(
        {"id": "budget:x", "seq": 1, "kind": "budget", "detected_at": "2026-10-05T01:00:00Z"}
    )
    # An operator notice as the ingest stage writes it: no event time it was detected at.
    rows.add_alert(orjson.loads(encode_alert(unpriced_model_alert("acme", "m", int(T0)))))
    rows.add_action({"id": "task-1", "action": "pause", "result": "ok", "at": HOUR + 5})
    for _ in range(2):
        apply_batch(con, rows, {})
    counts = [
        con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("traces", "alerts", "actions")
    ]
    assert counts == [1, 2, 1]
    assert con.execute("SELECT detected_at FROM alerts WHERE seq = 1").fetchone() == (
        HOUR + 3600.0,
    )
    with pytest.raises(KeyError):
        rows.add_alert({"kind": "junk"})


def test_an_alert_in_several_records_is_one_row_with_its_first_targets(tmp_path: Path) -> None:
    """Continuations carry more targets for the action stage: the alert's row is its part
    0 (the row a continuation once overwrote, being keyed by id and seq too)."""
    from spendbrake.schemas import Alert, alert_records

    stop = Alert(
        kind="budget",
        severity="critical",
        action="pause",
        id="budget/x/1",
        seq=0,
        reason="over",
        targets=[f"k{i}" for i in range(2_500)],
    )
    rows = StoreBatch()
    for record in alert_records(stop):
        rows.add_alert(orjson.loads(encode_alert(record)))
    con = connect_store(tmp_path / "s.duckdb")
    apply_batch(con, rows, {})
    ((targets, record),) = con.execute("SELECT targets, record FROM alerts").fetchall()
    assert orjson.loads(targets) == stop.targets[:1000]
    assert orjson.loads(record)["more_targets"] == 1_500


def partial(trace: str, start_ts: float, cost: int = 10) -> TracePartial:
    return TracePartial(trace, 0, f"{trace}-e1", "search", None, None, cost, 1, start_ts, start_ts)


def test_trace_partials_go_to_their_weeks_tables_and_read_as_one(tmp_path: Path) -> None:
    """Each write loaded the primary-key index of every trace ever stored (random ids touch
    all of it), so the store stage's memory and time per write grew with its age; each
    week's partials now have their own table, and ``traces`` reads them all."""
    from spendbrake.streamer._store import trace_table, trace_week

    monday = 1_796_601_600.0  # 2026-12-07T00:00:00Z, a Monday
    con = connect_store(tmp_path / "s.duckdb")
    assert con.execute("SELECT COUNT(*) FROM traces").fetchone() == (0,)  # no week yet
    rows = StoreBatch()
    for trace, ts in (("a", monday - 0.001), ("b", monday), ("c", monday + 6.99 * 86400)):
        rows.add_trace(partial(trace, ts))
    for _ in range(2):  # a record read twice replaces itself
        apply_batch(con, rows, {("traces", 0): 3})
    tables = {
        name: con.execute(f"SELECT list(trace_id ORDER BY trace_id) FROM {name}").fetchone()[0]
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'traces_%'"
        ).fetchall()
    }
    assert tables == {"traces_20261130": ["a"], "traces_20261207": ["b", "c"]}, tables
    assert [trace_table(trace_week(t)) for t in (monday - 0.001, monday)] == list(sorted(tables))
    assert con.execute("SELECT COUNT(*), SUM(cost_nusd) FROM traces").fetchone() == (3, 30)
    con.close()
    # A reader sees the same rows through the view.
    reader = connect_store(tmp_path / "s.duckdb", read_only=True)
    assert reader.execute("SELECT list(trace_id ORDER BY trace_id) FROM traces").fetchone() == (
        ["a", "b", "c"],
    )
    reader.close()


def test_a_store_with_one_traces_table_is_split_into_weeks_once(tmp_path: Path) -> None:
    """A store written before the week tables: its rows move to their weeks at the first
    open, each to the table a new write of the same partial goes to (no row twice)."""
    import duckdb

    from spendbrake.streamer._store import SCHEMA

    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    columns, key = SCHEMA["traces"]
    body = ", ".join(f'"{name}" {kind}' for name, kind in columns)
    old.execute(f"CREATE TABLE traces ({body}, PRIMARY KEY ({', '.join(key)}))")
    monday = 1_796_601_600.0
    starts = [monday - 8 * 86400, monday - 1e-6, monday, monday + 1e-6, monday + 86400 * 3]
    for i, ts in enumerate(starts):
        old.execute(
            "INSERT INTO traces VALUES (?, 0, ?, 'search', NULL, NULL, ?, 1, ?, ?, '{}', NULL)",
            [f"t{i}", f"e{i}", 10 + i, ts, ts],
        )
    old.close()
    con = connect_store(path)
    assert con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'traces'"
    ).fetchone() == ("VIEW",)
    weeks = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'traces_%' ORDER BY 1"
    ).fetchall()
    assert weeks == [("traces_20261123",), ("traces_20261130",), ("traces_20261207",)]
    # The same partials written again replace their moved rows: the week computed in SQL
    # for the move is the week a write computes.
    rows = StoreBatch()
    for i, ts in enumerate(starts):
        rows.add_trace(TracePartial(f"t{i}", 0, f"e{i}", "search", None, None, 10 + i, 1, ts, ts))
    apply_batch(con, rows, {})
    assert con.execute("SELECT COUNT(*), SUM(cost_nusd) FROM traces").fetchone() == (5, 60)
    con.close()
    again = connect_store(path)  # the second open moves nothing
    assert again.execute("SELECT COUNT(*) FROM traces").fetchone() == (5,)
    again.close()


def test_trace_weeks_keeps_the_newest_weeks_and_says_where_they_begin(tmp_path: Path) -> None:
    """``store.trace_weeks``: weeks of partials before the newest N are dropped whole,
    counted back from the newest week held (a store reading history keeps what it reads)."""
    from spendbrake.streamer import drop_trace_weeks, traces_from

    monday = 1_796_601_600.0  # 2026-12-07, a Monday
    con = connect_store(tmp_path / "s.duckdb")
    assert traces_from(con) is None
    rows = StoreBatch()
    for week in range(4):  # weeks of 11-16, 11-23, 11-30 and 12-07
        rows.add_trace(partial(f"w{week}", monday - (3 - week) * 7 * 86400 + 3600, cost=week))
    apply_batch(con, rows, {})
    assert drop_trace_weeks(con, 4) == []
    assert drop_trace_weeks(con, 2) == ["traces_20261116", "traces_20261123"]
    assert con.execute("SELECT list(trace_id ORDER BY trace_id) FROM traces").fetchone() == (
        ["w2", "w3"],
    )
    assert traces_from(con) == monday - 7 * 86400
    assert drop_trace_weeks(con, 2) == []  # nothing more to drop
    con.close()


def test_partials_of_a_dropped_week_are_not_stored_again(tmp_path: Path) -> None:
    """A store catching up reads its partitions unevenly: after ``store.trace_weeks`` dropped
    a week, a lagging partition's partials of it re-made its table, a few of its traces, which
    a report on it counted until the next drop (and the log said the week was dropped again)."""
    from spendbrake.streamer import drop_trace_weeks

    monday = 1_796_601_600.0  # 2026-12-07, a Monday
    con = connect_store(tmp_path / "s.duckdb")
    rows = StoreBatch()
    rows.add_trace(partial("old", monday - 7 * 86400 + 3600))
    rows.add_trace(partial("new", monday + 3600))
    apply_batch(con, rows, {})
    assert drop_trace_weeks(con, 1) == ["traces_20261130"]
    late = StoreBatch()  # the lagging partition, then a kept week's partial
    late.add_trace(partial("late-old", monday - 7 * 86400 + 7200))
    late.add_trace(partial("late-new", monday + 7200))
    apply_batch(con, late, {})
    assert con.execute("SELECT list(trace_id ORDER BY trace_id) FROM traces").fetchone() == (
        ["late-new", "new"],
    )
    assert drop_trace_weeks(con, 1) == []  # nothing was re-made to drop
    con.close()
