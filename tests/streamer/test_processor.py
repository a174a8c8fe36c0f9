"""The pure per-partition pipeline: exact totals through duplicates, late and bad records, and restarts."""

from __future__ import annotations

import zlib

import orjson
import pytest

from spendbrake.schemas import DEFAULT_DIMENSIONS, PriceTable, RollupRecord
from spendbrake.streamer import PartitionProcessor, RollupState, RollupTotals, TraceTotals
from tests.streamer.streams import T0, ground_truth, make_stream, trace_truth

PRICES = PriceTable.default()
DIMS = [list(d) for d in DEFAULT_DIMENSIONS]


def partition_of(raw: bytes, partitions: int) -> int:
    return zlib.crc32(raw[:40]) % partitions


def totals_of(totals: RollupTotals, dims: tuple[str, ...], window_s: int) -> dict:
    return {k: (v[0], v[1]) for k, v in totals.totals(dims, window_s).items()}


def run_stream(
    records: list[bytes], partitions: int = 1, crash_every: int | None = None
) -> tuple[RollupTotals, list, list[PartitionProcessor]]:
    """Feed records through processors, flushing every 500; optionally 'crash' and restore."""
    logs: list[list[bytes]] = [[] for _ in range(partitions)]
    for raw in records:
        # Duplicates of one event must land on one partition (keyed by event_id upstream).
        logs[partition_of(raw, partitions)].append(raw)
    totals = RollupTotals()
    totals.traces = TraceTotals()  # type: ignore[attr-defined]
    dead: list = []
    processors = []
    for p, log in enumerate(logs):
        proc = PartitionProcessor("spend.events", p, DIMS, PRICES)
        snapshot: tuple | None = None
        offset = 0
        since_checkpoint = 0
        while offset < len(log):
            proc.process(log[offset], offset)
            offset += 1
            since_checkpoint += 1
            if offset % 500 == 0:
                records_out, letters, traces, _ = proc.flush()
                totals.update(records_out)
                totals.traces.update(traces)
                dead.extend(letters)
                snapshot = (proc.snapshot(), {b: sorted(s) for b, s in proc.dedupe.buckets.items()})
            if crash_every and since_checkpoint >= crash_every:
                # Crash: lose everything since the snapshot, restore, reprocess.
                since_checkpoint = 0
                proc = PartitionProcessor("spend.events", p, DIMS, PRICES)
                if snapshot is not None:
                    proc.restore(snapshot[0], snapshot[1])
                    offset = proc.next_offset
                else:
                    offset = 0
        proc.traces.idle_s = 0  # end of input: every trace is done
        records_out, letters, traces, _ = proc.flush()
        totals.update(records_out)
        totals.traces.update(traces)
        dead.extend(letters)
        processors.append(proc)
    return totals, dead, processors


@pytest.mark.parametrize("partitions", [1, 4])
def test_totals_equal_unique_valid_events(partitions: int) -> None:
    stream = make_stream(20_000, seed=2)
    totals, dead, processors = run_stream(stream.records, partitions)
    assert totals.traces.totals() == trace_truth(stream.unique, PRICES)
    for dims, window_s in [
        ((), 86400),
        (("team", "feature"), 86400),
        (("team",), 3600),
        (("model",), 60),
    ]:
        assert totals_of(totals, dims, window_s) == ground_truth(
            stream.unique, dims, window_s, PRICES
        )
    # Dead letters are unique per source record (re-emits overwrite by key).
    assert len({d.key() for d in dead}) == stream.malformed
    assert sum(p.stats.duplicates for p in processors) == stream.duplicates
    assert sum(p.stats.late for p in processors) > 0
    assert sum(p.stats.unpriced for p in processors) > 0  # the unknown model is counted, unpriced


def test_restarts_from_snapshots_stay_exact() -> None:
    stream = make_stream(12_000, seed=5)
    totals, dead, _ = run_stream(stream.records, partitions=2, crash_every=1_700)
    assert totals.traces.totals() == trace_truth(stream.unique, PRICES)
    assert totals_of(totals, ("team", "feature"), 86400) == ground_truth(
        stream.unique, ("team", "feature"), 86400, PRICES
    )
    assert totals_of(totals, (), 60) == ground_truth(stream.unique, (), 60, PRICES)
    assert len({d.key() for d in dead}) == stream.malformed


