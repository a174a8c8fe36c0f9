"""The pure per-partition pipeline: exact totals through duplicates, late and bad records, and restarts."""

from __future__ import annotations

import zlib

import pytest

from schemas import DEFAULT_DIMENSIONS, PriceTable
from streamer import PartitionProcessor, RollupRecord, RollupState, RollupTotals, TraceTotals
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
    assert [a["id"] for a in first.alerts] == ["unpriced:acme/mystery-9:2026-10-05"]
    assert [a["id"] for a in second.alerts] == ["unpriced:acme/mystery-9:2026-10-06"]
    day = next(r for r in first.rollups if r.window_s == 86400)
    assert (
        day.metrics[1] == 5 and day.metrics[0] == 0 and day.metrics[7] == 5
    )  # calls, cost, unpriced
    restored = PartitionProcessor("t", 0, [["model"]], PRICES)
    restored.restore(proc.snapshot(), {})
    restored.process(mystery(9, T0 + 86400 + 50), 9)
    assert restored.flush().alerts == []  # already alerted today, also across a restart
