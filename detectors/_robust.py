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
from spendbrake.detectors._rows import Block

__all__ = ["BurnScale", "ScaleBlock"]

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

    __slots__ = ("_at", "_hp", "_v")

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
        #: ``size`` float64s from ``_at``: the scale (``abs_dev``), the count (``n``), how
        #: many residuals the slow window holds, then the last ``slow_n`` residuals, oldest
        #: first. Its own array, or a part of a detector's row (``over``).
        self._v = array("d", bytes(8 * self.size(self._hp)))
        self._at = 0

    @property
    def hyper(self) -> _ScaleParams:
        """The shared hyperparameters (what a scale kept in a row runs with: ``over``)."""
        return self._hp

    @staticmethod
    def size(hp: _ScaleParams) -> int:
        """Float64s a scale of ``hp`` takes."""
        return _R + hp.slow_n

    @classmethod
    def over(cls, hp: _ScaleParams, v: array[float], at: int) -> BurnScale:
        """The scale kept in ``v`` from ``at`` (a detector's row): read and learned in place."""
        scale = object.__new__(cls)
        scale._hp, scale._v, scale._at = hp, v, at
        return scale

    @property
    def abs_dev(self) -> float:
        return self._v[self._at + _ABS]

    @abs_dev.setter
    def abs_dev(self, value: float) -> None:
        self._v[self._at + _ABS] = value

    @property
    def n(self) -> int:
        return int(self._v[self._at + _N])

    @n.setter
    def n(self, value: int) -> None:
        self._v[self._at + _N] = min(value, self._hp.n_cap)

    @property
    def recent(self) -> array[float]:
        """The last ``slow_n`` residuals (at most), oldest first: a copy."""
        at = self._at + _R
        return self._v[at : at + int(self._v[self._at + _LEN])]

    @recent.setter
    def recent(self, values: Any) -> None:
        keep = array("d", values)[-self._hp.slow_n :] if self._hp.slow_n else array("d")
        at = self._at + _R
        self._v[at : at + len(keep)] = keep
        self._v[self._at + _LEN] = len(keep)

    def __getstate__(self) -> dict[str, Any]:
        return {"_hp": self._hp, "abs_dev": self.abs_dev, "n": self.n, "recent": self.recent}

    def __setstate__(self, state: Any) -> None:
        """Restore a snapshot: this layout, or the older one with a slot per hyperparameter."""
        if isinstance(state, tuple):  # the default state of a slotted class: (None, slots)
            state = state[1]
        if "_hp" in state:
            hp = state["_hp"]
        else:
            names = ("fast_z", "slow_n", "slow_z", "alpha", "clip_z", "min_scale")
            hp = share(_ScaleParams(*(state[k] for k in names)))
        self._hp, self._v, self._at = hp, array("d", bytes(8 * self.size(hp))), 0
        self.abs_dev = state["abs_dev"]
        self.n = state["n"]
        self.recent = state["recent"]

    def __copy__(self) -> BurnScale:
        """A scale of its own with this one's numbers (a restore makes one per detector, then
        loads into it; a copy of a scale kept in a row leaves the row)."""
        return BurnScale.over(self._hp, self._v[self._at : self._at + self.size(self._hp)], 0)

    def dump_state(self) -> list[Any]:
        """The learned part as plain data (``detectors._plain``): scale, count, slow window."""
        return [to_plain(self.abs_dev), self.n, to_plain(self.recent)]

    def load_state(self, state: list[Any]) -> None:
        """Take ``dump_state``'s output into this scale, built with the same parameters."""
        abs_dev, n, recent = state
        self.abs_dev = number(abs_dev)
        self.n = number(n)
        self.recent = from_plain(array("d"), recent)

    def sigma(self) -> float:
        """Current robust sigma of residuals (the floor until anything was learned)."""
        return max(self._hp.min_scale, self._v[self._at + _ABS] * _MAD_TO_SIGMA)

    def _last(self, k: int) -> list[float]:
        """The last ``k`` residuals of the slow window (fewer if it holds fewer), oldest first."""
        v, at = self._v, self._at
        end = at + _R + int(v[at + _LEN])
        return v[max(at + _R, end - k) : end].tolist() if k > 0 else []

    def zscores(self, r: float, fresh: bool = False) -> tuple[float, float]:
        """Fast and slow z for residual ``r`` with ``r`` counted in the slow window.

        ``fresh`` scores as if the slow window had just been reset (after a gap).
        """
        s = self.sigma()
        slow_n = self._hp.slow_n
        recent = [] if fresh or slow_n <= 1 else self._last(slow_n - 1)
        window = [*recent, r]
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
        v, at = self._v, self._at
        held = int(v[at + _LEN])
        prev = v[at + _R + held - 1] if held and not fresh else 0.0
        return (r + prev) / (self.sigma() * math.sqrt(2.0))

    def shift(self, n: int, z: float = 2.0) -> float | None:
        """Median of the last ``n`` residuals when all sit over ``z`` sigmas on one side.

        That is the signature of a new level (a launch) rather than a spike; the caller
        steps its level by part of this robust median instead of the clipped residual.
        """
        if n < 1 or int(self._v[self._at + _LEN]) < n:
            return None
        last = sorted(self._last(n))
        c = z * self.sigma()
        if last[0] > c or last[-1] < -c:
            return last[n // 2] if n % 2 else 0.5 * (last[n // 2 - 1] + last[n // 2])
        return None

    def clip(self, r: float) -> float:
        """``r`` limited to +-clip_z sigmas, so outliers teach only a bounded step."""
        c = self.clip_at()
        return max(-c, min(c, r))

    def clip_at(self) -> float:
        """The bound ``clip`` limits a residual to (for a run of them, read once)."""
        return self._hp.clip_z * self.sigma()

    def learn(self, r: float) -> None:
        """Fold residual ``r`` into the scale and the slow window."""
        hp, v, at = self._hp, self._v, self._at
        n = v[at + _N] = min(v[at + _N] + 1.0, hp.n_cap)
        a = max(hp.alpha, 1.0 / n)
        dev = abs(self.clip(r)) if n > 1 else abs(r)
        v[at + _ABS] += a * (dev - v[at + _ABS])
        held, slow_n = int(v[at + _LEN]), hp.slow_n
        if held < slow_n:
            v[at + _R + held] = r
            v[at + _LEN] = held + 1
        elif slow_n:  # full: the oldest goes
            first = at + _R
            v[first : first + slow_n - 1] = v[first + 1 : first + slow_n]
            v[first + slow_n - 1] = r

    def reset_window(self) -> None:
        """Forget the slow window (after a gap: silence says nothing about the trend)."""
        self._v[self._at + _LEN] = 0.0


class ScaleBlock(Block):
    """A detector's ``BurnScale`` kept in a block of its row (``detectors._rows``).

    Read by name, it is a scale of its own with the row's numbers (a value: for snapshots,
    pickles and ``retune``); set, it writes a scale's numbers into the row. The detector's
    own code learns in place, through ``BurnScale.over``. ``params(obj)`` gives the
    hyperparameters the detector's scale runs with.
    """

    __slots__ = ("params",)

    def __init__(self, index: int, params: Any) -> None:
        super().__init__(index, False)
        self.params = params

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        rows = obj._rows  # noqa: SLF001 - the state this descriptor reads
        n = rows.sizes[self.index]
        at = obj._row * n  # noqa: SLF001
        return BurnScale.over(self.params(obj), rows.blocks[self.index][at : at + n], 0)

    def __set__(self, obj: Any, value: Any) -> None:
        """Write a scale's numbers (anything with ``abs_dev``, ``n`` and ``recent``)."""
        hp = self.params(obj)
        scale = BurnScale.over(hp, array("d", bytes(8 * BurnScale.size(hp))), 0)
        scale.abs_dev, scale.n, scale.recent = value.abs_dev, value.n, value.recent
        super().__set__(obj, scale._v)  # noqa: SLF001 - our own class


#: Where the numbers are, from a scale's ``_at``.
_ABS, _N, _LEN, _R = 0, 1, 2, 3