def test_every_malformed_record_has_field_and_reason() -> None:
    stream = make_stream(2_000, seed=3, bad_rate=0.05)
    _, dead, _ = run_stream(stream.records)
    fields = {d.field for d in dead}
    assert {"payload", "input_tokens", "ts"} <= fields
    for letter in dead:
        wire = letter.to_wire()
        assert wire["reason"].startswith(letter.field + ": ")
        assert len(wire["raw"]) <= 4096 * 4 and wire["raw_bytes"] >= 1
    big = [d for d in dead if d.raw_bytes > 10_000_000]
    assert big and all(d.to_wire()["truncated"] for d in big)


def event(i: int, ts: float, cost: float = 1.0) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "ts": ts,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1,
            "output_tokens": 1,
            "team": "t",
            "cost_usd": cost,
        }
    )


def test_late_event_is_a_correction_in_its_own_epoch() -> None:
    proc = PartitionProcessor("t", 0, [[]], PRICES, lateness_s=600)
    proc.process(event(1, T0 + 30), 0)
    proc.process(event(2, T0 + 3 * 3600), 1)  # watermark jumps 3 hours
    first, _, _, _ = proc.flush()
    minute_final = [r for r in first if r.window_s == 60 and r.window_start == T0]
    assert minute_final and minute_final[0].final and minute_final[0].metrics[1] == 1
    proc.process(event(3, T0 + 40, cost=2.0), 2)  # 3 hours late
    late, _, _, _ = proc.flush()
    assert proc.stats.late == 1
    corrections = [r for r in late if r.window_start == T0 and r.window_s == 60]
    assert corrections and corrections[0].epoch > 0
    totals = RollupTotals()
    totals.update(first + late)
    assert totals.totals((), 60)[((), T0)][:2] == [3_000_000_000, 2]
    assert totals.totals((), 86400)[((), T0)][:2] == [4_000_000_000, 3]


def test_future_timestamp_and_too_old_events_go_to_the_dlq() -> None:
    proc = PartitionProcessor("t", 0, [[]], PRICES, dedupe_horizon_s=86400)
    proc.process(event(1, T0 + 10 * 86400), 0, record_ts=T0 + 10 * 86400)
    proc.process(event(2, T0 + 30 * 86400), 1, record_ts=T0 + 10 * 86400)  # 20 days in the future
    proc.process(event(3, T0), 2, record_ts=T0 + 10 * 86400)  # 10 days old, horizon is 1 day
    _, dead, _, _ = proc.flush()
    assert [d.field for d in dead] == ["ts", "ts"]
    assert "after the record was written" in dead[0].reason and "dedupe horizon" in dead[1].reason
    assert proc.stats.valid == 1


def test_rollup_record_wire_round_trip() -> None:
    state = RollupState([["team"]])
    proc = PartitionProcessor("t", 0, [["team"]], PRICES)
    proc.process(event(1, T0 + 5), 0)
    records, _, _, _ = proc.flush()
    assert state.open_windows() == 0
    for record in records:
        assert RollupRecord.from_wire(record.to_wire()) == record


def test_unknown_model_is_counted_unpriced_and_alerted_once_per_day() -> None:
    import orjson

    proc = PartitionProcessor("t", 0, [["model"]], PRICES)

    def mystery(i: int, ts: float) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"m{i}",
                "ts": ts,
                "provider": "acme",
                "model": "mystery-9",
                "input_tokens": 10,
                "output_tokens": 5,
                "team": "t",
            }
        )

    for i in range(5):
        proc.process(mystery(i, T0 + i * 60), i)
    first = proc.flush()
    for i in range(5, 8):
        proc.process(mystery(i, T0 + 86400 + i), i)  # the next UTC day
    second = proc.flush()
    # One warning a day (the first model: a post), each model's notice for the digest.
    assert [(a.id, a.severity) for a in first.alerts] == [
        ("unpriced:2026-10-05", "warning"),
        ("unpriced:acme/mystery-9:2026-10-05", "info"),
    ]
    assert [a.id for a in second.alerts] == [
        "unpriced:2026-10-06",
        "unpriced:acme/mystery-9:2026-10-06",
    ]
    day = next(r for r in first.rollups if r.window_s == 86400)
    assert (
        day.metrics[1] == 5 and day.metrics[0] == 0 and day.metrics[7] == 5
    )  # calls, cost, unpriced
    restored = PartitionProcessor("t", 0, [["model"]], PRICES)
    restored.restore(proc.snapshot(), {})
    restored.process(mystery(9, T0 + 86400 + 50), 9)
    assert restored.flush().alerts == []  # already alerted today, also across a restart


