"""One watched series: its open hours, the hour it learned last, its detectors' row.

There is one series per key, team, feature... of every detected dimension set, so a series
is kept small: one int64 array holds its scalars and open hours, and its detectors are a
row of a bank (``detectors._bank``). ``SeriesBook`` (``detectors._book``) holds them all.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any

from spendbrake.detectors._bank import Bank, Loose, bank_for
from spendbrake.detectors._base import Detector
from spendbrake.schemas import NUSD, Config, DetectorConfig

__all__ = [
    "ASLEEP_FROM",
    "CLOSED_CALLS",
    "CLOSED_COST",
    "CLOSED_HOUR",
    "HEAD",
    "LAST_SPEND",
    "RECENT_HI",
    "RECENT_LO",
    "Series",
    "SeriesKey",
    "metric_value",
    "weight",
]

HOUR = 3600
#: (dims, values): the key of a series, and of its scope.
SeriesKey = tuple[tuple[str, ...], tuple[str | None, ...]]
#: Values per open part in ``Series.state``.
_ROW = 5
#: The bank of a series built with no detectors yet.
_NONE = bank_for((), ())

# A series' own scalars: the first ``HEAD`` int64 of ``Series.state``, before its part rows.
#: (hour start, cost_nusd, calls) of the hour its detectors learned last.
CLOSED_HOUR, CLOSED_COST, CLOSED_CALLS = 0, 1, 2
#: The latest hour it spent in.
LAST_SPEND = 3
#: The first silent hour its detectors have not learned yet (0: none): see ``Scoring.close``.
ASLEEP_FROM = 4
#: Its open hour's calls at the last early looks (``_recent``: ``hi``, ``lo``; 0, 0: none).
RECENT_HI, RECENT_LO = 5, 6
HEAD = 7
_BLANK = array("q", [0] * HEAD)
_LOW64 = (1 << 64) - 1


def _cells(values: list[int]) -> array[int] | list[int]:
    """``values`` as an exact-size int64 array; a list if one is past int64 (kept exact)."""
    try:
        return array("q", values)
    except OverflowError:
        return values


def _by_hour(parts: list[int]) -> list[int]:
    """Open-hour rows in hour order, as ``Series.state`` keeps them (a snapshot written
    before it did holds them in arrival order); each hour's rows in the order given."""
    hours = parts[::_ROW]
    if list(hours) == sorted(hours):
        return parts
    rows = sorted(range(0, len(parts), _ROW), key=parts.__getitem__)
    return [x for i in rows for x in parts[i : i + _ROW]]


