"""A series' calls in the last few early-look steps: the recent rate, from totals already seen.

Why: the early look judged the calls since the top of the hour, so a surge that began at
minute 40 was diluted by the 40 normal minutes before it (critical-spike-014 of the
evaluation: 15 calls in its first 23 minutes, 11x its slot's rate, judged at 04:45 as 18
calls in 45 minutes, 7x, and paged at 04:55). An on-call judges the recent rate: the last
15 minutes against the slot's. The watch sees each hour's cumulative calls at every step,
so the calls of the last steps are differences of totals it has already seen: a series
keeps its open hour's calls at the last ``STEPS`` looks, packed in one int (48 bytes a
series with its slot, where a tuple of them took over 100).

The calls at a step are those of the hour holding that step, as of that look. A series is
recorded at every look where it changed, so between records its calls stood still; that
holds only while looks came at every step (``looks_from``: a backlog or a restart skips
some, and the window is not judged until it lies after them again).

>>> ring = record(0, 100, 7)                     # step 100 (08:20 at 5-minute steps): 7 calls
>>> ring = record(ring, 101, 9)
>>> window(ring, 103, 99, 12, lambda step: 0, 14)  # 14 calls at 08:35, 7 at 08:20
7
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["STEPS", "record", "window"]

#: The recent window, in early-look steps (15 minutes at the default 5-minute steps).
STEPS = 3
#: Bits of each step's calls in the packed int: an hour of 2**32 calls or more has no recent
#: window (the hour's own look still judges it).
_BITS = 32
_MASK = (1 << _BITS) - 1


def _unpack(ring: int) -> tuple[int, list[int]]:
    """(step of the last record, calls at steps ``step - STEPS + 1`` .. ``step``)."""
    return ring >> (_BITS * STEPS), [(ring >> (_BITS * i)) & _MASK for i in range(STEPS)]


def _calls_at(ring: int, step: int, hour_steps: int) -> int | None:
    """Calls of the hour holding ``step`` as of the look at ``step``; None if not kept."""
    if not ring:
        return 0  # never recorded: no calls since looks began at every step
    last, calls = _unpack(ring)
    if step // hour_steps > last // hour_steps:
        return 0  # nothing recorded in that hour by then: it had no calls
    if step >= last:
        return calls[STEPS - 1]  # unchanged since the last record
    i = step - last + STEPS - 1
    return calls[i] if i >= 0 else None


def record(ring: int, step: int, calls: int, hour_steps: int = 12) -> int:
    """``ring`` after a look at ``step`` saw ``calls`` in the hour holding it."""
    kept = [_calls_at(ring, step - i, hour_steps) for i in range(STEPS - 1, 0, -1)]
    out = step << (_BITS * STEPS)  # the oldest step's calls in the lowest bits
    for i, c in enumerate((*kept, calls)):
        out |= min(max(c or 0, 0), _MASK) << (_BITS * i)
    return out


def window(
    ring: int,
    step: int,
    looks_from: int,
    hour_steps: int,
    hour_total: Callable[[int], int],
    calls: int,
) -> int | None:
    """Calls in the last ``STEPS`` steps before the look at ``step``; None if unknown.

    ``ring`` is as recorded before this look; ``calls`` the current hour's calls now, and
    ``hour_total(hour)`` (``hour`` in hours since the epoch) a finished hour's calls now (the
    window may begin in the hour before). Unknown when looks have not come at every step
    since the window's start (``looks_from``).
    """
    back = step - STEPS
    if back < looks_from or calls >= _MASK:
        return None
    if ring and ring >> (_BITS * STEPS) >= step:
        return None  # recorded at this step or later (a look repeated): no window to judge
    before = _calls_at(ring, back, hour_steps)
    if before is None:
        return None
    hour = step // hour_steps
    if back // hour_steps == hour:
        return calls - before
    if back // hour_steps == hour - 1 and (done := hour_total(hour - 1)) < _MASK:
        return done - before + calls
    return None
