"""A series' calls in the last few early-look steps: the recent rate, from totals already seen.

Why: the early look judged the calls since the top of the hour, so a surge that began at
minute 40 was diluted by the 40 normal minutes before it (critical-spike-014 of the
evaluation: 15 calls in its first 23 minutes, 11x its slot's rate, judged at 04:45 as 18
calls in 45 minutes, 7x, and paged at 04:55). An on-call judges the recent rate: the last
15 minutes against the slot's. The watch sees each hour's cumulative calls at every step,
so the calls of the last steps are differences of totals it has already seen: a series
keeps its open hour's calls at the last ``STEPS`` looks, packed in two int64 of its state
array (``Series.state``: 16 bytes, where one packed int took 48 with its slot and a tuple
of them over 100). ``hi`` is the step of the last look << 32 | the calls then; ``lo`` the
calls at the two looks before, the older in its low 32 bits. A snapshot keeps them as one
int, ``hi << 64 | lo``.

The calls at a step are those of the hour holding that step, as of that look. A series is
recorded at every look where it changed, so between records its calls stood still; that
holds only while looks came at every step (``looks_from``: a backlog or a restart skips
some, and the window is not judged until it lies after them again).

>>> _, hi, lo = look(0, 0, 100, 99, 12, 7, lambda hour: 0)  # step 100 (08:20 at 5-min steps)
>>> _, hi, lo = look(hi, lo, 101, 99, 12, 9, lambda hour: 0)
>>> _, hi, lo = look(hi, lo, 102, 99, 12, 12, lambda hour: 0)
>>> look(hi, lo, 103, 99, 12, 14, lambda hour: 0)[0]  # 14 calls at 08:35, 7 at 08:20
7
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spendbrake.detectors._series import RECENT_HI, RECENT_LO, Series

__all__ = ["STEPS", "look", "look_all"]

#: The recent window, in early-look steps (15 minutes at the default 5-minute steps); the
#: two int64 of the ring hold the calls of three steps.
STEPS = 3
#: Bits of each step's calls: an hour of 2**32 calls or more has no recent window (the
#: hour's own look still judges it).
_BITS = 32
_MASK = (1 << _BITS) - 1


def look(
    hi: int,
    lo: int,
    step: int,
    looks_from: int,
    hour_steps: int,
    calls: int,
    hour_total: Callable[[int], int],
) -> tuple[int | None, int, int]:
    """(calls in the last ``STEPS`` steps before the look at ``step``, or None if unknown;
    the ring ``hi``, ``lo`` with this look's ``calls`` recorded).

    ``calls`` are the current hour's calls now, and ``hour_total(hour)`` (``hour`` in hours
    since the epoch) a finished hour's calls now: the window may begin in the hour before.
    Unknown when looks have not come at every step since the window's start
    (``looks_from``), or for an hour of 2**32 calls or more. One unpacking a look: replay
    makes one a changed series every 5 minutes.
    """
    last = hi >> _BITS
    back = step - STEPS
    if last == step - 1 and (hi or lo) and calls < _MASK:
        # The usual look, a step after the last record: slide the ring by one step.
        out_hi = step << _BITS | calls
        out_lo = (hi & _MASK) << _BITS | lo >> _BITS
        if back < looks_from:
            return None, out_hi, out_lo
        before = lo & _MASK  # the calls at the window's start, as recorded then
        hour = step // hour_steps
        if back // hour_steps == hour:
            return calls - before, out_hi, out_lo
        if (done := hour_total(hour - 1)) < _MASK:
            return done - before + calls, out_hi, out_lo
        return None, out_hi, out_lo
    # Calls at steps last - STEPS + 1 .. last, the oldest first.
    kept = [lo & _MASK, lo >> _BITS, hi & _MASK]
    recorded = bool(hi or lo)
    last_hour = last // hour_steps

    def at(x: int) -> int | None:
        """Calls of the hour holding step ``x`` as of the look at ``x``; None if not kept."""
        if not recorded or x // hour_steps > last_hour:
            return 0  # nothing recorded in that hour by then: it had no calls
        if x >= last:
            return kept[-1]  # unchanged since the last record
        i = x - last + STEPS - 1
        return kept[i] if i >= 0 else None

    oldest, older = (min(max(at(step - i) or 0, 0), _MASK) for i in (2, 1))
    out_hi = step << _BITS | min(max(calls, 0), _MASK)
    out_lo = older << _BITS | oldest
    if back < looks_from or calls >= _MASK or (recorded and last >= step):
        return None, out_hi, out_lo  # a look repeated at this step or earlier: no window
    before = at(back)
    if before is None:
        return None, out_hi, out_lo
    hour = step // hour_steps
    if back // hour_steps == hour:
        return calls - before, out_hi, out_lo
    if back // hour_steps == hour - 1 and (done := hour_total(hour - 1)) < _MASK:
        return done - before + calls, out_hi, out_lo
    return None, out_hi, out_lo


def look_all(
    series: Sequence[Series],
    calls: Sequence[int],
    step: int,
    looks_from: int,
    hour_steps: int,
) -> list[int | None]:
    """``look`` at ``step`` for each of ``series`` (their current hour's ``calls`` now), each
    ring updated in place in its ``Series.state``: the calls in the last ``STEPS`` steps of
    each, or None if unknown.

    Why one call for all: replay looks at about 40 changed series a step, 10,000 steps, and
    nearly every look is the usual one (a step after the last record), a few shifts the same
    for all, taken here without a call a series; any other goes through ``look``
    (``tests/detectors/test_recent.py`` compares the two).
    """
    out: list[int | None] = []
    last = step - 1
    head = step << _BITS
    back = step - STEPS
    hour = step // hour_steps
    known = back >= looks_from
    same_hour = back // hour_steps == hour
    for s, now in zip(series, calls, strict=True):
        st = s.state
        hi = st[RECENT_HI]
        lo = st[RECENT_LO]
        if hi >> _BITS == last and (hi or lo) and now < _MASK:
            new_hi = head | now
            new_lo = (hi & _MASK) << _BITS | lo >> _BITS
            got: int | None = None
            if known:
                if same_hour:
                    got = now - (lo & _MASK)
                elif (done := s.hour_calls(hour - 1)) < _MASK:
                    got = done - (lo & _MASK) + now
        else:
            got, new_hi, new_lo = look(hi, lo, step, looks_from, hour_steps, now, s.hour_calls)
        try:  # in place, as ``Series.set_recent`` (a method call a look costs replay speed)
            st[RECENT_HI] = new_hi
            st[RECENT_LO] = new_lo
        except OverflowError:
            s.set_recent(new_hi, new_lo)
        out.append(got)
    return out
