"""Window storage of ``RollupState``: packed int64 totals, exact past int64, same snapshots."""

from __future__ import annotations

import random
from array import array

import msgspec
import orjson
import pytest

from spendbrake.schemas import (
    OTHER,
    PriceTable,
    RollupRecord,
    UsageEvent,
    WatermarkMark,
    decode_rollup,
    encode_mark,
    encode_rollup,
)
from spendbrake.streamer import RollupState, SeriesTable
from spendbrake.streamer._rollup import MAX_OUTCOMES, SpanTotals
from tests.streamer.streams import T0


def event(ts: float, api_key: str = "k", outcome: str | None = None) -> UsageEvent:
    return UsageEvent(
        event_id="",
        ts=ts,
        provider="openai",
        model="gpt-4o",
        input_tokens=100,
        output_tokens=10,
        team="t",
        api_key=api_key,
        outcome=outcome,
    )


def totals(records: list[RollupRecord]) -> dict:
    return {(r.dims, r.values, r.window_s, r.window_start, r.epoch): r.metrics for r in records}


def test_totals_past_int64_stay_exact() -> None:
    state = RollupState([["api_key"]])
    big = 2**62
    state.add(event(T0), big, True)
    state.flush()
    state.add(event(T0 + 1), big, True)  # the hour and day totals pass 2**63 - 1 here
    state.add(event(T0 + 2), 2**70, True)
    records = state.flush()
    costs = {r.window_s: r.metrics[0] for r in records}
    assert costs == {60: 2 * big + 2**70, 3600: 2 * big + 2**70, 86400: 2 * big + 2**70}
    assert all(type(t.cost) is list for t in state.windows.values())
    restored = RollupState([["api_key"]])
    # In memory only: orjson (the snapshot file) stops at 64-bit integers, as it did before.
    restored.restore(state.snapshot())
    restored.add(event(T0 + 3), 1, True)
    assert {r.window_s: r.metrics[0] for r in restored.flush()}[3600] == 2 * big + 2**70 + 1


def test_windows_are_packed_and_outcomes_kept_aside() -> None:
    state = RollupState([["api_key"]])
    state.add(event(T0, outcome="ok"), 5, True)
    state.add(event(T0 + 1), 7, False)
    records = state.flush()
    assert all(t.cost.typecode == "q" and t.counts.typecode == "i" for t in state.windows.values())
    assert len(state.outcomes) == 3  # minute, hour and day of the one series
    assert {r.window_s: (r.metrics[:2], r.outcomes) for r in records} == {
        w: ((12, 2), {"ok": 1}) for w in (60, 3600, 86400)
    }
    # The snapshot's window values keep their older shape: the metrics, then outcomes or None.
    rows = state.snapshot()["windows"]
    assert all(len(v) == 9 and v[8] == {"ok": 1} for _, v in rows)


def test_snapshot_round_trip_and_older_snapshots() -> None:
    rng = random.Random(7)
    state = RollupState([[], ["api_key"]])
    for i in range(3_000):
        ts = T0 + i * 3.7
        state.add(event(ts, f"k{rng.randint(0, 40)}", rng.choice([None, "ok", "fail"])), i, True)
        if i % 500 == 499:
            state.flush()
    state.flush()
    snapshot = orjson.loads(orjson.dumps(state.snapshot()))
    again = RollupState([[], ["api_key"]])
    again.restore(snapshot)
    assert orjson.loads(orjson.dumps(again.snapshot())) == snapshot
    # A snapshot written before outcomes were kept aside (value: 8 metrics + outcomes or None)
    # is the same data, so it restores to the same state.
    assert all(len(v) == 9 for _, v in snapshot["windows"])
    for extra in (state, again):
        extra.add(event(T0 + 3_000 * 3.7, "k1", "ok"), 3, True)
    assert totals(state.flush()) == totals(again.flush())


