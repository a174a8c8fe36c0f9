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
        )
        if i % 97 == 0:
            flush_at = watermark + rng.choice([0.0, 0.5, 59.999, 120.0])
            expected = naive_flush(state, flush_at)
            got = state.flush(flush_at)
            assert sorted(p.trace_id for p in got) == expected
            assert not any(p.trace_id in state.open for p in got)
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