def test_a_flood_of_unknown_models_is_one_post_a_day() -> None:
    """300 model names nobody prices: one warning for the day, the rest digest notices."""
    proc = PartitionProcessor("t", 0, [["model"]], PRICES)
    for i in range(300):
        event = {
            "event_id": f"f{i}",
            "ts": T0 + i,
            "provider": "acme",
            "model": f"m-{i}",
            "input_tokens": 1,
            "output_tokens": 1,
            "team": "t",
        }
        proc.process(orjson.dumps(event), i)
    alerts = proc.flush().alerts
    warnings = [a for a in alerts if a.severity != "info"]
    assert [a.id for a in warnings] == ["unpriced:2026-10-05"]
    assert len({a.id for a in alerts}) == 301


def test_batch_path_equals_the_per_record_path() -> None:
    """process_batch (the worker's fused fast path) leaves the same state and outputs as process."""
    import random

    import orjson
    from aiokafka.structs import ConsumerRecord

    from spendbrake._simulate import simulate

    rng = random.Random(21)
    records = make_stream(6_000, seed=21, bad_rate=0.03).records
    # RFC 3339 timestamps, blank attribution, odd workloads, unknown fields, future and old events.
    records += [e.to_json() for e in simulate(T0 + 3 * 86400, 3600, rate_per_s=1, seed=4)]
    for i, raw in enumerate(list(records[:600])):
        wire = orjson.loads(raw) if raw.startswith(b'{"event_id":"ev') else None
        if wire is None:
            continue
        variant = rng.choice(["feature", "workload", "extra", "future", "old", "zts", "dup"])
        if variant == "feature":
            wire["feature"] = ""
        elif variant == "workload":
            wire["workload"] = "Batch"
        elif variant == "extra":
            wire["x_custom"] = 1
        elif variant == "future":
            wire["ts"] = T0 + 90 * 86400
        elif variant == "old":
            wire["ts"] = T0 - 30 * 86400
        elif variant == "zts":
            wire["ts"] = "2026-10-05T10:00:00.5z"
        wire["event_id"] = f"variant-{i}"
        records.insert(rng.randrange(len(records)), orjson.dumps(wire))
    record_ts = (T0 + 4 * 86400) * 1000

    def outputs(proc: PartitionProcessor) -> tuple:
        out = proc.flush()
        return (
            sorted(out.rollups, key=lambda r: r.key()),
            [d.to_wire() for d in out.dead],
            sorted((t.to_wire() for t in out.traces), key=lambda t: t["trace_id"]),
            out.alerts,
        )

    one = PartitionProcessor("t", 0, DIMS, PRICES)
    many = PartitionProcessor("t", 0, DIMS, PRICES)
    offset = 0
    while offset < len(records):
        size = rng.randint(1, 700)
        chunk = records[offset : offset + size]
        for i, raw in enumerate(chunk):
            one.process(raw, offset + i, record_ts / 1000.0)
        many.process_batch(
            [
                ConsumerRecord("t", 0, offset + i, record_ts, 0, None, raw, None, 0, len(raw), ())
                for i, raw in enumerate(chunk)
            ]
        )
        offset += size
        assert outputs(one) == outputs(many)
        assert one.snapshot() == many.snapshot()
        assert one.dedupe.buckets == many.dedupe.buckets
        new_ids = [{b: i for b, i in p.dedupe.take_new().items() if i} for p in (one, many)]
        assert new_ids[0] == new_ids[1]
    assert one.stats == many.stats and one.stats.duplicates > 0 and one.stats.late > 0
    assert {"ts", "payload"} <= set(one.stats.dead)


