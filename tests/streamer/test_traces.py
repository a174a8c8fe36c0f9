"""``TraceState.flush`` reads only old minutes; it must emit what a scan of every partial does."""

from __future__ import annotations

import random

from spendbrake.schemas import UsageEvent
from spendbrake.streamer._traces import TraceState
from tests.streamer.streams import T0


def naive_flush(state: TraceState, watermark: float) -> list[str]:
    """The definition: every partial idle for ``idle_s`` of event time."""
    return sorted(t for t, p in state.open.items() if watermark - p.last_ts >= state.idle_s)


def test_indexed_flush_matches_a_full_scan() -> None:
    rng = random.Random(11)
    state = TraceState(partition=0, idle_s=300.0)
    watermark = T0
    emitted: dict[str, int] = {}
    for i in range(20_000):
        watermark += rng.expovariate(1 / 0.4)
        # Mostly on time; some late calls (also to traces already emitted, which reopen them).
        ts = watermark - (rng.expovariate(1 / 600) if rng.random() < 0.1 else rng.random())
        trace = f"tr-{rng.randint(0, 3_000)}" if rng.random() < 0.7 else f"tr-new-{i}"
        state.add(
            UsageEvent(f"e{i}", ts, "openai", "gpt-4o", 1, 1, "t", trace_id=trace),
            rng.randint(0, 9),
            watermark,
        )
        if i % 97 == 0:
            flush_at = watermark + rng.choice([0.0, 0.5, 59.999, 120.0])
            closed = [p.trace_id for p in state.closed]
            expected = naive_flush(state, flush_at)
            got = state.flush(flush_at)
            assert sorted(p.trace_id for p in got[len(closed) :]) == expected
            assert [p.trace_id for p in got[: len(closed)]] == closed
            assert not any(p.trace_id in state.open for p in got[len(closed) :])
            for p in got:
                emitted[p.trace_id] = emitted.get(p.trace_id, 0) + p.calls
        if i % 5_000 == 4_999:  # restart from a snapshot
            again = TraceState(partition=0, idle_s=300.0)
            again.restore(state.snapshot())
            state = again
    rest = state.flush(watermark + 10**6)
    assert not state.open
    for p in rest:
        emitted[p.trace_id] = emitted.get(p.trace_id, 0) + p.calls
    assert sum(emitted.values()) == 20_000


def test_where_a_partial_ends_does_not_depend_on_when_flushes_come(tmp_path) -> None:
    """The worker flushes partials more often than it saves its state; after a crash the
    events since the save are processed again, flushed at other moments. A call after its
    trace's partial went idle was merged into that partial then (sent again under its
    first key) while the partial it had started before the crash stayed with the reader:
    the report counted the trace twice. Now each partial is sent again whole."""
    import asyncio

    from spendbrake.schemas import DEFAULT_DIMENSIONS, PriceTable
    from spendbrake.streamer import PartitionProcessor, TraceTotals
    from spendbrake.streamer._state import PartitionStore
    from tests.streamer.streams import make_stream, trace_truth

    prices = PriceTable.default()

    def processor() -> PartitionProcessor:
        return PartitionProcessor("spend.events", 0, [list(d) for d in DEFAULT_DIMENSIONS], prices)

    stream = make_stream(8_000, seed=7)
    rng = random.Random(7)
    store = PartitionStore(tmp_path, "spend.events", 0)
    asyncio.run(store.acquire())
    reader = TraceTotals()  # what the store stage keeps: the last partial per key
    proc = processor()
    offset = crashes = 0
    while offset < len(stream.records):
        proc.process(stream.records[offset], offset)
        offset += 1
        if rng.random() < 1 / 40:  # a flush
            reader.update(proc.flush().traces)
        if rng.random() < 1 / 500:  # a checkpoint: flush, then save
            reader.update(proc.flush().traces)
            store.save(proc.snapshot(), proc.dedupe.take_new(), sorted(proc.dedupe.buckets))
        if rng.random() < 1 / 700:  # a crash: back to the last save
            crashes += 1
            proc = processor()
            saved = store.load()
            if saved is not None:
                proc.restore(*saved)
            offset = proc.next_offset or 0
    store.release()
    proc.traces.idle_s = 0  # the end of the input: every trace is done
    reader.update(proc.flush().traces)
    assert crashes >= 5
    assert reader.totals() == trace_truth(stream.unique, prices)


def test_a_partial_closed_by_a_call_survives_a_snapshot() -> None:
    state = TraceState(partition=0, idle_s=300.0)
    state.add(UsageEvent("e1", T0, "openai", "gpt-4o", 1, 1, "t", trace_id="tr"), 5, T0)
    later = UsageEvent("e2", T0 + 390, "openai", "gpt-4o", 1, 1, "t", trace_id="tr")
    state.add(later, 7, T0 + 400)  # the partial of e1 was idle: e2 starts another
    again = TraceState(partition=0, idle_s=300.0)
    again.restore(state.snapshot())
    got = again.flush(T0 + 400)
    assert [(p.first_event_id, p.cost_nusd) for p in got] == [("e1", 5)]
    assert [(p.first_event_id, p.cost_nusd) for p in again.flush(T0 + 710)] == [("e2", 7)]
