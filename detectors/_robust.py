"""Robust, volatility-aware residual scoring with fast/slow window confirmation.

Shared by the seasonal baseline and the river forecaster so both judge residuals (in
log space) the same way. The scale is an exponentially weighted mean absolute deviation
of *clipped* residuals: bursts and runaways barely move it, yet it follows a series whose
noise grows. An alert needs both the fast window (the last point) and the slow window
(the mean of the last ``slow_n`` points) over their thresholds, as SRE burn-rate alerts do:
one noisy point, or a mild but long drift, does not page on its own.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from spendbrake.detectors._base import HyperParams, expose, share
from spendbrake.detectors._plain import from_plain, number, to_plain

__all__ = ["BurnScale"]

# E|r| = sigma * sqrt(2/pi) for a normal residual, so sigma = MAD_mean * sqrt(pi/2).
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


@dataclass(frozen=True, slots=True)
class _ScaleParams(HyperParams):
    fast_z: float
    slow_n: int
    slow_z: float
    alpha: float
    clip_z: float
    min_scale: float
    #: ``n`` stops here: from ``1 / alpha`` on, ``max(alpha, 1 / n)`` is ``alpha`` for good.
    #: Why: CPython shares one object per int up to 256; a larger count is 32 bytes a series.
    n_cap: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_cap", max(2, math.ceil(1.0 / self.alpha) + 1))


@expose(_ScaleParams)
class BurnScale:
    """Residual scale plus the slow-window memory: two numbers and a short array.

    Hyperparameters live in one shared object per config (``HyperParams``), read back
    as attributes (``fast_z``, ...).

    Parameters
    ----------
    fast_z
        Threshold for the last residual, in robust sigmas.
    slow_n
        Points in the slow window.
    slow_z
        Threshold for the slow window's mean residual, in robust sigmas.
    alpha
        Smoothing of the scale once warm (0.01 is about four days of hourly windows).
    clip_z
        Residuals are clipped at this many sigmas before they teach anything.
    min_scale
        Floor on sigma (log units) so a flat series cannot divide by zero.

    >>> b = BurnScale()
    >>> for r in [0.1, -0.1] * 50:
    ...     b.learn(r)
    >>> round(b.sigma(), 3)
    0.125
    >>> fast, slow = b.zscores(3.0)
    >>> fast > 5.0 and slow > 1.0
    True
    """

    __slots__ = ("_hp", "abs_dev", "n", "recent")

    def __init__(
        self,
        fast_z: float = 5.0,
        slow_n: int = 6,
        slow_z: float = 1.25,
        alpha: float = 0.01,
        clip_z: float = 3.0,
        min_scale: float = 1e-3,
    ) -> None:
        self._hp = share(_ScaleParams(fast_z, slow_n, slow_z, alpha, clip_z, min_scale))
        self.abs_dev = 0.0
        self.n = 0
        #: The last ``slow_n`` residuals, oldest first: float64 like the residuals themselves,
        #: 8 bytes each where a list spends 32 (a pointer and a float object).
        self.recent = array("d")

    def __getstate__(self) -> dict[str, Any]:
        return {"_hp": self._hp, "abs_dev": self.abs_dev, "n": self.n, "recent": self.recent}

    def __setstate__(self, state: Any) -> None:
        """Restore a snapshot: this layout, or the older one with a slot per hyperparameter."""
        if isinstance(state, tuple):  # the default state of a slotted class: (None, slots)
            state = state[1]
        if "_hp" in state:
            self._hp = state["_hp"]
        else:
            names = ("fast_z", "slow_n", "slow_z", "alpha", "clip_z", "min_scale")
            self._hp = share(_ScaleParams(*(state[k] for k in names)))
        self.abs_dev = state["abs_dev"]
        self.n = min(state["n"], self._hp.n_cap)
        self.recent = array("d", state["recent"])

    def __copy__(self) -> BurnScale:
        """A shallow twin (a restore makes one per detector, then loads into it)."""
        twin = object.__new__(BurnScale)
        twin._hp, twin.abs_dev, twin.n, twin.recent = self._hp, self.abs_dev, self.n, self.recent
        return twin

    def dump_state(self) -> list[Any]:
        """The learned part as plain data (``detectors._plain``): scale, count, slow window."""
        return [to_plain(self.abs_dev), self.n, to_plain(self.recent)]

    def load_state(self, state: list[Any]) -> None:
        """Take ``dump_state``'s output into this scale, built with the same parameters."""
        abs_dev, n, recent = state
        self.abs_dev = number(abs_dev)
        self.n = min(number(n), self._hp.n_cap)
        self.recent = from_plain(self.recent, recent)

    def sigma(self) -> float:
        """Current robust sigma of residuals (the floor until anything was learned)."""
        return max(self._hp.min_scale, self.abs_dev * _MAD_TO_SIGMA)

    def zscores(self, r: float, fresh: bool = False) -> tuple[float, float]:
        """Fast and slow z for residual ``r`` with ``r`` counted in the slow window.

        ``fresh`` scores as if the slow window had just been reset (after a gap).
        """
        s = self.sigma()
        slow_n = self._hp.slow_n
        recent = () if fresh else self.recent
        window = [*recent[-(slow_n - 1) :], r] if slow_n > 1 else [r]
        return r / s, sum(window) / len(window) / s

    def ratio(self, r: float, widen: float = 1.0, fresh: bool = False) -> float:
        """Both windows against their thresholds: the smaller ratio; >= 1 means both exceed.

        ``widen`` (>= 1) scales sigma, e.g. for an expectation learned from few samples.
        """
        fast, slow = self.zscores(r, fresh)
        hp = self._hp
        return min(fast / hp.fast_z, slow / hp.slow_z) / widen

    def pair_z(self, r: float, fresh: bool = False) -> float:
        """z of the last two residuals' sum (``r`` and the one before): sum / (sigma * sqrt 2).

        Noise halves its excess over two windows; a spike lasting an hour or two does not.
        With no previous residual (a fresh window), ``r`` alone over sqrt 2.
        """
        prev = self.recent[-1] if self.recent and not fresh else 0.0
        return (r + prev) / (self.sigma() * math.sqrt(2.0))

    def shift(self, n: int, z: float = 2.0) -> float | None:
        """Median of the last ``n`` residuals when all sit over ``z`` sigmas on one side.

        That is the signature of a new level (a launch) rather than a spike; the caller
        steps its level by part of this robust median instead of the clipped residual.
        """
        if n < 1 or len(self.recent) < n:
            return None
        last = sorted(self.recent[-n:])
        c = z * self.sigma()
        if last[0] > c or last[-1] < -c:
            return last[n // 2] if n % 2 else 0.5 * (last[n // 2 - 1] + last[n // 2])
        return None

    def clip(self, r: float) -> float:
        """``r`` limited to +-clip_z sigmas, so outliers teach only a bounded step."""
        c = self._hp.clip_z * self.sigma()
        return max(-c, min(c, r))

    def learn(self, r: float) -> None:
        """Fold residual ``r`` into the scale and the slow window."""
        self.n = min(self.n + 1, self._hp.n_cap)
        a = max(self._hp.alpha, 1.0 / self.n)
        dev = abs(self.clip(r)) if self.n > 1 else abs(r)
        self.abs_dev += a * (dev - self.abs_dev)
        self.recent.append(r)
        if len(self.recent) > self._hp.slow_n:
            del self.recent[0]

    def reset_window(self) -> None:
        """Forget the slow window (after a gap: silence says nothing about the trend)."""
        del self.recent[:]
