"""``shift``: a sustained rise in a mean over many calls (cost per call), found within the hour.

Why: a bad prompt or a model switch multiplies what each call costs while the call volume
stays flat. Per hour, a few calls' mean cost is too noisy to show it (a call's cost swings
+-60 % by itself), and a day of it is a day of money. A CUSUM adds the evidence call by
call instead: each window's mean (``value``) over ``weight`` calls moves the statistic by
its log-likelihood ratio for a rise of ``shift_x`` against the learned level,

    S = max(0, S + weight * d * (y - mu - d / 2) / s2),   d = log(shift_x), y = log(value)

where ``mu`` is the level (an EW mean of log values, weighted by calls) and ``s2`` the
variance of one call's log cost around it (learned from ``weight * (y - mu)**2``,
winsorized). An alert when ``S`` reaches ``h``: a 3x rise at 30 calls an hour shows in
about ten calls; normal hours drift ``S`` back to zero. The detector stage also peeks at the
hour still filling (its calls so far), so a deploy is caught minutes in, not at the close.

A rise that holds is a new normal: after ``settle_n`` windows in alarm the level moves to
the new one (the change was alerted once). Values lower than the level never alert.

State: seven numbers, in a row of all shift detectors' (``detectors._rows``).

>>> import math
>>> d = Shift(warmup_n=24)
>>> quiet = [d.update(h * 3600.0, 0.02 * math.exp(0.1 * math.sin(h)), 20.0) for h in range(48)]
>>> any(v.is_anomaly for v in quiet)
False
>>> v = d.update(48 * 3600.0, 0.06, 20.0)
>>> v.is_anomaly, round(v.expected, 3)
(True, 0.02)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spendbrake.detectors._base import (
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
from spendbrake.detectors._rows import InRows, Rows, numbers, rows_for

__all__ = ["Shift"]

#: A window counts as at most this many usual windows when it teaches the level.
WEIGHT_CAP = 4.0
#: One call's log variance past which the few-calls correction grows no more (a call's cost
#: spread e-fold; a wild first spread in the warm-up must not feed back through the level).
JENSEN_S2_CAP = 1.0
#: The CUSUM stops at CAP times ``h``, so it falls back under ``h`` soon after a rise ends.
CAP = 1.5


@dataclass(frozen=True, slots=True)
class _ShiftParams(HyperParams):
    shift_x: float
    h: float
    min_usd: float
    alpha: float
    warmup_n: int
    settle_n: int
    clip_z: float
    min_scale: float

    #: log(shift_x), and the window count past which nothing reads it (CPython's small ints).
    d: float = field(init=False, repr=False, compare=False)
    n_cap: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "d", math.log(self.shift_x))
        cap = max(self.warmup_n, math.ceil(1.0 / self.alpha)) + 1
        object.__setattr__(self, "n_cap", min(cap, 256))


@register("shift")
@expose(_ShiftParams)
class Shift(InRows):
    """CUSUM of a weighted mean's log against its learned level, for rises of ``shift_x``.

    Parameters
    ----------
    shift_x
        The rise the test is tuned for (2.0: the mean doubles); larger rises show sooner.
    h
        Alert threshold of the CUSUM, in log-likelihood units (12: under Gaussian noise a
        false alert every few hundred thousand windows).
    min_usd
        The rise must also be worth this much: ``(value - expected) * weight``.
    alpha
        Learning rate of the level and the scale per usual window (0.02: a few days of hours).
    warmup_n
        Windows learned before any alert; no evidence builds up while it learns them.
    settle_n
        Windows in alarm after which the new level is taken as normal.
    clip_z
        Deviations are clipped at this many sigmas before they teach the level or the scale.
    min_scale
        Floor on one call's log-scale sigma, so a flat series cannot divide by zero.
    """

    def __init__(
        self,
        shift_x: float = 2.0,
        h: float = 12.0,
        min_usd: float = 0.0,
        alpha: float = 0.02,
        warmup_n: int = 168,
        settle_n: int = 24,
        clip_z: float = 3.0,
        min_scale: float = 0.05,
    ) -> None:
        check("shift_x", shift_x, shift_x > 1, "> 1")
        check("h", h, h > 0, "> 0")
        check("min_usd", min_usd, min_usd >= 0, ">= 0")
        check("alpha", alpha, 0 < alpha <= 1, "in (0, 1]")
        check("warmup_n", warmup_n, isinstance(warmup_n, int) and warmup_n >= 1, "an int >= 1")
        check("settle_n", settle_n, isinstance(settle_n, int) and settle_n >= 1, "an int >= 1")
        check("clip_z", clip_z, clip_z > 0, "> 0")
        check("min_scale", min_scale, min_scale > 0, "> 0")
        self._hp = share(
            _ShiftParams(shift_x, h, min_usd, alpha, warmup_n, settle_n, clip_z, min_scale)
        )
        #: Level (EW mean of log values, weighted), one call's variance around it, the usual
        #: weight, windows learned (capped), the CUSUM, windows in alarm and the level during
        #: it: a row of the shift detectors' ``Rows``, each read by name (``_mu``...), at
        #: ``_MU``... in hot paths.
        self._take()

    __slots__ = ("_hp",)
    state_fields = ("_alarm", "_cusum", "_mu", "_n", "_s2", "_shifted", "_wmean")

    #: Each call's evidence counts: the detector stage may peek at an hour from its first call.
    weighs_calls = True

    def _rows_for(self) -> Rows:
        return rows_for(Shift, _new_rows)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._place(state)

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score the window's mean ``value`` over ``weight`` calls, then learn from it."""
        return self._step(ts, value, weight, True)

    def peek(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """The verdict ``update`` would give, with no state change."""
        return self._step(ts, value, weight, False)

    def quiet_until(self, ts: int, value: float) -> float:
        """Never, for a silent window: no calls, no mean (a value of 0 or NaN is ignored)."""
        return math.inf if _usable_weight(float(ts), value, 1.0) is None else float(ts)

    def learn_run(self, start: int, until: int, value: float, weight: float = 1.0) -> None:
        """Nothing to learn from a run of ignored windows (silent hours: no mean)."""
        if _usable_weight(float(start), value, weight) is not None:
            super().learn_run(start, until, value, weight)

    def may_alert(self, ts: float, value: float, weight: float = 1.0) -> bool:
        """Whether ``peek`` would alert, without its verdict text: the early look asks this
        first, for every key's hour from its first call."""
        if not self._rows.nums[self._row * _WIDTH + _N] >= self._hp.warmup_n:
            return False  # still learning (``_alerts``' first rule): about 1 in 5 replay asks
        w = _usable_weight(ts, value, weight)
        if w is None:
            return False
        value = float(value)
        n, mu, _, llr, cusum = self._evidence(value, w)
        return n > 0.0 and self._alerts(value, w, n, mu, llr, cusum)

    def _evidence(self, value: float, w: float) -> tuple[float, float, float, float, float]:
        """(windows learned, the level, the window's log mean, the log-likelihood ratio of
        it over ``w`` calls, the CUSUM with it): what this window would do, nothing learned.

        The log of a mean of ``w`` calls sits under the log of the calls' true mean by about
        half its variance, ``s2 / (2 w)``: added back, so a quiet hour's few calls are
        judged against the level as fairly as a busy hour's many (without it, one call
        read about 20 % cheap, and a dearer prompt on a quiet night took more calls). A
        key whose calls all cost the same has no spread and no correction."""
        hp = self._hp
        v, i = self._rows.nums, self._row * _WIDTH
        mu, s2 = v[i + _MU], v[i + _S2]
        y = math.log(value) + min(s2, JENSEN_S2_CAP) / (2.0 * w)
        s2 = max(s2, hp.min_scale**2)
        llr = w * hp.d * (y - mu - hp.d / 2.0) / s2
        # Capped: once the rise ends, the evidence drains within a few calls' worth.
        cusum = min(max(0.0, v[i + _CUSUM] + llr), CAP * hp.h)
        return v[i + _N], mu, y, llr, cusum

    def _alerts(
        self, value: float, w: float, n: float, mu: float, llr: float, cusum: float
    ) -> bool:
        """Warm, the evidence over its bar, this window itself leaning to the rise (after
        one, a normal window is no alert), and worth ``min_usd``."""
        hp = self._hp
        return (
            n >= hp.warmup_n
            and cusum >= hp.h
            and llr > 0.0
            and (value - math.exp(mu)) * w > hp.min_usd
        )

    def _step(self, ts: float, value: float, weight: float, learn: bool) -> Verdict:
        w = _usable_weight(ts, value, weight)
        if w is None:
            return ignored(value)
        value = float(value)
        hp = self._hp
        n, mu, y, llr, cusum = self._evidence(value, w)
        if n == 0.0:
            if learn:
                v, i = self._rows.nums, self._row * _WIDTH
                v[i + _MU], v[i + _WMEAN], v[i + _N] = y, w, 1.0
            return Verdict(0.0, False, None, value, "first window; learning its level")
        d = y - mu
        expected = math.exp(mu)
        warm = n >= hp.warmup_n
        alert = self._alerts(value, w, n, mu, llr, cusum)
        score = ratio_score(cusum / hp.h) if warm and d > 0.0 else 0.0
        times = f"{value / expected:.1f}x"
        head = f"{usd(value)} vs {usd(expected)} usual ({times}) over {w:g}"
        if alert:
            reason = (
                f"{head}; the rise holds: evidence {cusum:.0f} over its bar {hp.h:g} "
                f"(a CUSUM for x{hp.shift_x:g})"
            )
        elif not warm:
            reason = f"{head}; learning its level ({int(n)} of {hp.warmup_n} windows)"
        else:
            reason = f"{head}; within its usual range"
        if learn:
            self._learn(y, d, w, cusum)
        return Verdict(score, alert, expected, value, reason)

    def _learn(self, y: float, d: float, w: float, cusum: float) -> None:
        hp = self._hp
        v, i = self._rows.nums, self._row * _WIDTH
        warm = v[i + _N] >= hp.warmup_n
        n = v[i + _N] = min(v[i + _N] + 1.0, hp.n_cap)
        v[i + _WMEAN] += hp.alpha * (w - v[i + _WMEAN])
        if not warm:
            # Learning, not yet judging: no evidence builds up. An alarm in the warm-up
            # stopped the learning while the first spread seen, by chance a tight one, made
            # every window look extreme: the level then learned only from the windows that
            # emptied the evidence, the cheap ones, and a key paged every day (seed 3).
            cusum = 0.0
        alarm = v[i + _ALARM]
        if alarm and d < hp.d / 2.0:
            # A window back at the old level ends the alarm's hold on the bar: what is left
            # of the evidence drops to half the bar, so only fresh evidence of a rise alerts
            # again. (Without it, a rise ending on a quiet night left the capped evidence
            # over the bar, and one dear call the next day paged a rise long over.)
            cusum = min(cusum, hp.h / 2.0)
        if cusum >= hp.h or (alarm and cusum > 0.0):
            # In alarm (until the evidence is gone): a rise is news, not noise. Held for
            # ``settle_n`` windows, it is the new normal: the level moves there and the
            # evidence starts afresh.
            alarm = v[i + _ALARM] = min(alarm + 1.0, hp.settle_n)
            v[i + _SHIFTED] += (y - v[i + _SHIFTED]) / alarm
            if alarm >= hp.settle_n and cusum >= hp.h:
                v[i + _MU], v[i + _CUSUM], v[i + _ALARM], v[i + _SHIFTED] = (
                    v[i + _SHIFTED],
                    0.0,
                    0.0,
                    0.0,
                )
            else:
                v[i + _CUSUM] = cusum
            return
        v[i + _ALARM], v[i + _SHIFTED], v[i + _CUSUM] = 0.0, 0.0, cusum
        rate = max(hp.alpha, 1.0 / n) * min(w / v[i + _WMEAN], WEIGHT_CAP)
        rate = min(rate, 1.0)
        s2 = v[i + _S2]
        sigma = math.sqrt(max(s2, hp.min_scale**2) / w)
        if n <= 2.0:
            v[i + _S2] = w * d * d  # the first spread seen, unclipped
        else:
            dev2 = min(w * d * d, (hp.clip_z * sigma) ** 2 * w)
            v[i + _S2] = s2 + max(hp.alpha, 1.0 / n) * (dev2 - s2)
        v[i + _MU] += rate * max(-hp.clip_z * sigma, min(hp.clip_z * sigma, d))


def _usable_weight(ts: float, value: float, weight: float) -> float | None:
    """``weight`` as a float when the window can be judged (a positive value, a positive
    finite weight), else None: such a window is ignored, never an alert."""
    if not usable(ts, value) or value <= 0.0:
        return None
    try:
        w = float(weight)
    except (TypeError, ValueError):
        return None
    return w if w > 0.0 and math.isfinite(w) else None


#: The state's layout: each number also readable by name (``Shift._mu``...).
_NUMBERS = numbers(
    Shift,
    {
        "_mu": float,
        "_s2": float,
        "_wmean": float,
        "_n": int,
        "_cusum": float,
        "_alarm": int,
        "_shifted": float,
    },
)
_MU, _S2, _WMEAN, _N, _CUSUM, _ALARM, _SHIFTED = range(7)
_WIDTH = len(_NUMBERS)


def _new_rows() -> Rows:
    return Rows(_NUMBERS, ())
