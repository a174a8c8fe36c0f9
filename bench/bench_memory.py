"""State memory per series at N active series (default 100,000).

Builds what one process holds per series: the open rollup windows of the ``RollupState``
of each input partition (one dimension set, ``[api_key]``, so N values are N series;
each series gets a call every 5 minutes for 15 minutes of event time, so its open
windows are the day and the hour, as in a live worker (minutes too until 2026-12-06, when
the worker began to roll up minutes only of budgets' scopes, ``minute_windows``: about
115 bytes a series); its three calls land on three of the default four partitions, as events
keyed by ``event_id`` do, and each partition keeps windows of its own: until 2026-12-04
the bench had one partition, and counted a third of this), and the detect stage's
``SpendWatch`` fed with those states' own flushes (per series: its key, its open hour's
parts, one per partition, its calls at the last early looks, and the hour it learned
last, set as a restore reads it: until 2026-12-06 the bench left that out, about 140
bytes a series; since late that day a series holds its parts and those scalars in one
int64 array, where they were a tuple and int objects beside it, about 190 bytes more),
holding the detectors of the default config: one per entry of
``Config().detectors`` (``baseline`` and ``wow`` on cost, ``shift`` on cost per call:
the bench's series are keys, where all three run), after four weeks of hourly history.
(Until 2026-12-03 the bench held the detectors in plain lists, not in a watch: it left
out about 1.4 KB a series. Until 2026-12-05 the default was four detectors: ``baseline``
and ``wow`` on cost and on cost per call.)

Detector histories: 64 detectors of each entry learn 64 different synthetic
series (weekly and diurnal shape, log-normal noise, different levels; a cost per
call is the hour's spend over 40 calls); each series then gets its own copy of one of
them, read back from its plain snapshot state (JSON) as a restored detect stage holds
it (until 2026-12-05: unpickled), so every series owns separate objects of a realistic
learned state, without running N x 672 updates.

The detectors' numbers and blocks live in rows of arrays, since the evening of 2026-12-06
in the ``Bank`` of the series' config entries (``detectors._bank``: a series holds its row
number, no detector object): those arrays are counted as the detectors' (the bench forgets
the banks and rows the first pass grew, and forgets them again when it drops the
detectors, so what the rows hold is measured, not just what points at them).

Two passes over the same build. First the process RSS (current RSS from
/proc/self/statm) before and after building everything, with no tracing: a
live worker runs untraced, and tracemalloc's own tables and allocation
pattern add hundreds of MB at 100,000 series that subtracting its reported
size does not remove. RSS is larger than the traced bytes: it includes the
interpreter and libraries, and memory freed while building (flush records)
that the allocator keeps. Then, with everything freed, ``tracemalloc`` gives
the bytes Python allocated for each part, divided by N. Takes a few minutes
at 100,000 series (tracemalloc slows allocation down).

Last, what a checkpoint saves at this size (before the two passes, untraced): every
partition's open windows, as the ingest stage encodes them (also with the garbage collector
on, as its snapshot was built until 2026-12-06: each young collection the snapshot's lists
triggered walked the whole heap), and the watch, as the detect stage does, with how often
each stage then saves (``Stage.checkpoint_due``); then the watch's save once every series
dozes (an hour on, silent), and what settling them first took, as every save did until
2026-12-07 (``dozing_save``). Times are of this machine, for scale.

    python -m bench memory [--series N] [--partitions P] [--json]
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

from bench._output import show
from spendbrake.detectors import Detector, SpendWatch, make_detector
from spendbrake.detectors._bank import forget_banks
from spendbrake.schemas import Config, DetectorConfig, UsageEvent, gc_paused
from spendbrake.stages.stage import SAVE_SHARE, WorkerSettings
from spendbrake.streamer import RollupState, SeriesTable, _rollup

START_TS = 1_791_158_400.0  # a Monday
HISTORY_H = 4 * 168
#: What the detect stage runs on every series by default.
DETECTORS: list[DetectorConfig] = Config().detectors
WARM = 64
CALLS_PER_HOUR = 40.0


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def hourly_spend(seed: int, hours: int) -> list[float]:
    """A synthetic hourly spend series: weekday/weekend and diurnal shape, noise."""
    rng = random.Random(seed)
    level = rng.uniform(0.5, 200.0)
    out = []
    for h in range(hours):
        hod, dow = h % 24, (h // 24) % 7
        shape = (0.35 + 0.65 * math.exp(-(((hod - 15.0) / 4.5) ** 2))) * (0.4 if dow >= 5 else 1.0)
        out.append(level * shape * rng.lognormvariate(0.0, 0.3))
    return out


def warm_detectors(cfg: DetectorConfig) -> list[bytes]:
    """Snapshot states (``dump_state`` as JSON) of ``WARM`` detectors of one config entry,
    each after its own four weeks."""
    per = CALLS_PER_HOUR if cfg.metric == "cost_per_call" else 1.0
    out = []
    for seed in range(WARM):
        detector: Detector = make_detector(cfg.kind, **cfg.params)
        for h, value in enumerate(hourly_spend(seed, HISTORY_H)):
            detector.update(START_TS - HISTORY_H * 3600.0 + h * 3600.0, value / per)
        out.append(msgspec.json.encode(detector.dump_state()))
    return out


def build(series: int, partitions: int = 1) -> tuple[list[RollupState], SpendWatch]:
    """Open windows of ``series`` api keys after 15 minutes of calls every 5 minutes each,
    spread over the input ``partitions`` (events are keyed by ``event_id``, so one key's calls
    land on several), and a watch that observed every flush of them."""
    table = SeriesTable()  # one process holds every partition, as a worker does
    # Every key watched: what a series costs is the question, not what the cap saves.
    limits = {"series_per_set": max(series, 10)}
    config = Config.model_validate({"dimensions": [["api_key"]], "limits": limits})
    # The windows the worker keeps of the key set (``Config.rollup_windows``): its hours
    # and days; minutes only of budgets' scopes, and no key here has a budget.
    sizes, minutes = config.rollup_windows()
    at = config.rollup_dimensions().index(("api_key",))
    states = [
        RollupState(
            [["api_key"]],
            partition=p,
            series_table=table,
            dim_windows_s=[sizes[at]],
            minute_values=[minutes[at]],
        )
        for p in range(partitions)
    ]
    watch = SpendWatch(config, partitions=partitions)
    rng = random.Random(1)
    for minute in range(15):
        for i in range(-minute % 5, series, 5):
            state = states[(i + minute) % partitions]
            ts = START_TS + minute * 60 + rng.random() * 60
            event = UsageEvent(
                event_id="",
                ts=ts,
                provider="openai",
                model="gpt-4o",
                input_tokens=rng.randint(100, 5000),
                output_tokens=rng.randint(10, 800),
                team="t",
                api_key=f"key-{i:06d}",
            )
            state.add(event, rng.randint(10_000, 50_000_000), True)
        if minute % 5 == 4:
            # Fold fine cells into windows and close what the watermark passed; the detect
            # stage reads the records.
            for state in states:
                watch.observe(state.flush())
                watch.set_mark(state.partition, state.watermark)
            watch.advance()
    return states, watch


def install_warm_detectors(watch: SpendWatch, states: list[list[bytes]]) -> None:
    """Each series' own copy of a warm detector of each config entry, read back from its
    state as a restore does (a twin of one built from the config, then ``load_state``)."""
    built = [make_detector(cfg.kind, **cfg.params) for cfg in DETECTORS]
    for j, series in enumerate(watch.series.values()):
        restored = []
        for i, warm in enumerate(states):
            detector = copy.copy(built[i])
            detector.load_state(msgspec.json.decode(warm[j % WARM]))
            restored.append((i, detector))
        series.detectors = restored
        # And the hour before, as every live series holds it once an hour has closed (its
        # detectors learned it): (hour, cost_nusd, calls), read back from a snapshot (into
        # the head of the series' array, as a restore puts it).
        series.closed = (int(START_TS) - 3600, 10**6 + 7919 * j, 40 + j % 400)


def label(cfg: DetectorConfig) -> str:
    return cfg.kind if cfg.metric == "cost_usd" else f"{cfg.kind}_{cfg.metric}"


def measure(series: int, partitions: int = 4) -> dict[str, Any]:
    states = [warm_detectors(cfg) for cfg in DETECTORS]
    gc.collect()
    rss_before = rss_mb()
    rollups, watch = build(series, partitions)
    install_warm_detectors(watch, states)
    gc.collect()
    rss_after = rss_mb()
    open_windows = sum(state.open_windows() for state in rollups)
    watched = len(watch.series)
    saves = save_times(rollups, watch)
    del rollups, watch
    gc.collect()

    # Traced, then taken apart: the detectors, then the rest of the watch, then the rollups.
    # The row numbers the rollups share (ints, built by the first pass) are counted too, and
    # so are the arrays the detectors' rows live in (``detectors._rows``: the first pass grew
    # them, and they keep their size when detectors go).
    _rollup._ROW_NUMBERS.clear()
    forget_banks()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    rollups, watch = build(series, partitions)
    install_warm_detectors(watch, states)
    gc.collect()
    total, _ = tracemalloc.get_traced_memory()
    for entry in watch.series.values():
        entry.detectors = []
    watch.book.rebuilt()  # lets go of the bank new series took rows of
    forget_banks()
    gc.collect()
    without_detectors, _ = tracemalloc.get_traced_memory()
    del watch
    gc.collect()
    rollups_only, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del rollups
    rollup_b = (rollups_only - base) / series
    watch_b = (without_detectors - rollups_only) / series
    detector_b = (total - without_detectors) / series
    return {
        "series": series,
        "partitions": partitions,
        "open_windows": open_windows,
        "watched_series": watched,
        "rollup_bytes_per_series": round(rollup_b),
        "watch_bytes_per_series": round(watch_b),
        "detectors_per_series": len(DETECTORS),
        "detector_bytes_per_series": round(detector_b),
        **{f"{label(c)}_state_bytes": len(p[0]) for c, p in zip(DETECTORS, states, strict=True)},
        "state_bytes_per_series": round(rollup_b + watch_b + detector_b),
        "state_mb": round((total - base) / 2**20, 1),
        "process_rss_mb": round(rss_after, 1),
        "rss_delta_mb": round(rss_after - rss_before, 1),
        "target_bytes_per_series": 2048,
        "target_rss_mb": 500,
        **saves,
    }


def save_times(rollups: list[RollupState], watch: SpendWatch) -> dict[str, Any]:
    """What a checkpoint saves at this size, encoded as the stages write it: every
    partition's open windows (the ingest's snapshots; also with the collector on, as they
    were built until 2026-12-06) and the watch (the detect stage's), and how often a stage
    saves them (``Stage.checkpoint_due``: at most ``SAVE_SHARE`` of its time)."""
    gc.collect()
    started = time.perf_counter()
    with gc_paused():
        ingest_mb = sum(len(msgspec.json.encode(s.snapshot())) for s in rollups) / 2**20
    ingest_s = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    sum(len(msgspec.json.encode(s.snapshot())) for s in rollups)
    ingest_gc_on_s = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    detect_mb = len(watch.snapshot()) / 2**20
    detect_s = time.perf_counter() - started
    interval = WorkerSettings(state_dir=Path(".")).checkpoint_interval_s
    dozing, dozing_s, settle_s = dozing_save(watch)
    return {
        "ingest_save_s": round(ingest_s, 2),
        "ingest_save_collector_on_s": round(ingest_gc_on_s, 2),
        "ingest_save_mb": round(ingest_mb, 1),
        "ingest_saves_every_s": round(max(interval, ingest_s / SAVE_SHARE), 1),
        "detect_save_s": round(detect_s, 2),
        "detect_save_mb": round(detect_mb, 1),
        "detect_saves_every_s": round(max(interval, detect_s / SAVE_SHARE), 1),
        "dozing_series": dozing,
        "detect_save_dozing_s": round(dozing_s, 2),
        "settle_dozing_s": round(settle_s, 2),
    }


def dozing_save(watch: SpendWatch) -> tuple[int, float, float]:
    """The watch's save once its series doze: its hour closed, then a silent one (every
    series dozes, ``SeriesBook.doze``). Returns the dozing series, the save's seconds, and
    what settling them first took (every save did it until 2026-12-07, and the next close
    visited them all again). Moves the watch on: call it last."""
    clock = watch.clock
    for hour_end in (START_TS + 3600, START_TS + 7200):
        for p in range(clock.partitions):
            watch.set_mark(p, hour_end + clock.lateness_s + 1)
        watch.advance()
    dozing = sum(s.asleep_from < 0 for s in watch.series.values())
    gc.collect()
    started = time.perf_counter()
    watch.snapshot()
    save_s = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    watch.book.settle_all(watch.clock.closed_until, watch.config)
    return dozing, save_s, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="input partitions the events spread over, all held by this process (default 4, "
        "as kafka.partitions)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.series, args.partitions)
    show(result, args.json)


if __name__ == "__main__":
    main()