def test_process_many_stops_where_the_watermark_reaches_until() -> None:
    """Replay cuts the batch path at each early-look step: the rest is processed later."""
    import itertools
    import math

    records = make_stream(2_000, seed=5, bad_rate=0.0).records
    whole = PartitionProcessor("t", 0, DIMS, PRICES)
    parts = PartitionProcessor("t", 0, DIMS, PRICES)
    no_ts = itertools.repeat(math.inf)
    whole.process_many(records, range(len(records)), no_ts)
    until = T0 + 1800
    taken = parts.process_many(records, range(len(records)), no_ts, until=until)
    assert 0 < taken < len(records)
    assert parts.rollups.watermark >= until and parts.next_offset == taken
    probe = PartitionProcessor("t", 0, DIMS, PRICES)
    probe.process_many(records[: taken - 1], range(taken - 1), no_ts)
    assert probe.rollups.watermark < until  # it stopped right after the crossing record
    parts.process_many(records[taken:], range(taken, len(records)), no_ts)
    assert parts.stats == whole.stats
    assert sorted(parts.flush().rollups, key=lambda r: r.key()) == sorted(
        whole.flush().rollups, key=lambda r: r.key()
    )


def test_encoded_trace_batch_is_the_wire_form() -> None:
    import random

    import orjson

    from spendbrake.streamer import TracePartial
    from spendbrake.streamer._traces import encode_traces

    rng = random.Random(1)
    partials = [
        TracePartial(
            f"tr-{i}",
            i % 4,
            f"ev-{i}",
            "team",
            rng.choice([None, "f"]),
            rng.choice([None, "c"]),
            rng.randint(0, 10**12),
            rng.randint(1, 5),
            T0 + i * 0.0371,
            T0 + i * 0.0371 + rng.choice([0, 0.5, 13.123457]),
            {"gpt-4o": 1},
            rng.choice([{}, {"ticket_resolved": 2}]),
        )
        for i in range(2_000)
    ]
    assert encode_traces(partials) == orjson.dumps({"traces": [p.to_wire() for p in partials]})


BOUNDED_COSTS = [(1e300, False), (1e12, False), (1_000_000.5, False), (1_000_000.0, True)]


@pytest.mark.parametrize("batch", [False, True], ids=["process", "process_many"])
def test_a_cost_past_the_bound_is_dead_lettered_not_a_crash(batch: bool) -> None:
    """1e300 was a valid cost that became an infinite number of nano-dollars: a crash on
    the record, again at every restart; 1e12 became a total no snapshot could hold."""
    proc = PartitionProcessor("spend.events", 0, DIMS, PRICES)
    records = [event(i, T0, cost) for i, (cost, _) in enumerate(BOUNDED_COSTS)]
    if batch:
        proc.process_many(records, range(len(records)), [T0 * 1000] * len(records))
    else:
        for offset, raw in enumerate(records):
            proc.process(raw, offset)
    dead = proc.flush().dead
    assert [d.offset for d in dead] == [i for i, (_, ok) in enumerate(BOUNDED_COSTS) if not ok]
    assert all(d.field == "cost_usd" and "must be <= 1000000" in d.reason for d in dead)
    assert proc.stats.valid == 1


def test_window_totals_past_2_64_nano_dollars_survive_a_snapshot(tmp_path) -> None:
    """orjson refuses ints past 2**64: the snapshot of such a window could not be written,
    and the worker would fail at every checkpoint."""
    import asyncio

    from spendbrake.streamer._state import PartitionStore

    n = 20_000
    proc = PartitionProcessor("spend.events", 0, [[]], PRICES)
    proc.process_many([event(i, T0, 1_000_000.0) for i in range(n)], range(n), [T0 * 1000] * n)
    proc.flush()
    store = PartitionStore(tmp_path, "spend.events", 0)
    asyncio.run(store.acquire())
    store.save(proc.snapshot(), proc.dedupe.take_new(), sorted(proc.dedupe.buckets))
    store.release()
    restored = PartitionProcessor("spend.events", 0, [[]], PRICES)
    restored.restore(*store.load())
    restored.process(event(n, T0, 1.0), n)
    day = next(r for r in restored.flush().rollups if r.window_s == 86400)
    assert day.metrics[:2] == (n * 10**15 + 10**9, n + 1)
    assert restored.process(event(0, T0, 1_000_000.0), n + 1) is None
    assert restored.stats.duplicates == 1


def test_a_record_without_a_kafka_timestamp_is_counted() -> None:
    """-1 is Kafka's "no timestamp" (message format v0, some proxies): every event looked
    an hour and more "after the record was written" and went to the DLQ."""
    for batch in (False, True):
        proc = PartitionProcessor("spend.events", 0, DIMS, PRICES)
        records = [event(i, T0 + i) for i in range(3)]
        if batch:
            proc.process_many(records, range(3), [-1] * 3)
        else:
            for offset, raw in enumerate(records):
                proc.process(raw, offset, record_ts=-0.001)
        assert proc.flush().dead == [] and proc.stats.valid == 3


