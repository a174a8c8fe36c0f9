"""The memory benchmark's build: every series' windows in every partition its events
landed on, and one watch over them (bytes are not checked, what is built is)."""

from __future__ import annotations

from bench.bench_memory import build, dozing_save


def test_each_partition_keeps_its_own_windows_and_the_watch_sums_their_parts() -> None:
    states, watch = build(200, partitions=4)
    assert len(states) == 4 and all(state.open_windows() > 0 for state in states)
    # Three calls a series on three partitions: each of them holds the series' day and hour.
    long = [len(t.rows) for s in states for span, t in s.windows.items() if span[0] >= 3600]
    assert sum(long) == 200 * 3 * 2
    one_states, one_watch = build(200, partitions=1)
    assert sum(s.open_windows() for s in states) > 1.5 * one_states[0].open_windows()
    assert len(watch.series) == len(one_watch.series) == 200
    parts = [len({p for (_, p, _), _ in s.part_items()}) for s in watch.series.values()]
    assert min(parts) == max(parts) == 3
    assert watch.now > 0  # the marks moved the watch's watermark: early looks ran


def test_the_dozing_save_finds_every_series_dozing_and_leaves_them_settled() -> None:
    _, watch = build(200, partitions=4)
    dozing, save_s, settle_s = dozing_save(watch)
    assert dozing == 200 and save_s > 0 and settle_s > 0
    assert not any(s.asleep_from < 0 for s in watch.series.values())
