"""``generic``: the generic mode, for metrics that are not dollars (latency, CPU, counts).

Why apart from ``baseline``: that one is built for spend (log space, a dollar floor, an
hour-of-week prior that needs two weeks). A generic metric has none of these: no unit, no
floor, no known season, values that may be negative. So: a level and a scale learned
online (EW mean and EW mean absolute deviation of clipped residuals, so an outlier teaches
little), each value judged by how many robust sigmas it sits from the level, either way.

An alert opens an episode: for ``refract_n`` windows after it, values are not alerted
again unless they go ``grow`` times further than the episode's peak. One alert per event,
not one per window of it: on the Numenta Anomaly Benchmark (``python -m bench nab``) that
suppression is worth more than anything in the scoring itself, and on-call wants the
same.

The score is ``z / (z + z_bar)``: 0.5 at the bar, so a threshold on it is a threshold on
sigmas; inside an episode it is held under 0.5.

>>> d = Generic(warmup_n=50)
>>> quiet = [d.update(float(t), 10.0 + (t % 7) * 0.1) for t in range(200)]
>>> any(v.is_anomaly for v in quiet), d.update(200.0, 25.0).is_anomaly
(False, True)
>>> d.update(201.0, 24.0).is_anomaly  # the same episode
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spendbrake.detectors._base import (
    Detector,
    HyperParams,
    Verdict,
    as_float,
    check,
    expose,
    ignored,
    register,
    share,
)

__all__ = ["Generic"]

#: E|r| = sigma * sqrt(2/pi) for a normal residual.
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)
#: Held score inside an episode (under 0.5: no alert).
_HELD = 0.3


@dataclass(frozen=True, slots=True)
class _GenericParams(HyperParams):
    z_bar: float
    alpha: float
    beta: float
    clip_z: float
    warmup_n: int
    refract_n: int
    grow: float
    signed: bool

    #: Windows counted up to here: past it the warm-up gate is open and the rates are the EW
    #: ones for good.
    n_cap: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rate = min(self.alpha, self.beta)
        object.__setattr__(self, "n_cap", max(self.warmup_n, math.ceil(1.0 / rate)))


@register("generic")
@expose(_GenericParams)
class Generic(Detector):
    """Robust level-and-scale detector with one alert per episode.

    Parameters
    ----------
    z_bar
        Robust sigmas from the level that alert (either way).
    alpha, beta
        Learning rates of the level and of the scale, per window.
    clip_z
        Residuals are clipped at this many sigmas before they teach either.
    warmup_n
        Windows learned before any alert.
    refract_n
        Windows after an alert in which only a value ``grow`` times further alerts.
    signed
        Negative values are data (a temperature, a delta); False: they are ignored as
        invalid, as for spend.
    """

    def __init__(
        self,
        z_bar: float = 7.0,
        alpha: float = 0.01,
        beta: float = 0.01,
        clip_z: float = 4.0,
        warmup_n: int = 100,
        refract_n: int = 200,
        grow: float = 2.0,
        signed: bool = False,
    ) -> None:
        check("z_bar", z_bar, z_bar > 0, "> 0")
        check("alpha", alpha, 0 < alpha <= 1, "in (0, 1]")
        check("beta", beta, 0 < beta <= 1, "in (0, 1]")
        check("clip_z", clip_z, clip_z > 0, "> 0")
        check("warmup_n", warmup_n, isinstance(warmup_n, int) and warmup_n >= 1, "an int >= 1")
        check("refract_n", refract_n, isinstance(refract_n, int) and refract_n >= 0, "an int >= 0")
        check("grow", grow, grow >= 1, ">= 1")
        check("signed", signed, isinstance(signed, bool), "true or false")
        self._hp = share(
            _GenericParams(z_bar, alpha, beta, clip_z, warmup_n, refract_n, grow, signed)
        )
        #: Level, mean absolute deviation, windows seen (capped), windows left in the
        #: episode, and the episode's peak z.
        self._level = 0.0
        self._dev = 0.0
        self._n = 0
        self._cool = 0
        self._peak = 0.0

    __slots__ = ("_cool", "_dev", "_hp", "_level", "_n", "_peak")
    state_fields = ("_cool", "_dev", "_level", "_n", "_peak")
    alerts_on_silence = True  # either way: a level that drops to 0 is news

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, state[name])

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score ``value`` against the level, then learn from it."""
        return self._step(ts, value, True)

    def peek(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """The verdict ``update`` would give, with no state change."""
        return self._step(ts, value, False)

    def _usable(self, ts: Any, value: Any) -> bool:
        try:
            ok = math.isfinite(ts) and math.isfinite(value)
        except TypeError:
            return False
        return ok and (self._hp.signed or value >= 0.0) and abs(value) < 1e300

    def _step(self, ts: float, value: float, learn: bool) -> Verdict:
        if not self._usable(ts, value):
            return ignored(value)
        x = float(value)
        hp = self._hp
        if self._n == 0:
            if learn:
                self._level, self._n = x, 1
            return Verdict(0.0, False, None, as_float(value), "first value; learning its level")
        expected = self._level
        sigma = max(self._dev * _MAD_TO_SIGMA, 1e-9 + 1e-6 * abs(expected))
        r = x - expected
        z = abs(r) / sigma
        warm = self._n >= hp.warmup_n
        score, alert = 0.0, False
        cool, peak = self._cool, self._peak
        if warm:
            score = z / (z + hp.z_bar)
            if cool > 0:
                cool -= 1
                if z > peak * hp.grow and z >= hp.z_bar:
                    alert, cool, peak = True, hp.refract_n, z  # the episode grew
                else:
                    score = min(score, _HELD)
            elif z >= hp.z_bar:
                alert, cool, peak = True, hp.refract_n, z
        side = "over" if r > 0 else "under"
        head = f"{x:.6g} vs {expected:.6g} usual ({z:.1f} sigma {side})"
        if alert:
            reason = f"{head}, past {hp.z_bar:g} sigma"
        elif not warm:
            reason = f"{head}; learning ({self._n} of {hp.warmup_n})"
        elif self._cool > 0 and z >= hp.z_bar:
            reason = f"{head}; part of the episode alerted {hp.refract_n - self._cool} ago"
        else:
            reason = f"{head}; within its usual range"
        if learn:
            self._cool, self._peak = cool, peak
            # A running mean at first (rate 1/n), then the EW rates: no slow start from zero.
            self._n = min(self._n + 1, hp.n_cap)
            c = r if self._n <= 2 else max(-hp.clip_z * sigma, min(hp.clip_z * sigma, r))
            self._level += max(hp.alpha, 1.0 / self._n) * c
            self._dev += max(hp.beta, 1.0 / self._n) * (abs(c) - self._dev)
        return Verdict(score, alert, expected, x, reason)
