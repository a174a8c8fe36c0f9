"""``wow``: a whole day against the same day of the last few weeks, and a creep as it builds.

Why this shape: AI traffic is strongly weekly, so the fair reference for a day is the same
weekday in earlier weeks, not a flat monthly mean. One week back is fragile: last week's
outage makes a normal day look like a rise, and last week's burst hides one. So the
reference is the same window over the last ``weeks`` weeks, averaged over those within
``band`` times their median (an outage or a burst in one week is left out; in a normal
week all count, so the reference is as steady as a plain mean).

Windows are whole (``window_s``, a UTC day by default) and judged once, when their last
period (hour) arrives: a change must hold over the window to count, and an hour's burst is a
few percent of a day. Two tests, both against the series' own day-to-day noise (an EW RMS of
the log ratio's innovation, winsorized, learned one window at a time):

- a step: this window's log ratio over ``max(log1p(rise), z * noise)`` and ``min_usd``
  more dollars than its reference;
- a creep: an EW mean of the windows' log ratios (``creep_alpha``: a few days' memory),
  floored at zero (a creep is a rise: low days before it must not hold it back) and
  started when judging starts (noise it gathered while learning is no creep), over
  ``creep_z`` times its own standard deviation, ``creep_rise`` and ``min_usd``, so growth of a
  few percent a day shows within about a week, long before any single day stands out. The
  least rise is what keeps the bar low: on a steady series a few percent is sigmas, and
  no news.

What it finds is a trend, not a runaway (``baseline`` pages those within the hour), so its
verdicts say ``trend``: the detector stage sends them as severity ``info``, for the digest.
A window at ``page_x`` times its reference or more is paged instead (0: never). One alert
per rise (a launch's step alerts once, not every week until the reference weeks have
caught up), again only if it grows by a further ``step`` times the larger of ``rise`` and
the peak rise since.

State: a ring of ``weeks`` weeks of window sums plus one, as int16 log codes
(``detectors._logcode``: 29 codes, 58 bytes, for days over four weeks), the open window's
sum and four numbers. Snapshots of the hourly ``wow`` it replaced (until 2026-12: the
trailing 24 h against the same hours one week earlier) restore with their ring of a week of
hours summed into days.

>>> d = WeekOverWeek(min_usd=10.0)
>>> quiet = [d.update(h * 3600.0, 50.0) for h in range(28 * 24)]
>>> day = [d.update(h * 3600.0, 80.0) for h in range(28 * 24, 29 * 24)]
>>> [v.is_anomaly for v in day].index(True), day[-1].trend, round(day[-1].expected)
(23, True, 1200)
"""

from __future__ import annotations

import copy
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from spendbrake.detectors._base import (
    WEEK_S,
    HyperParams,
    Verdict,
    check,
    expose,
    ignored,
    ratio_score,
    register,
    share,
    usable,
    usd,
)
from spendbrake.detectors._logcode import EMPTY, decode, encode
from spendbrake.detectors._rows import InRows, Rows, numbers, rows_for
from spendbrake.detectors._wow_naive import _WowParams

__all__ = ["WeekOverWeek"]

#: Smallest day-to-day noise assumed (log units): a flat series must not alert on +4 %.
NOISE_FLOOR = 0.05
#: A window weighs at most this many times (at least its inverse) a usual one.
WEIGHT_MAX = 10.0

#: Window sums are int16 log2 codes: each reads back within 0.07 %, a ratio of two within
#: 0.14 %, against a bar of at least +30 % and a noise of 5 % or more. A decision moves only
#: for a ratio within a few tenths of a percent of its bar.


