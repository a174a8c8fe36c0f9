"""``generic``: the generic mode, for metrics that are not dollars (latency, CPU, counts).

Why apart from ``baseline``: that one is built for spend (log space, a dollar floor, an
hour-of-week prior that needs two weeks). A generic metric has none of these: no unit, no
floor, no known season, values that may be negative.

Why novelty, not sigmas: on such metrics the shapes that recur (a daily cycle, a batch
job's plateau, a noisy band) are normal however far they sit from a mean, and what an
operator wants to hear about is a shape the series has never shown: a new level, a jump
from one level to another that never happened, a plateau where a cycle used to be. So,
as contextual detectors do (the sequence-memory idea of CAD OSE and HTM on the Numenta
Anomaly Benchmark, NAB), each value becomes one of ``levels`` coarse levels of the range
seen so far (fixed after ``grid_n`` values, so a level keeps its meaning; reset only when
the range grows ``regrid`` times), with ``hysteresis`` so that noise on a boundary is not a
move. Only moves count (a value on the same level says nothing new). Each move is checked
against a memory of the moves seen before, after contexts of 1 to ``order`` previous
levels; the shortest context after which this move was never seen is ``k``. A move never
seen after ``alert_order`` levels or fewer alerts. A slow view does the same on the mean
of each ``block`` values (its own grid of ``block_levels``): a move of the means never
seen after their last level alerts too (a change of shape too slow or too noisy to show in
single values).

The memory is a fixed bitset (hashed n-grams of both views, 4096 bits): the state does not
grow however long the series (about 0.9 KB a series as plain JSON or pickled). An alert
opens an episode: for ``refract_n`` values after it nothing else alerts. One alert per
event, as on-call wants.

The score is ``1 / (1 + (k / alert_order)**2)`` for a move of the values,
``1 / (1 + k**2)`` for one of the means, the larger of the two, 0 otherwise: 0.5 at the bar.
The defaults were tuned on NAB itself (one set for the whole corpus, as NAB's entries
are): see docs/detectors.md.

>>> d = Generic(warmup_n=50)
>>> quiet = [d.update(float(t), 10.0 + (t % 7) * 0.1) for t in range(300)]
>>> any(v.is_anomaly for v in quiet), d.update(300.0, 25.0).is_anomaly
(False, True)
>>> d.update(301.0, 24.0).is_anomaly  # the same episode
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from spendbrake.detectors._base import (
    Detector,
    HyperParams,
    Verdict,
    check,
    expose,
    ignored,
    register,
    share,
)

__all__ = ["Generic"]

#: Memory of the moves seen: 2**12 bits, one per hashed (context, move).
_BITS = 12
#: Levels beyond the grid are clipped this far out (a far value is one more new level).
_SPAN = 16
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


@dataclass(frozen=True, slots=True)
class _GenericParams(HyperParams):
    levels: int
    hysteresis: float
    grid_n: int
    regrid: float
    order: int
    alert_order: int
    block: int
    block_levels: int
    block_grid_n: int
    warmup_n: int
    refract_n: int
    signed: bool


#: A view's grid: (values seen, capped; lowest; highest; origin; level width).
Grid = tuple[int, float, float, float, float]
_NO_GRID: Grid = (0, 0.0, 0.0, 0.0, 0.0)


def _slot(tag: int, context: tuple[int, ...], level: int) -> int:
    """The memory bit of ``level`` after ``context`` (oldest first) in view ``tag``: a
    64-bit multiplicative hash of the n-gram, so the same move always lands on the same bit."""
    key = (tag << 4) | len(context)
    for x in (*context, level):
        key = (key << 6) | (x + _SPAN + 1)
    return ((key * _GOLDEN) & _MASK64) >> (64 - _BITS)


def _place(x: float, grid: Grid, path: tuple[int, ...], levels: int, hysteresis: float) -> int:
    """``x``'s level on ``grid`` (the values before it: a new extreme is a new level);
    within ``hysteresis`` of the last level, that one; just past the range, its edge."""
    _, _, _, origin, width = grid
    if width <= 0.0:
        return 0
    u = max(-_SPAN, min(levels + _SPAN, (x - origin) / width))
    if -hysteresis <= u < 0.0 or levels <= u < levels + hysteresis:
        u = min(max(u, 0.0), levels - 0.5)
    if path and path[-1] - hysteresis <= u < path[-1] + 1 + hysteresis:
        return path[-1]
    return math.floor(u)


def _regrid(grid: Grid, x: float, levels: int, grid_n: int, regrid: float) -> Grid:
    """The grid after ``x``: it follows the range while it is learned (``grid_n`` values)
    or when the range outgrew it ``regrid`` times; else it keeps, so a level keeps its
    meaning."""
    n, lo, hi, origin, width = grid
    if n == 0:
        return (1, x, x, x, 0.0)
    n, lo, hi = min(n + 1, grid_n + 1), min(lo, x), max(hi, x)
    if n <= grid_n or width <= 0.0 or hi - lo > regrid * levels * width:
        origin, width = lo, (hi - lo) / levels
    return (n, lo, hi, origin, width)


def _novelty(
    seen: bytearray, tag: int, path: tuple[int, ...], level: int, order: int, learn: bool
) -> int:
    """The shortest context (1..``order`` previous levels) after which the move to
    ``level`` was never seen, 0 if seen after all of them; learns it when ``learn``."""
    first = 0
    for k in range(1, order + 1):
        if k > len(path):
            return first or k
        bit = _slot(tag, path[-k:], level)
        byte, mask = bit >> 3, 1 << (bit & 7)
        if not seen[byte] & mask:
            first = first or k
            if learn:
                seen[byte] |= mask
    return first


@register("generic")
@expose(_GenericParams)
class Generic(Detector):
    """Novel-move detector on a coarse level grid (values, and means of ``block``), one
    alert per episode.

    Parameters
    ----------
    levels
        Levels the learned range of the values is cut into.
    hysteresis
        Fraction of a level a value must pass a boundary by to count as a move.
    grid_n
        Values whose range sets the grid (until then it follows the running range).
    regrid
        A grid is set again when the range grows this many times past it.
    order
        Longest context (previous levels) a move is remembered after.
    alert_order
        A value's move never seen after this many previous levels (or fewer) alerts.
    block
        The slow view: the mean of each ``block`` values, on its own grid; one of its
        moves never seen after its previous level alerts. 0: no slow view.
    block_levels, block_grid_n
        The slow view's levels, and the means whose range sets its grid.
    warmup_n
        Values learned before any alert.
    refract_n
        Values after an alert in which nothing alerts (the same episode).
    signed
        Negative values are data (a temperature, a delta); False: they are ignored as
        invalid, as for spend.
    """

    def __init__(
        self,
        levels: int = 5,
        hysteresis: float = 0.15,
        grid_n: int = 1200,
        regrid: float = 3.0,
        order: int = 5,
        alert_order: int = 2,
        block: int = 3,
        block_levels: int = 4,
        block_grid_n: int = 200,
        warmup_n: int = 100,
        refract_n: int = 100,
        signed: bool = False,
    ) -> None:
        check("levels", levels, _int(levels) and 2 <= levels <= 32, "an int in [2, 32]")
        check("hysteresis", hysteresis, 0 <= hysteresis < 0.5, "in [0, 0.5)")
        check("grid_n", grid_n, _int(grid_n) and grid_n >= 2, "an int >= 2")
        check("regrid", regrid, regrid > 1, "> 1")
        check("order", order, _int(order) and 1 <= order <= 8, "an int in [1, 8]")
        check(
            "alert_order",
            alert_order,
            _int(alert_order) and 1 <= alert_order <= order,
            "an int in [1, order]",
        )
        check("block", block, _int(block) and (block == 0 or block >= 2), "0 or an int >= 2")
        check(
            "block_levels",
            block_levels,
            _int(block_levels) and 2 <= block_levels <= 32,
            "an int in [2, 32]",
        )
        check("block_grid_n", block_grid_n, _int(block_grid_n) and block_grid_n >= 2, "an int >= 2")
        check("warmup_n", warmup_n, _int(warmup_n) and warmup_n >= 1, "an int >= 1")
        check("refract_n", refract_n, _int(refract_n) and refract_n >= 0, "an int >= 0")
        check("signed", signed, isinstance(signed, bool), "true or false")
        self._hp = share(
            _GenericParams(
                levels,
                hysteresis,
                grid_n,
                regrid,
                order,
                alert_order,
                block,
                block_levels,
                block_grid_n,
                warmup_n,
                refract_n,
                signed,
            )
        )
        #: Values seen (capped at warmup_n + 1); values left in the episode; each view's
        #: grid and the last levels it moved to (oldest first, at most ``order``); the slow
        #: view's block so far (sum, count); the memory bits of both views.
        self._n = 0
        self._cool = 0
        self._grid: Grid = _NO_GRID
        self._path: tuple[int, ...] = ()
        self._grid2: Grid = _NO_GRID
        self._path2: tuple[int, ...] = ()
        self._block: tuple[float, int] = (0.0, 0)
        self._seen = bytearray(1 << (_BITS - 3))

    __slots__ = (
        "_block",
        "_cool",
        "_grid",
        "_grid2",
        "_hp",
        "_n",
        "_path",
        "_path2",
        "_seen",
    )
    state_fields = ("_block", "_cool", "_grid", "_grid2", "_n", "_path", "_path2", "_seen")
    alerts_on_silence = True  # either way: a level that drops to 0 is news
    state_version = 2  # 1: level and scale of the former robust-sigma design

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, state[name])

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score ``value``'s move against the memory, then learn it."""
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
        n = min(self._n + 1, hp.warmup_n + 1)
        grid, path = self._grid, self._path
        level = _place(x, grid, path, hp.levels, hp.hysteresis)
        k = 0  # the shortest context after which this move is new (0: not new)
        if grid[0] and (not path or level != path[-1]):
            k = _novelty(self._seen, 1, path, level, hp.order, learn)
            path = (*path, level)[-hp.order :]
        score = 1.0 / (1.0 + (k / hp.alert_order) ** 2) if k else 0.0
        what = f"{x:.6g}: level {level} of {hp.levels}"
        grid2, path2, block = self._grid2, self._path2, self._block
        if hp.block:
            total, count = block[0] + x, block[1] + 1
            block = (total, count)
            if count == hp.block:
                mean, block = total / count, (0.0, 0)
                level2 = _place(mean, grid2, path2, hp.block_levels, hp.hysteresis)
                if grid2[0] and (not path2 or level2 != path2[-1]):
                    k2 = _novelty(self._seen, 2, path2, level2, hp.order, learn)
                    path2 = (*path2, level2)[-hp.order :]
                    score2 = 1.0 / (1.0 + k2 * k2) if k2 else 0.0
                    if score2 > score:
                        score, k = score2, k2
                        what = f"mean {mean:.6g} of the last {count}: level {level2}"
                        what += f" of {hp.block_levels}"
                grid2 = _regrid(grid2, mean, hp.block_levels, hp.block_grid_n, hp.regrid)
        if n <= hp.warmup_n or self._cool > 0:
            score = 0.0  # learning, or the episode already alerted
        alert = score >= 0.5
        if alert:
            reason = f"{what}, a move never seen after {k} level(s)"
        elif n <= hp.warmup_n:
            reason = f"{what}; learning ({n} of {hp.warmup_n})"
        elif self._cool > 0:
            reason = f"{what}; in the episode alerted {hp.refract_n - self._cool + 1} ago"
        else:
            reason = f"{what}; a known move" if k else f"{what}; as usual"
        if learn:
            self._n = n
            self._cool = hp.refract_n if alert else max(self._cool - 1, 0)
            self._grid = _regrid(grid, x, hp.levels, hp.grid_n, hp.regrid)
            self._path, self._grid2, self._path2, self._block = path, grid2, path2, block
        return Verdict(score, alert, None, x, reason)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
