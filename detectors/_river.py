"""``river_snarimax``: river's SNARIMAX forecaster behind the same protocol.

Why: a learned forecaster is the natural "ML" contender to the hand-built seasonal
baseline. ``river.time_series.SNARIMAX(p=1, m=season, sp=1)`` regresses ``log1p(value)`` on
the previous window and the same slot one season back; its one-step residuals are judged
by the same :class:`~detectors._robust.BurnScale` and dollar floor as ``baseline``.
As in ``baseline``, a sustained new level (three residuals agreeing) moves a level the
model's inputs are taken relative to, so a launch or a price change stops alerting soon.

SNARIMAX needs a gapless series, so missing, invalid and zero windows are filled with the
model's own forecast (at most one season of them), which keeps the seasonal lag aligned
and lets silence teach nothing. River models pickle, but the seasonal lag buffer and the
linear model make the snapshot ~2.8 KB, over the 2 KB other detectors keep. It is fast: tens of
microseconds per window.

>>> import numpy as np
>>> ys = 50.0 * np.random.default_rng(1).lognormal(0.0, 0.3, 96)
>>> d = RiverSnarimax(season=24, warmup_n=48)
>>> sum(d.update(h * 3600.0, float(y)).is_anomaly for h, y in enumerate(ys))
0
>>> d.update(96 * 3600.0, 900.0).is_anomaly
True
"""

from __future__ import annotations

import copy
import math
from typing import Any

from spendbrake.detectors._base import (
    Detector,
    Verdict,
    check,
    ignored,
    per,
    ratio_score,
    register,
    slot_label,
    usable,
    usd,
)
from spendbrake.detectors._plain import number, to_plain
from spendbrake.detectors._robust import BurnScale

__all__ = ["RiverSnarimax"]

_CLAMP = 30.0  # log units around the centre: e**30 is far beyond any real ratio