def test_span_totals_rows_and_overflow() -> None:
    rng = random.Random(5)
    totals = SpanTotals()
    expected: dict = {}
    for i in range(2_000):
        series = (rng.randint(0, 2), (f"k{rng.randint(0, 300)}",))
        big = 2**62 if i == 1_500 else 0  # one series' cost passes int64 late in the run
        delta = [rng.randint(0, 10**9) + big, 1, *(rng.randint(0, 5000) for _ in range(6)), None]
        if i == 1_500:
            delta[0] += 2**62
            series = next(iter(expected))
        if i == 1_000:
            delta[1] = 2**31  # calls past int32: the span's counts become int64
        if i < 1_500:
            assert type(totals.cost) is array
            assert totals.counts.typecode == ("i" if i <= 1_000 else "q")
        totals.add(series, delta)
        old = expected.get(series, (0,) * 8)
        expected[series] = tuple(a + b for a, b in zip(old, delta[:8], strict=True))
    assert type(totals.cost) is list
    assert dict(totals.items()) == expected
    assert all(totals.get(s) == v for s, v in expected.items())
    assert len(totals.rows) == len(expected)


def test_encoded_rollup_is_the_wire_form() -> None:
    rng = random.Random(3)
    records = [
        RollupRecord(
            dims=("team", "feature"),
            values=(rng.choice(["a", 'é\u2028"x']), rng.choice([None, "f"])),
            window_s=rng.choice([60, 3600, 86400]),
            window_start=int(T0) + 60 * i,
            partition=i % 4,
            epoch=rng.choice([0, 0, 3]),
            metrics=tuple(rng.randint(0, 10 ** rng.randint(1, 18)) for _ in range(8)),
            outcomes=rng.choice([{}, {"ok": 2, "fail": 1}]),
            final=rng.random() < 0.3,
        )
        for i in range(500)
    ]
    records.append(RollupRecord((), (), 60, int(T0), 0, 0, (0,) * 8))
    records.append(RollupRecord(("team",), ("t",), 60, int(T0), 0, 1, (10**22,) + (1,) * 7))
    for record in records:
        value = encode_rollup(record)
        if record.metrics[0] < 2**64:  # orjson's limit
            assert value == orjson.dumps(record.to_wire())
        assert decode_rollup(value) == record


def test_a_rollups_topic_value_that_is_no_rollup_is_a_value_error() -> None:
    """The detect and store stages skip such records (another writer, another version):
    failing on one would fail again at every restart, at the same offset."""
    mark = decode_rollup(encode_mark(WatermarkMark(3, 1_791_158_460.5)))
    assert mark == WatermarkMark(3, 1_791_158_460.5)
    good = orjson.loads(
        encode_rollup(RollupRecord(("team",), ("t",), 3600, int(T0), 0, 0, (1,) * 8))
    )
    bad = [
        b"not json",
        b"[]",
        b'{"mark": "x", "watermark": 1}',
        orjson.dumps({**good, "calls": "5"}),
        orjson.dumps({**good, "cost_nusd": 1.5}),
        orjson.dumps({k: v for k, v in good.items() if k != "epoch"}),
        orjson.dumps({**good, "series": {"feature": "f"}}),
        orjson.dumps({**good, "series": {"team": "t", "feature": "f"}}),
    ]
    for value in bad:
        with pytest.raises(ValueError, match="not a rollup record"):
            decode_rollup(value)


