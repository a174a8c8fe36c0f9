"""``spendbrake replay``: the live pipeline's logic run in-process over a file of events.

Events go through the streamer's own partition processor (validation, dedupe, pricing,
rollups), its rollup records through the detector stage's ``SpendWatch``, and its alerts
through the policies: the same functions the live worker calls, minus Kafka. So a threshold
changed in the config can be tried on last month's traffic before it is deployed.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from spendbrake.schemas import (
    Alert,
    Config,
    InvalidEvent,
    PriceTable,
    RollupColumns,
    UsageEvent,
    decode_event,
    fast_decode,
)
from spendbrake.streamer import FIRST_DEAD, PartitionProcessor, StepFold

__all__ = ["ReplayStats", "RollupPlan", "by_event_time", "replay", "replay_lines", "rolled_up"]


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    valid: int = 0
    duplicates: int = 0
    late: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    #: The first few rejected lines: (line number from 1, the field and reason).
    rejected: list[tuple[int, str]] = field(default_factory=list)
    #: Events of models no price covers, counted as $0 (the live ingest's ``unpriced_model``
    #: notice), in all and by model.
    unpriced: int = 0
    unpriced_models: dict[str, int] = field(default_factory=dict)


def by_event_time(lines: Iterable[bytes]) -> list[bytes]:
    """The lines sorted by their event's ``ts``, in memory; equal times keep file order
    (so the first copy of a duplicate stays first) and lines with no valid event come first
    (they are rejected either way).

    For files that are not in event-time order (an export grouped by team, partitions
    consumed one after another): read in file order, their events would count as late
    corrections, as the live engine would count them if they arrived that way.
    """
    keyed = []
    for line in lines:
        event = fast_decode(line)
        if event is not None:
            ts = event.ts
        else:
            try:
                ts = decode_event(line).ts
            except InvalidEvent:
                ts = -math.inf
        keyed.append((ts, line))
    keyed.sort(key=_first)
    return [line for _, line in keyed]


def _first(pair: tuple[float, bytes]) -> float:
    return pair[0]


def replay_lines(
    lines: Iterable[bytes],
    config: Config,
    lateness_s: float = 600.0,
    stats: ReplayStats | None = None,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    max_rejected: int = FIRST_DEAD,
) -> Iterator[Alert]:
    """Alerts (policies applied) the live engine would produce from these JSON lines.

    Lines are taken in file order, as one input partition; a malformed line counts as
    dead (with its reason in ``stats.dead``) exactly as the worker would dead-letter it.
    They go through the worker's own batch path, cut where the event-time watermark
    reaches each early-look step, where the rollups are flushed into the watch.

    ``jobs=2`` runs the rollup half (``rolled_up``) in a child process while this one
    runs the watch on its steps (``_replay_split``): the same steps in the same order, so
    the same alerts and stats, in about 0.6x the time on two free cores, after a quarter
    of a second to start the child (so: for large inputs).

    ``stats.rejected`` holds the first ``max_rejected`` rejected lines with their reasons.
    """
    # Here, not at the top: the rollup process (``_replay_split``) imports this module and
    # needs neither (a twentieth of a second of its start, while the watch waits for it).
    from spendbrake.actions import decide
    from spendbrake.detectors import SpendWatch

    stats = stats if stats is not None else ReplayStats()
    # One input partition, whose watermark is the processor's, as the live ingest stage
    # sends it (``WatermarkMark``): the detect stage's clock, not the ends of minute windows.
    watch = SpendWatch(config, lateness_s=lateness_s, partitions=1)
    dimensions = config.rollup_dimensions()
    plan = RollupPlan(
        watch.windows_read(dimensions),
        watch.minutes_read(dimensions),
        watch.peek_s,
        watch.METRICS_READ,
    )
    if jobs > 1 and os.name == "posix" and sys.executable:  # a child by pipes: POSIX
        from ._replay_split import rolled_up_in_child

        steps = rolled_up_in_child(lines, config, lateness_s, plan, stats, max_rejected)
    else:
        steps = rolled_up(lines, config, lateness_s, plan, stats, max_rejected=max_rejected)
    try:
        for blocks, watermark, lines_read in steps:
            watch.observe_columns(blocks)
            watch.set_mark(0, watermark)
            for alert in decide(watch, config):
                stats.alerts += 1
                yield alert
            if progress is not None:
                progress(lines_read)
    finally:
        steps.close()  # a caller that stops early stops the child at once


class RollupPlan(NamedTuple):
    """What the watch reads of each dimension set (``SpendWatch.windows_read`` and
    ``minutes_read``: replay rolls up just that), and how often it looks (``peek_s``:
    replay flushes there)."""

    windows_s: list[tuple[int, ...]]
    minute_values: list[frozenset[tuple[str | None, ...]] | None]
    step_s: float
    #: A record's metrics the watch reads, its first this many (``SpendWatch.METRICS_READ``):
    #: all the child sends it. None: all.
    metrics: int | None = None


#: Rows (events) folded at once: about 300 steps of the 1M-event file, where the fold's
#: arrays are large enough to pay while the watch is never far behind.
FOLD_ROWS = 32768
FIRST_FOLD_ROWS = 1024

#: One early-look step of the rollup half: its records (a block per set and window size), the
#: watermark, lines read so far. (Blocks in msgpack already, ``PackedColumns``, for the child
#: that sends them on: ``rolled_up(packed=True)``.)
Step = tuple[list[RollupColumns], float, int]


def rolled_up(
    lines: Iterable[bytes],
    config: Config,
    lateness_s: float,
    plan: RollupPlan,
    stats: ReplayStats,
    packed: bool = False,
    max_rejected: int = FIRST_DEAD,
) -> Generator[Step, None, None]:
    """The rollup half of replay: the lines through the streamer's partition processor, one
    ``Step`` at each early-look step the watermark reaches, and one at the end; the
    processor's counts in ``stats`` once the lines are done. ``packed``: blocks with their
    numbers in msgpack already, for the child that sends them (``StepFold.fold``), and only
    the metrics the watch reads (``plan.metrics``)."""
    processor = PartitionProcessor(
        "replay",
        0,
        config.rollup_dimensions(),
        PriceTable.default().with_overrides(config.pricing.models),
        lateness_s=lateness_s,
        dim_windows_s=plan.windows_s,
        minute_values=plan.minute_values,
        finals=False,  # the watch reads changes; a closing window's flag is the store's
        traces=False,  # the store's; the watch never reads them
    )
    processor.first_dead_max = max_rejected
    processor.clock_s = time.time()  # a line dated ahead of it is refused, as live
    # Each step's events are folded many steps at once (``StepFold``): the watch gets the
    # same steps, a fold later.
    fold = StepFold(processor.rollups)
    lines_at: list[int] = []
    # The first folds small, so the watch (in another process, idle until then) starts at
    # once; then doubling up to FOLD_ROWS.
    fold_at = FIRST_FOLD_ROWS
    lines_read = 0
    for values, offsets in _batches(lines):
        lines_read = offsets[-1] + 1
        for rows, watermark, read in processor.process_lines(values, offsets, plan.step_s):
            fold.take(rows, watermark)
            lines_at.append(read)
            if fold.held >= fold_at:
                yield from _folded(fold, lines_at, packed, plan.metrics)
                lines_at = []
                fold_at = min(2 * fold_at, FOLD_ROWS)
    fold.take(processor.cut(), processor.rollups.watermark)
    lines_at.append(lines_read)
    s = processor.stats
    stats.lines = s.records
    stats.valid, stats.duplicates, stats.late = s.valid, s.duplicates, s.late
    stats.dead = dict(s.dead)
    stats.rejected = [(offset + 1, reason) for offset, reason in processor.first_dead]
    stats.unpriced, stats.unpriced_models = s.unpriced, dict(s.unpriced_models)
    yield from _folded(fold, lines_at, packed, plan.metrics)


def _folded(
    fold: StepFold, lines_at: list[int], packed: bool, metrics: int | None
) -> Iterator[Step]:
    # Packed for the watch in another process: just the metrics it reads.
    folded = fold.fold(packed, sent_metrics=metrics if packed else None)
    for (blocks, watermark), lines_read in zip(folded, lines_at, strict=True):
        yield blocks, watermark, lines_read


def _batches(
    lines: Iterable[bytes], size: int = 1024
) -> Iterator[tuple[list[bytes], Sequence[int]]]:
    """Non-blank lines and their numbers from 0, the offsets of a one-partition topic.

    A batch is what ``process_lines`` takes a run of at once: large enough that its array
    work is shared by many lines, small enough that the first steps reach the watch soon.
    """
    read = iter(lines)
    first = 0
    while chunk := list(itertools.islice(read, size)):
        # No blank line, the common case, checked without copying a line.
        if b"" not in chunk and not any(map(bytes.isspace, chunk)):
            yield chunk, range(first, first + len(chunk))
        else:
            kept = [(first + i, line) for i, line in enumerate(chunk) if line.strip()]
            if kept:
                yield [line for _, line in kept], [offset for offset, _ in kept]
        first += len(chunk)


def replay(events: Iterable[UsageEvent], config: Config) -> Iterator[dict[str, Any]]:
    """Alert records for ``events`` as the JSON objects written, for code that holds events,
    not lines."""
    for alert in replay_lines((e.to_json() for e in events), config):
        yield msgspec.to_builtins(alert)
