"""The watch's event time: the watermark, the hours closed behind it, the next early look.

Hours close on event time, never on a wall clock: an hour's detectors learn it once the
watermark has passed its end plus the allowed lateness. With several input partitions the
watermark is the slowest one's (a partition replayed from an older snapshot must not close
hours the others are still filling), except partitions declared idle; with none given, it
is the end of the latest minute record seen (one ordered source of records, as tests feed
them; replay and the live stage give marks).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EventClock"]

HOUR = 3600


class EventClock:
    """Per-partition marks, the watermark ``now``, ``closed_until`` and the next peek.

    Parameters
    ----------
    lateness_s
        How long after its end an hour may still change before it is closed.
    peek_s
        Event-time interval between early looks at the hours still filling.
    partitions
        Input partitions whose marks make the watermark (None: the latest mark seen).
    """

    def __init__(self, lateness_s: float, peek_s: float, partitions: int | None) -> None:
        self.lateness_s = lateness_s
        self.peek_s = peek_s
        self.partitions = partitions
        #: Event-time watermark: the slowest input partition's mark.
        self.now = -math.inf
        #: input partition -> its watermark mark (without ``partitions``: the end of the
        #: latest on-time minute record)
        self.marks: dict[int, float] = {}
        #: partitions the caller declared idle: they do not hold the watermark back
        self.idle: set[int] = set()
        #: Start of the first hour not closed yet (None: nothing closed so far).
        self.closed_until: int | None = None
        self.next_peek = -math.inf
        #: The step (``now // peek_s``) of the last early look, and the first of the run of
        #: looks at every step up to it (None: none yet). A series' recent calls are told
        #: from its totals at past looks only within such a run (``_recent``).
        self.last_look: int | None = None
        self.looks_from: int | None = None

    def mark(self, partition: int, watermark: float) -> None:
        """Input ``partition`` has sent every window up to event time ``watermark``."""
        if watermark > self.marks.get(partition, -math.inf):
            self.marks[partition] = float(watermark)
            self.idle.discard(partition)

    def advance(self) -> None:
        """Move ``now`` to what the marks (and idle partitions) allow; never back."""
        marks = self.marks
        if self.partitions is None:
            held = list(marks.values())
        else:
            active = [p for p in range(self.partitions) if p not in self.idle]
            if any(p not in marks for p in active):
                return  # a partition has not reported yet: it may hold the earliest data
            held = [marks[p] for p in active]
        if held:
            self.now = max(self.now, min(held) if self.partitions is not None else max(held))

    def _active_marks(self) -> list[float]:
        """The marks that hold the watermark (``[now]`` without ``partitions``)."""
        if self.partitions is None:
            return [self.now]
        marks = self.marks
        return [marks[p] for p in range(self.partitions) if p not in self.idle and p in marks]

    @property
    def apart(self) -> bool:
        """The input partitions' marks are more than one early-look step apart: a backlog, a
        restart or a slow worker reading them unevenly. An open hour then holds the faster
        partitions' calls well past the watermark, and judged as a rate up to the watermark
        it looked many times busier than it is: early looks wait till they are together."""
        marks = self._active_marks()
        return len(marks) > 1 and max(marks) - min(marks) > self.peek_s

    def seen(self, hour: int) -> float:
        """The share of ``hour`` its totals hold so far: each partition's progress into it,
        averaged (events are keyed by event id, so a series' calls spread evenly over the
        partitions); with one partition, the watermark's progress."""
        marks = self._active_marks() or [self.now]
        return sum(min(1.0, max(0.0, (m - hour) / HOUR)) for m in marks) / len(marks)

    @property
    def behind(self) -> bool:
        """An hour the watermark has passed is not closed yet."""
        return (
            self.closed_until is not None and self.closed_until + HOUR + self.lateness_s <= self.now
        )

    def peek_due(self) -> bool:
        """Whether an early look is due at ``now``; if so, the next one is scheduled."""
        if self.now < self.next_peek:
            return False
        step = int(self.now // self.peek_s)
        if self.last_look is None or step != self.last_look + 1:
            self.looks_from = step  # a step without a look (a backlog, a jump): a new run
        self.last_look = step
        self.next_peek = (step + 1) * self.peek_s
        return True

    # -- state ---------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "now": _finite(self.now),
            "marks": [[p, m] for p, m in self.marks.items()],
            "idle": sorted(self.idle),
            "closed_until": self.closed_until,
            "next_peek": _finite(self.next_peek),
            "looks": [self.last_look, self.looks_from],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.now = -math.inf if data["now"] is None else float(data["now"])
        self.marks = {int(p): float(m) for p, m in data["marks"]}
        self.idle = {int(p) for p in data["idle"]}
        closed = data["closed_until"]
        self.closed_until = None if closed is None else int(closed)
        self.next_peek = -math.inf if data["next_peek"] is None else float(data["next_peek"])
        # Snapshots from before the recent look have none: the next look starts a run.
        last, first = data.get("looks") or (None, None)
        self.last_look = None if last is None else int(last)
        self.looks_from = None if first is None else int(first)


def _finite(x: float) -> float | None:
    """``x``, or None for the -inf of "not yet" (JSON has no infinities)."""
    return x if math.isfinite(x) else None