@dataclass(frozen=True, slots=True)
class _TrendParams(HyperParams):
    window_s: float
    period_s: float
    rise: float
    min_usd: float
    step: float
    cooldown_s: float
    min_coverage: float
    band: float
    z: float
    noise_alpha: float
    noise_n: int
    weeks: int
    creep_alpha: float
    creep_z: float
    page_x: float
    #: Last, with the meaning of before it (no least rise): a snapshot's parameters, saved
    #: before it existed, restore positionally.
    creep_rise: float = 0.0

    #: Windows compared counted up to here (then the warm-up gate and the rate
    #: ``max(noise_alpha, 1 / n)`` stay as they are): CPython shares small ints.
    var_n_cap: int = field(init=False, repr=False, compare=False)
    #: Periods in a window, windows in a week, ring length, windows in the cooldown.
    periods: int = field(init=False, repr=False, compare=False)
    per_week: int = field(init=False, repr=False, compare=False)
    ring: int = field(init=False, repr=False, compare=False)
    cooldown: int = field(init=False, repr=False, compare=False)
    #: Periods from the epoch to the first window start: windows of a week begin on Monday
    #: 00:00 UTC (the epoch was a Thursday); a day's at midnight.
    offset: int = field(init=False, repr=False, compare=False)
    #: Reference weeks needed, the creep mean's standard deviation in noise units, and
    #: ``creep_rise`` in log units.
    need: int = field(init=False, repr=False, compare=False)
    creep_sd: float = field(init=False, repr=False, compare=False)
    creep_floor: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cap = max(self.noise_n + 1, math.ceil(1.0 / self.noise_alpha) + 1)
        a = self.creep_alpha
        set_ = object.__setattr__
        set_(self, "var_n_cap", min(cap, 255))
        set_(self, "periods", round(self.window_s / self.period_s))
        monday = (4 * 86400.0) % self.window_s
        whole = _divides(self.period_s, monday)
        set_(self, "offset", round(monday / self.period_s) if whole else 0)
        set_(self, "per_week", round(WEEK_S / self.window_s))
        set_(self, "ring", self.weeks * round(WEEK_S / self.window_s) + 1)
        set_(self, "cooldown", math.ceil(self.cooldown_s / self.window_s))
        set_(self, "need", max(1, math.ceil(self.min_coverage * self.weeks - 1e-9)))
        set_(self, "creep_sd", math.sqrt(a / (2.0 - a)))
        set_(self, "creep_floor", math.log1p(self.creep_rise))