class Series:
    """One rolled-up series: its own scalars and open hours, in one array, and its detectors.

    Its scope is read off the key; its detectors are a row of a ``Bank`` shared with every
    series of the same config entries (``detectors._bank``: ``bank.at(row)`` steps them), and
    the book, not the series, knows which open hours changed since they were last scored.
    """

    __slots__ = ("bank", "key", "row", "state")

    def __init__(self, key: SeriesKey, detectors: Iterable[tuple[int, Detector]] = ()) -> None:
        self.key = key
        self.bank: Bank | Loose = _NONE
        #: Its row in ``bank`` (a ``Loose`` bank's: the tuple of its detectors).
        self.row: Any = ()
        self.detectors = list(detectors)
        #: Its scalars (``HEAD`` int64: ``CLOSED_HOUR``... above), then the hours still open
        #: as rows of (hour start, partition, epoch, cost_nusd, calls) one after another. One
        #: array object a series: a row is 40 bytes where a dict entry, its key and value
        #: tuples and their ints were about 180, and the scalars 56 where a tuple, int
        #: objects and four slots were about 250. A value past int64 turns it into a list
        #: (exact).
        self.state: array[int] | list[int] = _BLANK[:]

    @classmethod
    def fresh(cls, key: SeriesKey, bank: Bank) -> Series:
        """A new series with fresh detectors: a new row of ``bank``."""
        s = object.__new__(cls)
        s.key = key
        s.bank = bank
        s.row = bank.new()
        s.state = _BLANK[:]
        return s

    def __del__(self) -> None:
        bank = getattr(self, "bank", None)
        if bank is not None:
            bank.release(self.row)

    @classmethod
    def restored(
        cls,
        key: SeriesKey,
        bank: Bank | Loose,
        row: Any,
        *,
        closed: tuple[int, int, int],
        last_spend_hour: int,
        asleep_from: int,
        recent: int,
        parts: list[int],
    ) -> Series:
        """A series from its snapshot's fields, its detectors already loaded into ``row`` of
        ``bank`` (``recent``: the packed int ``_recent`` keeps)."""
        s = object.__new__(cls)
        s.key, s.bank, s.row = key, bank, row
        hi, lo = recent >> 64, recent & _LOW64
        s.state = _cells([*closed, last_spend_hour, asleep_from, hi, lo, *_by_hour(parts)])
        return s

    @property
    def scope(self) -> tuple[tuple[str, str | None], ...]:
        return tuple(zip(*self.key, strict=True))

    @property
    def slots(self) -> tuple[int, ...]:
        """The config index of each of its detectors (a tuple shared by its bank's series)."""
        return self.bank.slots

    @property
    def dets(self) -> tuple[Detector, ...]:
        """Its detectors, objects of their own, live on its state (``bank.view``)."""
        return self.bank.view(self.row)

    @property
    def detectors(self) -> list[tuple[int, Detector]]:
        """(config index, detector) of each detector that applies to this series."""
        return list(zip(self.slots, self.dets, strict=True))

    @detectors.setter
    def detectors(self, pairs: list[tuple[int, Detector]]) -> None:
        """Take a copy of ``pairs``' detectors' state (the detectors themselves are not kept)."""
        slots = tuple(i for i, _ in pairs)
        dets = [d for _, d in pairs]
        bank = bank_for(slots, dets)
        row = bank.adopt(dets)
        self.bank.release(self.row)
        self.bank, self.row = bank, row

    # The scalars by name, for snapshots, tests and tools (hot paths index ``state``).

    @property
    def closed(self) -> tuple[int, int, int]:
        """(hour start, cost_nusd, calls) of the hour its detectors learned last."""
        st = self.state
        return st[CLOSED_HOUR], st[CLOSED_COST], st[CLOSED_CALLS]

    @closed.setter
    def closed(self, value: tuple[int, int, int]) -> None:
        self._write(CLOSED_HOUR, value)

    @property
    def last_spend_hour(self) -> int:
        return self.state[LAST_SPEND]

    @last_spend_hour.setter
    def last_spend_hour(self, hour: int) -> None:
        self._set(LAST_SPEND, hour)

    @property
    def asleep_from(self) -> int:
        return self.state[ASLEEP_FROM]

    @asleep_from.setter
    def asleep_from(self, hour: int) -> None:
        self._set(ASLEEP_FROM, hour)

    @property
    def recent(self) -> int:
        """Its calls at the last early looks, as the one int snapshots keep (``_recent``)."""
        return self.state[RECENT_HI] << 64 | self.state[RECENT_LO]

    @recent.setter
    def recent(self, ring: int) -> None:
        self.set_recent(ring >> 64, ring & _LOW64)

    @property
    def parts(self) -> array[int] | list[int]:
        """Its open parts' rows (a copy): what ``part_items`` reads as tuples."""
        return self.state[HEAD:]

    @parts.setter
    def parts(self, rows: Iterable[int]) -> None:
        self.state = _cells([*self.state[:HEAD], *_by_hour(list(rows))])

    def set_recent(self, hi: int, lo: int) -> None:
        """Record its calls at the last early looks (``_recent.look``'s two ints)."""
        st = self.state
        try:
            st[RECENT_HI] = hi
            st[RECENT_LO] = lo
        except OverflowError:  # an hour of 2**31 calls or more: kept exact, as a list
            self.state = st = [*st]
            st[RECENT_HI] = hi
            st[RECENT_LO] = lo

    def spent_in(self, hour: int) -> None:
        """Note spend in ``hour`` (the latest such hour decides when it sleeps)."""
        if hour > self.state[LAST_SPEND]:
            self._set(LAST_SPEND, hour)

    def set_part(self, hour: int, partition: int, epoch: int, cost: int, calls: int) -> bool:
        """Set one partition's and epoch's absolute (cost_nusd, calls) of ``hour``; False if
        they were already so (a re-sent record: nothing to score)."""
        parts = self.state
        start, end = self._span(hour)
        for i in range(start, end, _ROW):
            if parts[i + 1] == partition and parts[i + 2] == epoch:
                if parts[i + 3] == cost and parts[i + 4] == calls:
                    return False
                try:  # in place, no array made for the two values (400k a 1M-event replay)
                    parts[i + 3] = cost
                    parts[i + 4] = calls
                except OverflowError:  # past int64: ``_write`` keeps them exact, in a list
                    self._write(i + 3, (cost, calls))
                return True
        self._insert(end, (hour, partition, epoch, cost, calls))
        return True

    def _span(self, hour: int) -> tuple[int, int]:
        """Where ``hour``'s rows are in ``state``: [start, end). Rows are kept in hour order
        so that a backlog's open hours are found by bisection: a detect stage catching up
        can hold hundreds of them a series (the demo's three weeks of history did), and a
        scan row by row at every record and close made that quadratic (the demo's detect
        stage took 27 s under a profiler, 8 s since)."""
        parts = self.state
        n = len(parts)
        if n == HEAD:
            return HEAD, HEAD
        if n == HEAD + _ROW:  # one row, the usual open hour: no search
            at = parts[HEAD]
            return (HEAD, HEAD) if hour < at else (HEAD, n) if hour == at else (n, n)
        hours = parts[HEAD::_ROW]
        return HEAD + bisect_left(hours, hour) * _ROW, HEAD + bisect_right(hours, hour) * _ROW

    def _set(self, at: int, value: int) -> None:
        try:
            self.state[at] = value
        except OverflowError:
            self.state = [*self.state]
            self.state[at] = value

    def _write(self, at: int, values: tuple[int, ...]) -> None:
        parts = self.state
        if type(parts) is list:
            parts[at : at + len(values)] = values
            return
        try:
            parts[at : at + len(values)] = array("q", values)
        except OverflowError:
            self.state = [*parts]
            self.state[at : at + len(values)] = values

    def _insert(self, at: int, row: tuple[int, ...]) -> None:
        """A new row at ``at``: a new array of the exact size (growing in place
        over-allocates, and 100k series each hold a few rows)."""
        parts = self.state
        if type(parts) is list:
            parts[at:at] = row
            return
        try:
            cells = array("q", row)
        except OverflowError:
            self.state = [*parts[:at], *row, *parts[at:]]
            return
        self.state = parts + cells if at == len(parts) else parts[:at] + cells + parts[at:]

    def part_items(self) -> list[tuple[tuple[int, int, int], tuple[int, int]]]:
        """((hour, partition, epoch), (cost_nusd, calls)) of every part."""
        p = self.state
        return [
            ((p[i], p[i + 1], p[i + 2]), (p[i + 3], p[i + 4])) for i in range(HEAD, len(p), _ROW)
        ]

    def part(self, hour: int, partition: int, epoch: int) -> tuple[int, int]:
        """The (cost_nusd, calls) set for one partition and epoch of ``hour``; zeros if none."""
        parts = self.state
        start, end = self._span(hour)
        for i in range(start, end, _ROW):
            if parts[i + 1] == partition and parts[i + 2] == epoch:
                return parts[i + 3], parts[i + 4]
        return 0, 0

    def calls_of(self, hour: int) -> int:
        """Calls of ``hour``: open, or the hour its detectors learned last; else 0."""
        st = self.state
        if st[CLOSED_HOUR] == hour:
            return st[CLOSED_CALLS]
        return self.total(hour)[1]

    def hour_calls(self, hour: int) -> int:
        """``calls_of`` an hour given in hours since the epoch (``_recent.look``'s
        ``hour_total``)."""
        return self.calls_of(hour * HOUR)

    def hours(self) -> list[int]:
        """The open hours, earliest first."""
        return sorted(set(self.state[HEAD::_ROW]))

    def total(self, hour: int) -> tuple[int, int]:
        """(cost_nusd, calls) of ``hour`` summed over its partitions and epochs."""
        parts = self.state
        if len(parts) == HEAD + _ROW:  # one part, the usual open hour: no loop
            return (parts[HEAD + 3], parts[HEAD + 4]) if parts[HEAD] == hour else (0, 0)
        return self._sum(*self._span(hour))

    def _sum(self, start: int, end: int) -> tuple[int, int]:
        parts = self.state
        cost = calls = 0
        for i in range(start, end, _ROW):
            cost += parts[i + 3]
            calls += parts[i + 4]
        return cost, calls

    def close_hour(self, hour: int) -> tuple[int, int]:
        """``total(hour)``, forgetting the hour's parts and keeping it as the hour learned
        last (``closed``)."""
        start, end = self._span(hour)
        cost, calls = self._sum(start, end)
        if end > start:
            st = self.state
            # An exact-size copy without the hour's rows; a list stays one (a part past int64
            # made it so).
            self.state = st[:start] + st[end:]
        self._write(CLOSED_HOUR, (hour, cost, calls))
        return cost, calls

    def wake(self, until: int, config: Config) -> None:
        """Teach a sleeping series' detectors its silent hours before ``until``."""
        start = self.state[ASLEEP_FROM]
        for i, det in zip(self.slots, self.bank.at(self.row), strict=True):
            cfg = config.detectors[i]  # a silent hour is fed the same every hour
            det.learn_run(start, until, metric_value(cfg, 0, 0), weight(cfg, det, 0))
        self.state[ASLEEP_FROM] = 0


def metric_value(cfg: DetectorConfig, cost: int, calls: int) -> float:
    """What a detector of ``cfg`` is fed for an hour of ``cost`` nano-dollars and ``calls``."""
    if cfg.metric == "cost_usd":
        return cost / NUSD
    if cfg.metric == "calls":
        return float(calls)
    return cost / NUSD / calls if calls else math.nan


def weight(cfg: DetectorConfig, det: Detector, calls: int) -> float:
    """The evidence behind a window's value: its calls for a cost per call (a mean), and
    for a cost when the detector counts calls (``baseline``'s ``count_x``)."""
    if cfg.metric == "cost_per_call" or getattr(det, "count_x", 0.0):
        return float(calls)
    return 1.0
