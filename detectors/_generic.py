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
seen after ``alert_order`` levels or fewer alerts.

The memory is a fixed bitset (hashed n-grams, 4096 bits): the state does not grow however
long the series (about 0.75 KB a series as plain JSON). An alert opens an episode: for ``refract_n``
values after it nothing else alerts. One alert per event, as on-call wants.

The score is ``1 / (1 + (k / alert_order)**2)`` for a move, 0 otherwise: 0.5 at the bar.
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
    warmup_n: int
    refract_n: int
    signed: bool


def _slot(context: tuple[int, ...], level: int) -> int:
    """The memory bit of ``level`` after ``context`` (oldest first): a 64-bit
    multiplicative hash of the n-gram, so the same move always lands on the same bit."""
    key = len(context)
    for x in (*context, level):
        key = (key << 6) | (x + _SPAN + 1)
    return ((key * _GOLDEN) & _MASK64) >> (64 - _BITS)


@register("generic")
@expose(_GenericParams)
class Generic(Detector):
    """Novel-sequence detector on a coarse level grid, one alert per episode.

    Parameters
    ----------
    levels
        Levels the learned range is cut into.
    hysteresis
        Fraction of a level a value must pass a boundary by to count as a move.
    grid_n
        Values whose range sets the grid (until then it follows the running range).
    regrid
        The grid is set again when the range grows this many times past it.
    order
        Longest context (previous levels) a move is remembered after.
    alert_order
        A move never seen after this many previous levels (or fewer) alerts.
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
                warmup_n,
                refract_n,
                signed,
            )
        )
        #: Values seen (capped at grid_n), the range seen, the grid (origin, level width),
        #: the last levels moved to (oldest first, at most ``order``), the memory bits, and
        #: values left in the episode.
        self._n = 0
        self._lo = 0.0
        self._hi = 0.0
        self._origin = 0.0
        self._width = 0.0
        self._path: tuple[int, ...] = ()
        self._seen = bytearray(1 << (_BITS - 3))
        self._cool = 0

    __slots__ = (
        "_cool",
        "_hi",
        "_hp",
        "_lo",
        "_n",
        "_origin",
        "_path",
        "_seen",
        "_width",
    )
    state_fields = ("_cool", "_hi", "_lo", "_n", "_origin", "_path", "_seen", "_width")
    alerts_on_silence = True  # either way: a level that drops to 0 is news
    state_version = 2  # 1: level and scale of the z detector

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
        if self._n == 0:
            if learn:
                self._n, self._lo, self._hi, self._origin = 1, x, x, x
            return Verdict(0.0, False, None, x, "first value; learning its range")
        n = min(self._n + 1, max(hp.grid_n, hp.warmup_n) + 1)
        lo, hi = min(self._lo, x), max(self._hi, x)
        # Judged on the grid of the values before it (a new extreme is a new level), then
        # the grid follows the range while it is learned, or when the range outgrew it.
        origin, width = self._origin, self._width
        path = self._path
        level = self._level(x, origin, width, path)
        cool = max(self._cool - 1, 0)
        moved = not path or level != path[-1]
        k = 0  # the shortest context after which this move is new (0: not new)
        if moved:
            k = self._novelty(path, level, learn)
            if learn:
                path = (*path, level)[-hp.order :]
        score = 0.0
        if k and n > hp.warmup_n and self._cool == 0:
            score = 1.0 / (1.0 + (k / hp.alert_order) ** 2)
        alert = score >= 0.5
        if alert:
            cool = hp.refract_n
        top = origin + hp.levels * width
        head = f"{x:.6g}: level {level} of {hp.levels} over {origin:.6g}..{top:.6g}"
        if alert:
            reason = f"{head}, a move never seen after {k} level(s)"
        elif n <= hp.warmup_n:
            reason = f"{head}; learning ({n} of {hp.warmup_n})"
        elif self._cool > 0 and k and k <= hp.alert_order:
            reason = f"{head}; part of the episode alerted {hp.refract_n - self._cool + 1} ago"
        else:
            reason = f"{head}; a known move" if moved else f"{head}; same level"
        if learn:
            self._n, self._lo, self._hi = n, lo, hi
            if n <= hp.grid_n or width <= 0.0 or hi - lo > hp.regrid * hp.levels * width:
                self._origin, self._width = lo, (hi - lo) / hp.levels
            self._path, self._cool = path, cool
        return Verdict(score, alert, None, x, reason)

    def _level(self, x: float, origin: float, width: float, path: tuple[int, ...]) -> int:
        """``x``'s level on the grid; within ``hysteresis`` of the last level, that one."""
        if width <= 0.0:
            return 0
        hp = self._hp
        u = max(-_SPAN, min(hp.levels + _SPAN, (x - origin) / width))
        if -hp.hysteresis <= u < 0.0 or hp.levels <= u < hp.levels + hp.hysteresis:
            u = min(max(u, 0.0), hp.levels - 0.5)  # just past the range: its edge level
        level = math.floor(u)
        if path:
            last = path[-1]
            if last - hp.hysteresis <= u < last + 1 + hp.hysteresis:
                return last
        return level

    def _novelty(self, path: tuple[int, ...], level: int, learn: bool) -> int:
        """The shortest context (1..order previous levels) after which the move to
        ``level`` was never seen, 0 if seen after all of them; learns it when ``learn``."""
        seen = self._seen
        first = 0
        for k in range(1, self._hp.order + 1):
            if k > len(path):
                return first or k
            bit = _slot(path[-k:], level)
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not seen[byte] & mask:
                first = first or k
                if learn:
                    seen[byte] |= mask
        return first


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