@register("wow")
@expose(_TrendParams)
class WeekOverWeek(InRows):
    """A window's spend against the same window of the last few weeks: steps and creeps.

    Parameters
    ----------
    window_s
        The window judged, in seconds (86400: a UTC day); it divides a week.
    period_s
        Length of one input value (3600: hourly); it divides ``window_s``.
    rise
        Smallest step that counts (0.30: 30 % over the reference).
    min_usd
        The rise must also be worth this many dollars over the window.
    step, cooldown_s
        After an alert, quiet unless the rise grows by a further ``step * max(rise, peak
        rise)`` over the peak rise seen since, until the series is back within its usual
        swing, and for ``cooldown_s`` (a week) at least.
    min_coverage
        Share of the ``weeks`` reference windows that must have spend to compare (0.5: two
        of four, so a series compares from its third week).
    band
        Reference windows further than ``band`` times from their median are left out
        before averaging the rest (an outage or a burst in one week moves nothing).
    z
        A step must be ``z`` times the series' own day-to-day noise (and ``rise``).
    noise_alpha, noise_n
        Smoothing of that noise (per window), and windows compared before any alert.
    weeks
        Reference weeks kept (4).
    creep_alpha, creep_z, creep_rise
        The creep test: an EW mean of the log ratios at rate ``creep_alpha``, alerting at
        ``creep_z`` of its standard deviation (0: off) once it is also ``creep_rise`` (0.15:
        days averaging +15 % over their reference) or more.
    page_x
        A window at this many times its reference is paged, not a trend (0: never).
    """

    def __init__(
        self,
        window_s: float = 86400.0,
        period_s: float = 3600.0,
        rise: float = 0.30,
        min_usd: float = 10.0,
        step: float = 0.5,
        cooldown_s: float = WEEK_S,
        min_coverage: float = 0.5,
        band: float = 2.0,
        z: float = 4.0,
        noise_alpha: float = 0.1,
        noise_n: int = 7,
        weeks: int = 4,
        creep_alpha: float = 0.25,
        creep_z: float = 2.25,
        creep_rise: float = 0.15,
        page_x: float = 0.0,
    ) -> None:
        check("period_s", period_s, period_s > 0, "> 0")
        check(
            "window_s",
            window_s,
            period_s <= window_s <= WEEK_S
            and _divides(period_s, window_s)
            and _divides(window_s, WEEK_S),
            "a multiple of period_s dividing a week",
        )
        check("rise", rise, rise > 0, "> 0")
        check("min_usd", min_usd, min_usd >= 0, ">= 0")
        check("step", step, step >= 0, ">= 0")
        check("cooldown_s", cooldown_s, cooldown_s >= 0, ">= 0")
        check("min_coverage", min_coverage, 0 < min_coverage <= 1, "in (0, 1]")
        check("band", band, band > 1, "> 1")
        check("z", z, z >= 0, ">= 0 (0: the plain rise)")
        check("noise_alpha", noise_alpha, 0 < noise_alpha <= 1, "in (0, 1]")
        check("noise_n", noise_n, isinstance(noise_n, int) and noise_n >= 1, "an int >= 1")
        check("weeks", weeks, isinstance(weeks, int) and 1 <= weeks <= 12, "an int in [1, 12]")
        check("creep_alpha", creep_alpha, 0 < creep_alpha < 1, "in (0, 1)")
        check("creep_z", creep_z, creep_z >= 0, ">= 0 (0: off)")
        check("creep_rise", creep_rise, creep_rise >= 0, ">= 0")
        check("page_x", page_x, page_x == 0 or page_x > 1, "0 (never) or > 1")
        # Shared by every detector of this config; read back as attributes (``self.rise``).
        self._hp = share(
            _TrendParams(
                window_s,
                period_s,
                rise,
                min_usd,
                step,
                cooldown_s,
                min_coverage,
                band,
                z,
                noise_alpha,
                noise_n,
                weeks,
                creep_alpha,
                creep_z,
                page_x,
                creep_rise,
            )
        )
        #: A row of the ``Rows`` of its ring's length (``_rows_for``), each part read by name:
        #: the closed windows' sums by window index modulo its length (``_ring``; EMPTY: no
        #: spend or none seen); the open window (``_head``, None before any) and its sum so
        #: far (``_sum``); the window of the last alert (``_fired``) and the peak ratio since
        #: (``_peak``), for the hysteresis; the EW mean of the squared innovation of the log
        #: ratio in a usual window's units (``_var``), windows compared (``_var_n``), the EW
        #: mean of the log ratio (``_ewma``: the creep), and of the reference sums
        #: (``_wmean``: the usual window, against which volume is weighed).
        self._take()

    state_fields = (
        "_ewma",
        "_fired",
        "_head",
        "_peak",
        "_ring",
        "_sum",
        "_var",
        "_var_n",
        "_wmean",
    )
    __slots__ = ("_hp",)

    def _rows_for(self) -> Rows:
        n = self._hp.ring
        return rows_for((WeekOverWeek, n), lambda: Rows(_NUMBERS, (array("h", [EMPTY]) * n,)))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickle: this layout (a slot per number until 2026-12-06: the same names),
        or the hourly ``wow`` of before 2026-12 (its slots, or the older instance dict),
        whose week of hours becomes closed days."""
        if not isinstance(state.get("_hp"), _TrendParams):
            state = _from_hourly(state)
        self._place(state)

    def peek(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """The verdict ``update`` would give, with no state change (a twin, own row)."""
        return copy.copy(self).update(ts, value, weight)

    def learn_run(self, start: int, until: int, value: float, weight: float = 1.0) -> None:
        """``learn`` of silent hours: the hours inside the open window before its last add
        nothing to its sum and say nothing (skipped at once, a window at a time); the rest
        (a window's last hour, a new window) is ``update``'s."""
        hp = self._hp
        if value != 0.0 or hp.period_s != 3600 or start % 3600:
            super().learn_run(start, until, value, weight)
            return
        v, i = self._rows.nums, self._row * _WIDTH
        periods, offset = hp.periods, hp.offset
        ts = start
        while ts < until:
            k = ts // 3600 - offset
            head = v[i + _HEAD]
            if k // periods == head and k % periods != periods - 1:
                v[i + _SUM] = v[i + _SUM] + 0.0  # as ``update`` adds it (-0.0 becomes 0.0)
                last = ((int(head) + 1) * periods - 1 + offset) * 3600  # the window's last hour
                ts = min(last, ts + -(-(until - ts) // 3600) * 3600)
            else:
                self.update(float(ts), 0.0, weight)
                ts += 3600

    def quiet_until(self, ts: int, value: float) -> float:
        """The last hour of the open window when it holds spend and ends at ``ts`` or later:
        a silent hour judges only a window's sum, at its last hour, and a window with none
        is no alert (nor one left behind by a later hour: it is stored unjudged)."""
        hp = self._hp
        if not usable(float(ts), value):
            return math.inf  # ignored
        if value != 0.0 or hp.period_s != 3600 or ts % 3600:
            return float(ts)
        v, i = self._rows.nums, self._row * _WIDTH
        head = v[i + _HEAD]
        if head != head or not v[i + _SUM] > 0.0:  # no window yet, or nothing in it
            return math.inf
        last = ((int(head) + 1) * hp.periods - 1 + hp.offset) * 3600
        return float(last) if last >= ts else math.inf

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Add ``value`` to its window; when that was the window's last period, judge it."""
        if not usable(ts, value):
            return ignored(value)
        hp = self._hp
        k = math.floor(ts / hp.period_s) - hp.offset
        j = k // hp.periods
        v, i = self._rows.nums, self._row * _WIDTH
        head = v[i + _HEAD]
        if head != head:  # NaN: no window yet
            v[i + _HEAD] = head = j
        if j < head:
            return Verdict(0.0, False, None, float(value), "a window already judged; ignored")
        if j > head:
            self._advance(j)
        total = v[i + _SUM] = v[i + _SUM] + float(value)
        if k % hp.periods != hp.periods - 1:
            return Verdict(0.0, False, None, total, "window still filling; judged at its end")
        self._store(j, total)
        v[i + _HEAD], v[i + _SUM] = j + 1, 0.0
        return self._judge(j, total)

    def _store(self, j: int, total: float) -> None:
        ring, at = self._ring_at()
        ring[at + j % self._hp.ring] = encode(total) if total > 0.0 else EMPTY

    def _ring_at(self) -> tuple[array[int], int]:
        """The ring's array (shared by the rows) and where this detector's starts in it."""
        rows = self._rows
        return rows.blocks[0], self._row * rows.sizes[0]

    def _advance(self, j: int) -> None:
        """Move past windows that never got their last period (a gap): kept unjudged."""
        assert self._head is not None
        n = self._hp.ring
        self._store(self._head, self._sum)
        ring, at = self._ring_at()
        for i in range(self._head + 1, min(j, self._head + n)):
            ring[at + i % n] = EMPTY
        self._head, self._sum = j, 0.0

    def _reference(self, j: int) -> tuple[float, int]:
        """The same window in the last ``weeks`` weeks, averaged over those within ``band``
        times their median; and how many had spend."""
        hp = self._hp
        ring, at = self._ring_at()
        vals = sorted(
            decode(c)
            for m in range(1, hp.weeks + 1)
            if (c := ring[at + (j - m * hp.per_week) % hp.ring]) != EMPTY
        )
        if not vals:
            return 0.0, 0
        half = len(vals) // 2
        mid = vals[half] if len(vals) % 2 else math.sqrt(vals[half - 1] * vals[half])
        kept = [v for v in vals if mid <= v * hp.band and v <= mid * hp.band] or vals
        return sum(kept) / len(kept), len(vals)

    def _judge(self, j: int, total: float) -> Verdict:
        hp = self._hp
        ref, present = self._reference(j)
        span = "day" if hp.window_s == 86400.0 else f"{hp.window_s / 3600:g}h window"
        if present < hp.need or not (ref > 0.0 and math.isfinite(ref)):
            return Verdict(0.0, False, None, total, f"not enough {span}s a week back to compare")
        if total <= 0.0:
            return Verdict(0.0, False, ref, total, f"silent {span}; a drop is no alert")
        if not total < 2.0**64:  # beyond the ring's codes: a data error, not spend
            return Verdict(0.0, False, None, total, f"{span} sum out of range; not compared")
        y = math.log(total / ref)
        # A window's noise falls with its volume (a quiet weekend day is a few calls, its
        # ratio far noisier than a weekday's): judged in units of a usual window, weighted
        # by the reference's size against the usual reference (``u``).
        usual = self._wmean if self._wmean > 0.0 else ref
        u = min(WEIGHT_MAX, max(1.0 / WEIGHT_MAX, ref / usual))
        sigma = max(NOISE_FLOOR, math.sqrt(self._var))
        noise = max(NOISE_FLOOR, sigma / math.sqrt(u))
        warm = self._var_n >= hp.noise_n
        bar = max(math.log1p(hp.rise), hp.z * noise)
        creep_bar = hp.creep_z * hp.creep_sd * sigma
        # Learn: the creep mean (a window far over moves it by at most ``z`` noise: one
        # runaway day is no creep; a quiet window pulls it less), the usual size, and the
        # noise of the innovation, winsorized once warm and never from a window over either
        # bar (a rise is news, not noise: a step or a creep must not teach its own bar).
        r = y - self._ewma
        lim = hp.z * noise
        # Floored at zero: a creep is a rise, and a run of low windows before it starts
        # (a quiet week, a holiday) must not be paid back before the mean can climb. Held
        # at zero until the series is judged: floored, the mean climbs on noise alone, and
        # what it had gathered while learning fired on the first day judged.
        ewma = self._ewma + min(1.0, hp.creep_alpha * u) * (max(-lim, min(lim, y)) - self._ewma)
        e = self._ewma = max(0.0, ewma) if warm else 0.0
        self._var_n = min(self._var_n + 1, hp.var_n_cap)
        a = max(hp.noise_alpha, 1.0 / self._var_n)
        self._wmean = usual + a * (ref - usual)
        if not warm or (y < bar and e < creep_bar):
            x = u * r * r / (1.0 + hp.creep_sd**2)
            if warm:
                x = min(x, 6.25 * sigma * sigma)
            self._var += a * (x - self._var)
        step = y >= bar and total - ref > hp.min_usd
        creep = (
            hp.creep_z > 0
            and e >= creep_bar
            and e >= hp.creep_floor
            and y > 0.0
            and usual * math.expm1(e) > hp.min_usd
        )
        score = ratio_score(max(y / bar, e / creep_bar if creep_bar > 0 else 0.0, 0.0))
        head = (
            f"{span} {usd(total)} vs {usd(ref)} on the same {span} of the last {present} "
            f"weeks ({total / ref - 1.0:+.0%})"
        )
        back = y < bar / 2.0 and e < creep_bar / 2.0
        if self._fired is not None and j - self._fired >= hp.cooldown and back:
            # Back within its usual swing after the cooldown: the next rise is news again.
            # (While a step holds, it is no news: a launch alerts once, not weekly until
            # the reference weeks have caught up with it.)
            self._fired, self._peak = None, 0.0
        if not warm:
            return Verdict(score, False, ref, total, f"{head}; learning its usual swing")
        if not (step or creep):
            why = "within its usual swing" if y < bar else "under the dollar floor"
            return Verdict(score, False, ref, total, f"{head}; {why}")
        ratio = max(total / ref, math.exp(e))
        cooling = self._fired is not None
        grown = self._peak + hp.step * max(hp.rise, self._peak - 1.0)
        if cooling and ratio < grown:
            self._peak = max(self._peak, ratio)
            return Verdict(score, False, ref, total, f"{head}; already alerted this week")
        self._fired, self._peak = j, ratio
        if step:
            over = f"the {hp.rise:.0%} rise"
            if bar > math.log1p(hp.rise):
                over = f"its usual swing x{hp.z:g} ({math.expm1(bar):+.0%})"
            reason = f"{head}, over {over}"
        else:
            reason = (
                f"creeping up: {span}s averaged {math.expm1(e):+.0%} over the same {span}s of "
                f"earlier weeks, over {hp.creep_z:g}x its usual swing; this {head}"
            )
        paged = hp.page_x > 0 and total >= hp.page_x * ref
        return Verdict(score, True, ref, total, reason, trend=not paged)


#: The numbers' layout, each also readable by name (``WeekOverWeek._head``...); the ring
#: is a block of its own, in ``Rows`` per ring length.
_NUMBERS = numbers(
    WeekOverWeek,
    {
        "_head": None,
        "_sum": float,
        "_fired": None,
        "_peak": float,
        "_var": float,
        "_var_n": int,
        "_ewma": float,
        "_wmean": float,
    },
    blocks=("_ring",),
)
_HEAD, _SUM = 0, 1
_WIDTH = len(_NUMBERS)


def _divides(a: float, b: float) -> bool:
    """``a`` divides ``b`` a whole number of times (both in seconds)."""
    n = round(b / a)
    return n >= 1 and abs(n * a - b) < 1e-6


def _from_hourly(old: dict[str, Any]) -> dict[str, Any]:
    """This layout's state from the hourly ``wow`` (until 2026-12): its hyperparameters that
    still mean the same, its ring of hours summed into whole windows, its noise and alert."""
    if "_hp" in old:
        hp_old: _WowParams = old["_hp"]
        p = {f: getattr(hp_old, f) for f in ("window_s", "period_s", "rise", "min_usd")}
        p.update(step=hp_old.step, cooldown_s=hp_old.cooldown_s)
        ring, head = old["_ring"], old["_head"]
    else:  # the instance dict of before 2026-11
        p = {f: old[f] for f in ("window_s", "period_s", "rise", "min_usd", "step", "cooldown_s")}
        ring, head = old["_ring"], old["_head"]
    if not (_divides(p["period_s"], p["window_s"]) and _divides(p["window_s"], WEEK_S)):
        p["window_s"] = 86400.0 if _divides(p["period_s"], 86400.0) else p["period_s"]
    fresh = WeekOverWeek(**p)
    hp = fresh._hp  # noqa: SLF001 - our own class
    state: dict[str, Any] = {name: getattr(fresh, name) for name in WeekOverWeek.state_fields}
    state["_hp"] = hp
    if head is not None:
        n = len(ring)
        hours: dict[int, float] = {}
        for k in range(head - n + 1, head + 1):  # hour indices: ``k - hp.offset`` in windows
            code = ring[k % n]
            v = (0.0 if math.isnan(code) else float(code)) if ring.typecode == "f" else None
            if v is None:
                v = 0.0 if code == EMPTY else decode(code)
            hours[k] = v if math.isfinite(v) else 0.0
        off = hp.offset
        first, last = (head - n + 1 - off) // hp.periods, (head - off) // hp.periods
        for j in range(first, last + 1):
            ks = range(j * hp.periods + off, (j + 1) * hp.periods + off)
            if all(k in hours for k in ks):
                total = sum(hours[k] for k in ks)
                state["_ring"][j % hp.ring] = encode(total) if total > 0.0 else EMPTY
        if (head + 1 - off) % hp.periods:  # the window of the last hour is still open
            state["_ring"][last % hp.ring] = EMPTY
            state["_head"] = last
            state["_sum"] = sum(hours[k] for k in range(last * hp.periods + off, head + 1))
        else:
            state["_head"] = last + 1
    fired_ts = old.get("_fired_ts")
    if fired_ts is not None:
        state["_fired"] = (math.floor(fired_ts / hp.period_s) - hp.offset) // hp.periods
    state["_peak"] = float(old.get("_peak", 0.0))
    state["_var"] = float(old.get("_var", 0.0))
    state["_var_n"] = min(int(old.get("_var_n", 0)), hp.var_n_cap)
    return state