@register("river_snarimax")
class RiverSnarimax(Detector):
    """SNARIMAX one-step forecasts of ``log1p(value / unit)``, residuals scored robustly.

    Parameters
    ----------
    period_s
        Window length in seconds; one ``update`` per window.
    season
        Seasonal lag in windows (168: the same hour last week).
    p
        Autoregressive order on the previous windows.
    min_usd, unit, fast_z, slow_n, slow_z
        As for ``baseline``: dollar floor, log unit, fast/slow confirmation thresholds.
    warmup_n
        Windows learned before any alert (336: two weeks of hours).
    """

    def __init__(
        self,
        period_s: float = 3600.0,
        season: int = 168,
        p: int = 1,
        min_usd: float = 5.0,
        unit: float = 1.0,
        fast_z: float = 5.0,
        slow_n: int = 6,
        slow_z: float = 1.25,
        warmup_n: int = 336,
    ) -> None:
        check("period_s", period_s, period_s > 0, "> 0")
        check("season", season, isinstance(season, int) and season >= 1, "an int >= 1")
        check("p", p, isinstance(p, int) and p >= 0, "an int >= 0")
        check("min_usd", min_usd, min_usd >= 0, ">= 0")
        check("unit", unit, unit > 0, "> 0")
        check("fast_z", fast_z, fast_z > 0, "> 0")
        check("slow_n", slow_n, isinstance(slow_n, int) and slow_n >= 1, "an int >= 1")
        check("slow_z", slow_z, slow_z > 0, "> 0")
        check("warmup_n", warmup_n, warmup_n >= 0, ">= 0")
        self.period_s = period_s
        self.season = season
        self.p = p
        self.min_usd = min_usd
        self.unit = unit
        self.fast_z = fast_z
        self.slow_n = slow_n
        self.slow_z = slow_z
        self.warmup_n = warmup_n
        # river loads here, with the first river detector: its linear models pull in scipy
        # (about 90 MB of RSS and 0.6 s), which a worker without one should not pay for.
        from river import linear_model, optim, time_series

        # No StandardScaler: with few samples its variance is tiny and SGD diverges. Values
        # are taken relative to a level (first the first window's log) and gradients clipped.
        reg = linear_model.LinearRegression(
            optimizer=optim.SGD(0.01), intercept_lr=0.01, clip_gradient=1.0
        )
        self._model = time_series.SNARIMAX(p=p, d=0, q=0, m=season, sp=1, regressor=reg)
        self._level: float | None = None
        self._scale = BurnScale(fast_z=fast_z, slow_n=slow_n, slow_z=slow_z)
        self._n = 0
        self._last_k: int | None = None

    #: Its own learned parts, then the SNARIMAX model's: the lags (``y_hist``, ``y_diff``,
    #: ``errors``), the linear model's weights (name, weight pairs) and intercept, and the
    #: optimizer's step count.
    state_fields = ("_level", "_n", "_last_k", "_scale")

    def dump_state(self) -> list[Any]:
        """Learned state as plain data: this detector's, then river's model's (its lags,
        weights, intercept and step count; its hyperparameters come from ``params``)."""
        model = self._model
        reg = model.regressor
        return [
            *super().dump_state(),
            to_plain(list(model.y_hist)),
            to_plain(list(model.y_diff)),
            to_plain(list(model.errors)),
            [[name, to_plain(w)] for name, w in reg._weights.items()],  # noqa: SLF001
            to_plain(reg.intercept),
            reg.optimizer.n_iterations,
        ]

    def load_state(self, state: list[Any], version: int = 1) -> None:
        """Take ``dump_state``'s output into this detector, freshly built with the same params."""
        own = len(self.state_fields)
        if type(state) is not list or len(state) != own + 6:
            raise ValueError(f"{self.name} state: {own + 6} values expected")
        super().load_state(state[:own], version)
        y_hist, y_diff, errors, weights, intercept, steps = state[own:]
        # Its own model: a restore builds detectors as twins of one built from the params.
        model = self._model = copy.deepcopy(self._model)
        for lags, values in ((model.y_hist, y_hist), (model.y_diff, y_diff)):
            lags.extend(number(v) for v in values)
        model.errors.extend(number(v) for v in errors)
        reg = model.regressor
        for name, w in weights:
            reg._weights[str(name)] = number(w)  # noqa: SLF001
        reg.intercept = number(intercept)
        reg.optimizer.n_iterations = int(steps)

    def _forecast(self) -> float | None:
        """One-step forecast in log1p space, clamped so a wild model cannot overflow."""
        if self._n == 0 or self._level is None:
            return None
        f = float(self._model.forecast(1)[0])
        if not math.isfinite(f):
            f = 0.0
        return self._level + max(-_CLAMP, min(_CLAMP, f))

    def _learn(self, x: float) -> None:
        if self._level is None:
            self._level = x
        self._model.learn_one(x - self._level)
        self._n += 1

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Forecast this window, score the residual, then learn the value."""
        if not usable(ts, value):
            return ignored(value)
        value = float(value)
        x = math.log1p(value / self.unit)
        if math.isinf(x):
            return ignored(value)  # only with an absurd unit; never let inf into the model
        k = math.floor(ts / self.period_s)
        if self._last_k is not None and k <= self._last_k:
            # SNARIMAX has no notion of a late window; scoring it would misalign the lags.
            return Verdict(0.0, False, None, value, "late or repeated window ignored")
        if self._last_k is not None and k > self._last_k + 1:
            self._scale.reset_window()
            for _ in range(min(k - self._last_k - 1, self.season)):
                self._learn_forecast()
        self._last_k = k
        f = self._forecast()
        if value == 0.0 or f is None:
            if value == 0.0:
                self._learn_forecast()
            else:
                self._learn(x)
            return Verdict(0.0, False, None, value, "silent or first window; learning")

        r = x - f
        expected = self.unit * math.expm1(min(f, 700.0))  # e**709 overflows a float
        sc = self._scale
        warm = self._n >= self.warmup_n
        ratio = sc.ratio(r) if warm else 0.0
        excess = value - expected
        alert = ratio >= 1.0 and excess > self.min_usd
        rate = per(self.period_s)
        label = slot_label(k, self.period_s, self.season)
        head = f"spend {usd(value)}{rate} vs {usd(expected)}{rate} forecast for {label}"
        if not warm:
            reason = f"{head}; warming up"
        elif alert:
            reason = f"{head}, fast and slow windows both high"
        elif ratio >= 1.0:
            reason = f"{head}; under the {usd(self.min_usd)} impact floor"
        else:
            reason = f"{head}; within the usual range"
        sc.learn(r)
        # A sustained new level (the last three residuals agree) moves the level the model's
        # inputs are taken from, as in ``baseline``; the model itself only ever learns a
        # clipped value, so a runaway does not become next hour's forecast.
        jump = sc.shift(3)
        if jump is not None and self._level is not None:
            self._level += 0.5 * jump
            f += 0.5 * jump  # the forecast at the new level; learn around it
            r = x - f
        self._learn(f + sc.clip(r))
        return Verdict(ratio_score(ratio), alert, expected, value, reason)

    def _learn_forecast(self) -> None:
        f = self._forecast()
        if f is not None:
            self._learn(f)