def test_hour_only_windows_never_reopen_a_closed_hour() -> None:
    """With hours as the smallest window, an event is late once its HOUR has closed.

    Judged by its minute instead, an event 12 minutes behind the watermark landed in the
    on-time epoch of an hour already emitted as final, and its record (same key, absolute)
    replaced that hour's total with its own cost.
    """
    hour = (T0 // 3600) * 3600
    state = RollupState([["api_key"]], windows_s=(3600,))
    state.add(event(hour + 3500), 5, True)
    state.add(event(hour + 3600 + 700), 7, True)  # the watermark passes hour + 3600 + 600
    latest = {}
    for r in state.flush():
        latest[(r.window_start, r.epoch)] = r
    assert latest[(hour, 0)].final and latest[(hour, 0)].metrics[0] == 5
    assert state.add(event(hour + 3500), 11, True)  # late: its hour is closed
    for r in state.flush():
        latest[(r.window_start, r.epoch)] = r
    hour_total = sum(r.metrics[0] for (start, _), r in latest.items() if start == hour)
    assert hour_total == 16


def test_windows_per_dimension_set() -> None:
    """A set with no windows is left out; the others roll up only their own sizes."""
    state = RollupState(
        [[], ["api_key"], ["team"]], windows_s=(60, 3600), dim_windows_s=[(3600,), (), (60, 3600)]
    )
    state.add(event(T0), 5, True)
    got = sorted((r.dims, r.window_s) for r in state.flush())
    assert got == [((), 3600), (("team",), 60), (("team",), 3600)]


def test_minute_windows_only_of_the_series_named() -> None:
    """``minute_values``: minutes of the named series only; every series' hours unchanged."""
    keys = ["a", "b", "a", "c", "b", "a"]

    def run(minute_values: list | None) -> list[RollupRecord]:
        state = RollupState(
            [["api_key"], []], windows_s=(60, 3600), minute_values=minute_values, finals=False
        )
        for i, key in enumerate(keys):
            state.add(event(T0 + 50 * i, api_key=key), 10 + i, True)
        return state.flush()

    every = run(None)
    named = run([{("a",)}, None])
    assert {(r.values, r.window_s) for r in named if r.window_s == 60} == {(("a",), 60), ((), 60)}
    hours = [r for r in named if r.window_s == 3600]
    assert totals(hours) == totals([r for r in every if r.window_s == 3600])
    minutes = [r for r in every if r.window_s == 60 and r.values in (("a",), ())]
    assert totals([r for r in named if r.window_s == 60]) == totals(minutes)
    with pytest.raises(ValueError, match="one entry per dimension set"):
        RollupState([["api_key"]], minute_values=[None, None])


def test_without_finals_a_window_is_emitted_only_when_it_changed() -> None:
    def run(finals: bool) -> list[list[tuple[int, int, bool]]]:
        state = RollupState([["api_key"]], windows_s=(60,), finals=finals)
        flushes = []
        for ts in (T0, T0 + 1, T0 + 700, T0 + 1400):  # each later event closes the one before
            state.add(event(ts), 1, True)
            flushes.append([(r.window_start, r.metrics[1], r.final) for r in state.flush()])
        return flushes

    minute = (T0 // 60) * 60
    assert run(True)[2] == [(minute + 660, 1, False), (minute, 2, True)]
    assert run(False)[2] == [(minute + 660, 1, False)]
    # A window closing in the flush where it changed is still emitted, as a change.
    state = RollupState([["api_key"]], windows_s=(60,), finals=False)
    state.add(event(T0), 1, True)
    state.flush()
    state.add(event(T0 + 2), 1, True)
    state.add(event(T0 + 700), 1, True)
    got = sorted((r.window_start, r.metrics[1], r.final) for r in state.flush())
    assert got == [(minute, 2, False), (minute + 660, 1, False)]


def test_partitions_sharing_a_series_table_hold_one_tuple_a_series() -> None:
    """A key's calls reach several partitions; with one table, their windows share one
    series tuple (memory), the records stay each partition's own, and the table forgets
    series once most have closed."""
    table = SeriesTable()
    states = [RollupState([["api_key"]], partition=p, series_table=table) for p in range(2)]
    alone = RollupState([["api_key"]], partition=0)
    for state in (*states, alone):
        state.add(event(T0, api_key="key-" + "x" * 300), 5, True)  # not a compile-time constant
    records = [state.flush() for state in (*states, alone)]
    held = [next(iter(next(iter(s.windows.values())).rows)) for s in (*states, alone)]
    assert held[0] is held[1]
    assert held[2] == held[0] and held[2] is not held[0]
    assert totals(records[0]) == totals(records[2])
    assert {r.partition for r in records[1]} == {1}

    # 12,000 keys, then a day and an hour later every one of their windows has closed.
    for i in range(12_000):
        states[0].add(event(T0 + 60, api_key=f"k{i}"), 1, True)
    states[0].flush()
    assert len(table.known) > 12_000
    for state in states:
        state.add(event(T0 + 2 * 86_400), 1, True)
        state.flush()
    assert len(table.known) < 10


def test_cells_of_one_combination_are_summed_in_their_first_cells_order() -> None:
    """A flush sums a combination's minutes before projecting them into hours-only sets;
    records still come in the order of each series' first cell (a capped set keeps the
    first series it sees), with every call counted once."""
    state = RollupState([["api_key"], ["team"]], dim_windows_s=[[3600], [3600]])
    for minute, key, team in [(0, "a", "t1"), (0, "b", "t2"), (1, "a", "t1"), (2, "c", "t1")]:
        e = event(T0 + minute * 60 + 1, api_key=key)
        state.add(msgspec.structs.replace(e, team=team), 10, True)
    records = state.flush()
    assert [(r.values, r.metrics[:2]) for r in records] == [
        (("a",), (20, 2)),
        (("t1",), (30, 3)),
        (("b",), (10, 1)),
        (("t2",), (10, 1)),
        (("c",), (10, 1)),
    ]


def test_a_snapshot_restores_into_sets_moved_or_reordered_by_a_config_change() -> None:
    """A budget on new fields puts its set before the key directory's, so the sets a window
    names by index move; a set may also be written with its fields in another order. The
    snapshot names its sets by fields: each window comes back under its own set (before: a
    team's totals published as a model series, or a crash loop on a longer set)."""
    before = RollupState([[], ["team"], ["team", "api_key"]])
    for i in range(20):
        before.add(event(T0 + i, f"k{i % 3}"), 10, True)
    expected = totals(before.flush())
    snapshot = orjson.loads(orjson.dumps(before.snapshot()))
    after = RollupState([[], ["model"], ["team"], ["api_key", "team"], ["environment"]])
    after.restore(snapshot)
    after.add(event(T0 + 30, "k0"), 10, True)
    got = totals(after.flush())
    hour = 3600
    start = int(T0 // hour * hour)
    assert got[(("team",), ("t",), hour, start, 0)][0] == 210  # 20 calls restored, 1 new
    assert got[(("api_key", "team"), ("k0", "t"), hour, start, 0)][0] == 80
    assert got[(("model",), ("gpt-4o",), hour, start, 0)][0] == 10  # new set: from now on
    assert expected[(("team", "api_key"), ("t", "k0"), hour, start, 0)][0] == 70
    assert not any(k[0] == ("model",) and k[1] == ("t",) for k in got)


def test_a_window_counts_outcomes_by_name_up_to_a_cap_and_the_rest_as_other() -> None:
    """Outcomes are the caller's strings: 6,000 distinct ones in a window made a 1.2 MB
    record, over Kafka's default 1 MB limit, and the stage retried it forever. Past
    ``MAX_OUTCOMES`` names a window counts calls under ``(other)``: none is lost."""
    from spendbrake.streamer import PartitionProcessor
    from tests.stages.ingest_fakes import records

    n = 6_000
    processor = PartitionProcessor("t", 0, [["team"]], PriceTable.default())
    window: dict[tuple[int, int], RollupRecord] = {}
    for first in range(0, n, 1_500):  # several flushes, as the stage makes them
        batch = records(
            0, 1_500, first, ts=lambda i: T0 + i // 2, outcome=lambda i: f"e{i} " + "x" * 180
        )
        processor.process_batch(batch)
        for record in processor.flush().rollups:
            window[(record.window_s, record.window_start)] = record
    hour = window[(3600, T0 // 3600 * 3600)]
    assert hour.metrics[1] == n
    assert len(hour.outcomes) == MAX_OUTCOMES + 1
    assert sum(hour.outcomes.values()) == n  # every call counted, by name or as (other)
    assert hour.outcomes[OTHER] == n - MAX_OUTCOMES
    assert all(len(encode_rollup(r)) < 64 * 1024 for r in window.values())


def test_a_restored_window_past_the_outcome_cap_goes_out_capped() -> None:
    """A snapshot saved before the cap can hold a window with thousands of outcomes: its
    record is capped all the same (it could not be sent otherwise)."""
    state = RollupState([["team"]])
    state.add(event(T0, outcome="ok"), 1, True)
    state.flush()
    snapshot = orjson.loads(orjson.dumps(state.snapshot()))
    for _, value in snapshot["windows"]:
        value[8] = {"ok": 1, **{f"e{i}": 2 for i in range(5_000)}}
    restored = RollupState([["team"]])
    restored.restore(snapshot)
    restored.add(event(T0 + 1, outcome="late-name"), 1, True)
    hour = next(r for r in restored.flush() if r.window_s == 3600)
    assert len(hour.outcomes) == MAX_OUTCOMES + 1
    assert sum(hour.outcomes.values()) == 1 + 2 * 5_000 + 1
    assert hour.outcomes["ok"] == 1
