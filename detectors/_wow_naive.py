"""``wow_naive``: the plain week-over-week rule, kept as a baseline for evaluation.

Alerts on every window whose trailing 24 h is over ``1 + rise`` times the same 24 h a week
earlier: no dollar floor, no hysteresis, no noise bar. It shows what ``wow`` (a robust
multi-week reference, a noise bar, a dollar floor, trends to the digest) buys.

Its engine, ``HourlyWeekOverWeek``, is the hourly trailing-window comparison that was
``wow`` until 2026-12 (a ring of a week and a day of hourly buckets, the window slid hour
by hour, optional trim, noise bar and hysteresis); the plain rule turns those off. Its
hyperparameter object keeps its name and fields, so snapshots of either restore.

Spend per ``period_s`` is kept in a ring covering ``window_s`` plus one week (int16 log
codes: 192 hourly buckets for a 24 h window, 0.4 KB). Only hours with spend in both weeks
are compared, so a gap or a silent (zero) stretch in either week is not a rise.

>>> d = WowNaive()
>>> _ = [d.update(h * 3600.0, 0.01) for h in range(192)]
>>> sum(d.update(h * 3600.0, 0.02).is_anomaly for h in range(192, 216))
17
"""

from __future__ import annotations

import copy
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from spendbrake.detectors._base import (
    WEEK_S,
    Detector,
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
from spendbrake.detectors._logcode import EMPTY, INF, Q, decode, encode

__all__ = ["HourlyWeekOverWeek", "WowNaive"]

#: Ring buckets are int16 log2 codes (``detectors._logcode``). Why that is precise enough:
#: a bucket reads back within +-0.07 % of the spend added, so each window sum is within
#: 0.07 % and the week-over-week ratio within 0.14 %, against a bar of at least +30 % and a
#: learned noise RMS of a few percent or more. A decision can move only for a ratio within a
#: few tenths of a percent of its bar (the noise estimate is path-dependent: its winsorizing
#: and its gate at the bar pass such small differences on), or an excess that close to
#: ``min_usd``.


@dataclass(frozen=True, slots=True)
class _WowParams(HyperParams):
    window_s: float
    period_s: float
    rise: float
    min_usd: float
    step: float
    cooldown_s: float
    min_coverage: float
    trim: int
    z: float
    noise_alpha: float
    noise_n: int

    #: Comparisons counted up to here: past it the warm-up gate, the rate
    #: ``max(noise_alpha, 1 / n)`` and the winsorizing all stay as they are. Why: CPython
    #: shares one object per int up to 256; a larger count is 32 bytes a series.
    var_n_cap: int = field(init=False, repr=False, compare=False)
    #: Buckets in the trailing window, and in a week.
    w: int = field(init=False, repr=False, compare=False)
    lag: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cap = max(self.noise_n + 1, math.ceil(1.0 / self.noise_alpha) + 1)
        object.__setattr__(self, "var_n_cap", cap)
        object.__setattr__(self, "w", int(self.window_s // self.period_s))
        object.__setattr__(self, "lag", int(WEEK_S // self.period_s))


@expose(_WowParams)
class HourlyWeekOverWeek(Detector):
    """Week-over-week rise of the trailing window's spend, slid hour by hour (``wow`` until
    2026-12; now the plain rule's engine).

    Parameters
    ----------
    window_s
        Trailing window in seconds (86400 default; 604800 for a 7-day view).
    period_s
        Bucket length in seconds; ``window_s`` and one week must be multiples of it.
    rise
        Fractional rise that counts (0.30: 30 % over last week).
    min_usd
        The rise must also be worth this many dollars over the window.
    step
        After an alert, re-alert within the cooldown only if the rise grows by a further
        ``step * max(rise, peak rise)`` over the peak rise seen since.
    cooldown_s
        Quiet time after an alert (a week).
    min_coverage
        Fraction of the window that must have data in both weeks before comparing.
    z
        The rise must also be ``z`` times the RMS of this series' log week-over-week ratio
        (0: the plain ``rise`` rule).
    noise_alpha, noise_n
        Smoothing of that noise estimate (per window), and windows compared before any alert.
    trim
        Buckets dropped from each end when the window's buckets are ranked by their
        week-over-week ratio, so a legitimate one- or two-hour burst in either week does
        not read as a rise (0: plain sums).
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
        trim: int = 2,
        z: float = 2.5,
        noise_alpha: float = 0.005,
        noise_n: int = 24,
    ) -> None:
        check("period_s", period_s, period_s > 0 and WEEK_S % period_s == 0, "> 0, dividing a week")
        check(
            "window_s",
            window_s,
            period_s <= window_s <= WEEK_S and window_s % period_s == 0,
            "a multiple of period_s, at most a week",
        )
        check("rise", rise, rise > 0, "> 0")
        check("min_usd", min_usd, min_usd >= 0, ">= 0")
        check("step", step, step >= 0, ">= 0")
        check("cooldown_s", cooldown_s, cooldown_s >= 0, ">= 0")
        check("min_coverage", min_coverage, 0 < min_coverage <= 1, "in (0, 1]")
        check("trim", trim, isinstance(trim, int) and trim >= 0, "an int >= 0")
        check("z", z, z >= 0, ">= 0 (0: no noise test)")
        check("noise_alpha", noise_alpha, 0 < noise_alpha <= 1, "in (0, 1]")
        check("noise_n", noise_n, isinstance(noise_n, int) and noise_n >= 1, "an int >= 1")
        # Shared by every detector of this config; read back as attributes (``self.rise``).
        self._hp = share(
            _WowParams(
                window_s,
                period_s,
                rise,
                min_usd,
                step,
                cooldown_s,
                min_coverage,
                trim,
                z,
                noise_alpha,
                noise_n,
            )
        )
        n = int(window_s // period_s) + int(WEEK_S // period_s)
        # Spend per bucket as int16 log2 codes (``encode``); EMPTY marks a bucket with no
        # spend: a gap and a zero window both mean silence.
        self._ring = array("h", [EMPTY]) * n
        self._head: int | None = None
        self._fired_ts: float | None = None
        self._peak = 0.0
        #: EW mean of the squared log week-over-week ratio (winsorized) and comparisons seen:
        #: how far this series' trailing window wanders from last week's by itself.
        self._var = 0.0
        self._var_n = 0

    __slots__ = ("_fired_ts", "_head", "_hp", "_peak", "_ring", "_var", "_var_n")
    state_fields = ("_fired_ts", "_head", "_peak", "_ring", "_var", "_var_n")

    #: ``z`` for a snapshot from before the noise bar (a subclass may keep the plain rule).
    _restored_z = 2.5

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HourlyWeekOverWeek.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a snapshot: this layout, or the older instance dict (one entry per
        hyperparameter; from before the noise bar too, which learns it afresh)."""
        if "_hp" not in state:
            state = self._from_dict_layout(state)
        ring = state["_ring"]
        if ring.typecode == "f":  # float32 buckets, NaN for none
            state["_ring"] = array("h", [EMPTY if math.isnan(v) else encode(v) for v in ring])
        else:
            state["_ring"] = ring[:]  # unpickled arrays are over-allocated; copies are not
        state["_var_n"] = min(state["_var_n"], state["_hp"].var_n_cap)
        for name in HourlyWeekOverWeek.__slots__:
            object.__setattr__(self, name, state[name])

    def _from_dict_layout(self, old: dict[str, Any]) -> dict[str, Any]:
        """Slot values for a detector pickled when it kept an instance dict (up to 2026-11)."""
        defaults = {"z": self._restored_z, "noise_alpha": 0.005, "noise_n": 24}
        names = [f.name for f in _WowParams.__dataclass_fields__.values() if f.init]
        state = {k: v for k, v in old.items() if k.startswith("_") and k not in ("_w", "_lag")}
        state["_hp"] = share(_WowParams(*(old.get(n, defaults.get(n)) for n in names)))
        state.setdefault("_var", 0.0)
        state.setdefault("_var_n", 0)
        return state

    def _add(self, k: int, value: float) -> None:
        view = self._ring
        n = len(view)
        if self._head is None:
            self._head = k - 1
        if k > self._head:
            for j in range(self._head + 1, min(k, self._head + n) + 1):
                view[j % n] = EMPTY
            # Jumps longer than the ring: every bucket was blanked above; realign the head.
            self._head = k
        elif k <= self._head - n:
            return  # older than anything we keep
        old = decode(view[k % n])
        if value > 0.0:
            view[k % n] = encode(value if math.isnan(old) else old + value)

    def _sums(self) -> tuple[float, float, float]:
        view = self._ring
        n = len(view)
        head = self._head if self._head is not None else 0
        w, lag = self._hp.w, self._hp.lag
        pairs = []
        for i in range(w):
            a = view[(head - i) % n]
            b = view[(head - i - lag) % n]
            if a != EMPTY and b != EMPTY:
                # ``decode`` inline: this runs for every bucket pair on every update and peek.
                da = math.inf if a == INF else 2.0 ** (a / Q)
                pairs.append((da, math.inf if b == INF else 2.0 ** (b / Q)))
        coverage = len(pairs) / w
        if self._hp.trim and len(pairs) > 4 * self._hp.trim:
            # Symmetric trim by hour-over-hour ratio: a legit burst in either week (the top
            # or the bottom ratios) does not make a rise; a broad rise moves every hour.
            pairs.sort(key=lambda p: p[0] / p[1] if p[1] > 0 else math.inf)
            pairs = pairs[self._hp.trim : -self._hp.trim]
        return sum(a for a, _ in pairs), sum(b for _, b in pairs), coverage

    def peek(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """The verdict ``update`` would give, with no state change (a shallow twin, own ring)."""
        twin = copy.copy(self)
        twin._ring = self._ring[:]  # noqa: SLF001 - our own class
        return twin.update(ts, value)

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Add ``value`` to its bucket, then compare the trailing window with last week's."""
        if not usable(ts, value):
            return ignored(value)
        self._add(math.floor(ts / self._hp.period_s), float(value))
        cur, prev, coverage = self._sums()
        if not (math.isfinite(cur) and math.isfinite(prev)):
            # Only absurd inputs (beyond float32) get here; they are data errors, not spend.
            return Verdict(0.0, False, None, cur, "window sum out of range; not compared")
        if coverage < self._hp.min_coverage or prev <= 0.0:
            return Verdict(0.0, False, None, cur, "not enough history a week back to compare")
        ratio = cur / prev
        # The bar: the ``rise``, or ``z`` times the series' own week-over-week noise when that
        # is larger. A day of a few lumpy calls an hour swings +-20 % by itself, so a plain
        # 30 % rule pages on such a series about once a week; a creep keeps climbing past it.
        lr = math.log(ratio) if ratio > 0.0 else -math.inf
        noise = math.sqrt(self._var)
        if self._hp.z and self._var_n < self._hp.noise_n:
            bar = math.inf  # noise not known yet: compare, but do not alert
        else:
            bar = max(math.log1p(self._hp.rise), self._hp.z * noise)
        if lr < bar:
            self._learn_noise(lr, noise)  # a rise over the bar is news, not noise
        score = ratio_score(lr / bar) if math.isfinite(bar) and lr > 0 else 0.0
        span = f"{self._hp.window_s / 3600:g}h"
        head = f"last {span} {usd(cur)} vs {usd(prev)} a week earlier ({ratio - 1.0:+.0%})"
        if lr < bar or cur - prev <= self._hp.min_usd:
            if not math.isfinite(bar):
                why = "learning this series' week-over-week noise"
            elif lr < bar:
                why = "under the rise" if bar <= math.log1p(self._hp.rise) else "within its noise"
            else:
                why = "under the dollar floor"
            return Verdict(score, False, prev, cur, f"{head}; {why}")
        cooling = self._fired_ts is not None and ts - self._fired_ts < self._hp.cooldown_s
        # Re-alert only on a rise grown by step x (the larger of rise and the peak rise):
        # 40 % -> 60 %, but a launch climbing hour by hour pages a handful of times, not 24.
        grown = self._peak + self._hp.step * max(self._hp.rise, self._peak - 1.0)
        if cooling and ratio < grown:
            self._peak = max(self._peak, ratio)
            return Verdict(score, False, prev, cur, f"{head}; already alerted this week")
        self._fired_ts = ts
        self._peak = ratio
        over = f"the {self._hp.rise:.0%} rise"
        if bar > math.log1p(self._hp.rise):
            over = f"its usual week-over-week swing x{self._hp.z:g} ({math.expm1(bar):+.0%})"
        return Verdict(score, True, prev, cur, f"{head}, over {over}")

    def _learn_noise(self, lr: float, noise: float) -> None:
        """Fold a log ratio into the noise estimate, winsorized at 2.5 sigma once warm."""
        if not math.isfinite(lr):
            return
        self._var_n = min(self._var_n + 1, self._hp.var_n_cap)
        a = max(self._hp.noise_alpha, 1.0 / self._var_n)
        x = lr * lr
        if self._var_n > self._hp.noise_n:
            x = min(x, 6.25 * noise * noise)  # a creep or launch must not teach its own bar
        self._var += a * (x - self._var)


@register("wow_naive")
class WowNaive(HourlyWeekOverWeek):
    """Trailing ``window_s`` over ``1 + rise`` times last week's: alert, every time."""

    __slots__ = ()
    _restored_z = 0.0  # an old snapshot stays the plain rule

    def __init__(
        self, window_s: float = 86400.0, period_s: float = 3600.0, rise: float = 0.30
    ) -> None:
        super().__init__(
            window_s=window_s,
            period_s=period_s,
            rise=rise,
            min_usd=0.0,
            cooldown_s=0.0,
            trim=0,
            z=0.0,
        )