def _feed(proc: PartitionProcessor, path: str, records: list[bytes], first: int) -> None:
    """Records from offset ``first`` by one of the processor's three entry points."""
    offsets = range(first, first + len(records))
    if path == "process":
        for offset, raw in zip(offsets, records, strict=True):
            proc.process(raw, offset)
    elif path == "process_many":
        proc.process_many(records, offsets, [(T0 + 30 * 86400) * 1000] * len(records))
    else:
        proc.process_lines(records, offsets, 300.0)


@pytest.mark.parametrize("path", ["process", "process_many", "process_lines"])
def test_a_retry_stamped_in_another_hour_counts_once(path: str, tmp_path) -> None:
    """A caller's retry that stamps ``ts`` anew may cross an hour: the same ``event_id``
    counts once, also after a restart from the saved state, until the first copy's hour
    leaves the dedupe horizon (the memory stays bounded)."""
    import asyncio

    from spendbrake.streamer._state import PartitionStore

    def processor() -> PartitionProcessor:
        return PartitionProcessor("spend.events", 0, [[]], PRICES, traces=False)

    proc = processor()
    _feed(proc, path, [event(1, T0 + 3599), event(1, T0 + 3601), event(2, T0 + 3700)], 0)
    proc.flush()
    store = PartitionStore(tmp_path, "spend.events", 0)
    asyncio.run(store.acquire())
    store.save(proc.snapshot(), proc.dedupe.take_new(), sorted(proc.dedupe.buckets))
    restored = processor()
    restored.restore(*store.load())
    _feed(restored, path, [event(1, T0 + 7300), event(2, T0 + 3500)], 3)
    assert (restored.stats.valid, restored.stats.duplicates) == (2, 3)
    later = T0 + restored.dedupe.horizon_s + 3 * 3600
    _feed(restored, path, [event(3, later)], 5)
    restored.flush()
    store.save(restored.snapshot(), restored.dedupe.take_new(), sorted(restored.dedupe.buckets))
    store.release()
    assert restored.dedupe.seen == {"e3"} and len(restored.dedupe.buckets) == 1
    again = processor()
    again.restore(*store.load())
    assert again.dedupe.seen == restored.dedupe.seen


def test_state_that_lists_an_id_under_two_hours_keeps_it_under_the_later() -> None:
    """Saved before one set held every id, an id re-stamped into the next hour was listed
    under both: forgetting the first hour must not forget it."""
    proc = PartitionProcessor("spend.events", 0, [[]], PRICES, traces=False)
    hour = int(T0 // 3600)
    empty = PartitionProcessor("spend.events", 0, [[]], PRICES).snapshot()
    proc.restore(empty, {hour: ["e1", "e2"], hour + 1: ["e1"]})
    assert proc.dedupe.buckets == {hour: ["e2"], hour + 1: ["e1"]}
    proc.process(event(9, T0 + proc.dedupe.horizon_s + 3600 + 5), 0)
    proc.flush()  # the first hour is past the horizon, the second is not
    assert proc.dedupe.buckets.keys() == {hour + 1, hour + 169}
    proc.process(event(1, T0 + proc.dedupe.horizon_s + 3600 + 9), 1)
    assert proc.stats.duplicates == 1


@pytest.mark.parametrize("path", ["process", "process_many", "process_lines"])
def test_a_blank_team_goes_to_the_dlq_with_its_field_and_reason(path: str) -> None:
    """A team (provider, model) of only whitespace was counted as a team of its own."""
    proc = PartitionProcessor("spend.events", 0, [["team"]], PRICES, traces=False)
    blanks = [orjson.loads(event(i, T0 + i)) for i in range(4)]
    blanks[1]["team"], blanks[2]["model"], blanks[3]["provider"] = " ", "\t", "\u3000"
    _feed(proc, path, [orjson.dumps(e) for e in blanks], 0)
    out = proc.flush()
    assert [(d.offset, d.reason) for d in out.dead] == [
        (1, 'team: must not be only whitespace, got " "'),
        (2, 'model: must not be only whitespace, got "\\t"'),
        (3, 'provider: must not be only whitespace, got "\u3000"'),
    ]
    assert proc.stats.valid == 1 and proc.stats.dead == {"team": 1, "model": 1, "provider": 1}
