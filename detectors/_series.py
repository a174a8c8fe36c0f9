"""The watched series: each one's open hours and detectors, sleeping, the cap per dimension set.

There is one series per key, team, feature... of every detected dimension set, so a series
is kept small (``Series``: one int64 array holds its scalars and open hours). ``SeriesBook``
holds them all: it routes an hour record to its series, keeps the hours changed since the
last early look (``dirty``), lets a long-silent series sleep, and past
``limits.series_per_set`` series of one set it counts the rest together, exactly, in that
set's ``(other)`` series (``fold``), with one operator alert a day.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from typing import Any

from spendbrake.detectors._bank import Bank, Loose, bank_for
from spendbrake.detectors._base import Detector, make_detector
from spendbrake.schemas import (
    CALLS,
    COST,
    NUSD,
    Alert,
    Config,
    DetectorConfig,
    RollupRecord,
    format_ts,
)

__all__ = [
    "ASLEEP_FROM",
    "CLOSED_CALLS",
    "CLOSED_COST",
    "CLOSED_HOUR",
    "HEAD",
    "LAST_SPEND",
    "OTHER",
    "RECENT_HI",
    "RECENT_LO",
    "Series",
    "SeriesBook",
    "SeriesKey",
    "metric_value",
    "weight",
]

HOUR = 3600
#: A series silent this long is forgotten (its detectors too).
FORGET_S = 15 * 86400
#: The value of every field of the series that holds a dimension set's overflow.
OTHER = "(other)"
#: (dims, values): the key of a series, and of its scope.
SeriesKey = tuple[tuple[str, ...], tuple[str | None, ...]]
#: Values per open part in ``Series.state``.
_ROW = 5
#: The bank of a series built with no detectors yet.
_NONE = bank_for((), ())
_UNSEEN: Any = object()

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
        s.state = _cells([*closed, last_spend_hour, asleep_from, hi, lo, *parts])
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
        self.state = _cells([*self.state[:HEAD], *rows])

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
        for i in range(HEAD, len(parts), _ROW):
            if parts[i] == hour and parts[i + 1] == partition and parts[i + 2] == epoch:
                if parts[i + 3] == cost and parts[i + 4] == calls:
                    return False
                self._write(i + 3, (cost, calls))
                return True
        self._write(len(parts), (hour, partition, epoch, cost, calls))
        return True

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
            if at == len(parts):
                # A new row: a new array of the exact size (growing in place over-allocates,
                # and 100k series each hold a few rows).
                self.state = parts + array("q", values)
            else:
                parts[at : at + len(values)] = array("q", values)
        except OverflowError:
            self.state = [*parts]
            self.state[at : at + len(values)] = values

    def part_items(self) -> list[tuple[tuple[int, int, int], tuple[int, int]]]:
        """((hour, partition, epoch), (cost_nusd, calls)) of every part."""
        p = self.state
        return [
            ((p[i], p[i + 1], p[i + 2]), (p[i + 3], p[i + 4])) for i in range(HEAD, len(p), _ROW)
        ]

    def part(self, hour: int, partition: int, epoch: int) -> tuple[int, int]:
        """The (cost_nusd, calls) set for one partition and epoch of ``hour``; zeros if none."""
        parts = self.state
        for i in range(HEAD, len(parts), _ROW):
            if parts[i] == hour and parts[i + 1] == partition and parts[i + 2] == epoch:
                return parts[i + 3], parts[i + 4]
        return 0, 0

    def calls_of(self, hour: int) -> int:
        """Calls of ``hour``: open, or the hour its detectors learned last; else 0."""
        st = self.state
        if st[CLOSED_HOUR] == hour:
            return st[CLOSED_CALLS]
        return self.total(hour)[1]

    def hours(self) -> list[int]:
        """The open hours, earliest first."""
        return sorted(set(self.state[HEAD::_ROW]))

    def total(self, hour: int) -> tuple[int, int]:
        """(cost_nusd, calls) of ``hour`` summed over its partitions and epochs."""
        parts = self.state
        cost = calls = 0
        for i in range(HEAD, len(parts), _ROW):
            if parts[i] == hour:
                cost += parts[i + 3]
                calls += parts[i + 4]
        return cost, calls

    def close_hour(self, hour: int) -> tuple[int, int]:
        """``total(hour)``, forgetting the hour's parts and keeping it as the hour learned
        last (``closed``)."""
        cost, calls = self.total(hour)
        st = self.state
        kept = [x for i in range(HEAD, len(st), _ROW) if st[i] != hour for x in st[i : i + _ROW]]
        if len(kept) == len(st) - HEAD:
            self._write(CLOSED_HOUR, (hour, cost, calls))
            return cost, calls
        values = [hour, cost, calls, *st[LAST_SPEND:HEAD], *kept]
        # A list stays one (a part past int64 made it so); an array holds what fits.
        self.state = _cells(values) if type(st) is array else values
        return cost, calls

    def wake(self, until: int, config: Config) -> None:
        """Teach a sleeping series' detectors its silent hours before ``until``."""
        silent = []  # what each detector is fed for a silent hour: the same every hour
        for i, det in zip(self.slots, self.bank.at(self.row), strict=True):
            cfg = config.detectors[i]
            silent.append((det.learn, metric_value(cfg, 0, 0), weight(cfg, det, 0)))
        for hour in range(self.state[ASLEEP_FROM], until, HOUR):
            ts = float(hour)
            for update, value, w in silent:
                update(ts, value, w)
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


def entries_for(config: Config, key: SeriesKey) -> tuple[int, ...]:
    """The index of every config entry that runs on the series ``key``."""
    attrs = dict(zip(*key, strict=True))
    return tuple(
        i
        for i, cfg in enumerate(config.detectors)
        if cfg.runs_on(key[0]) and all(attrs.get(k) == v for k, v in cfg.scope.items())
    )


def detectors_for(config: Config, key: SeriesKey) -> list[tuple[int, Detector]]:
    """Fresh detectors of every config entry that runs on the series ``key``."""
    return [
        (i, make_detector(config.detectors[i].kind, **config.detectors[i].params))
        for i in entries_for(config, key)
    ]


class SeriesBook:
    """Every watched series by key, the open hours changed since the last early look, and
    the series folded into ``(other)`` past the cap of their dimension set."""

    def __init__(self) -> None:
        self.series: dict[SeriesKey, Series] = {}
        #: (series key, hour start) of the open hours changed since the last early look.
        self.dirty: set[tuple[SeriesKey, int]] = set()
        #: Series past ``limits.series_per_set``, folded into their set's ``(other)`` series:
        #: hour -> (dims, values, partition, epoch) -> the absolute (cost_nusd, calls) they
        #: added, so a re-sent record replaces its share instead of adding it again.
        self.folded: dict[int, dict[tuple[Any, ...], tuple[int, int]]] = {}
        #: (dims, UTC day) of the overflows already reported, and the reports to send:
        #: (dims, day, hour, cap) of each (``cap_notice``).
        self.cap_noticed: set[tuple[tuple[str, ...], int]] = set()
        self.notices: list[tuple[tuple[str, ...], int, int, int]] = []
        #: One tuple per dimension set, shared by the keys of its series.
        self._dim_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        #: dims -> series watched (derived from ``series``)
        self._per_set: dict[tuple[str, ...], int] = {}
        #: a series' detector slots -> seconds of silence after which it sleeps (derived)
        self._sleep_after: dict[tuple[int, ...], int] = {}
        #: config entries -> the bank new series of them take a row of (derived; None: their
        #: detectors are objects of their own, built for each)
        self._banks: dict[tuple[int, ...], Bank | None] = {}

    def hour(self, dims: tuple[str, ...], r: RollupRecord, config: Config) -> None:
        """Set an hour record's part in its series (or in its set's ``(other)``)."""
        sk = (dims, tuple(r.values))
        series = self.series.get(sk)
        if series is None and self._per_set.get(dims, 0) >= config.limits.series_per_set:
            self.fold(r, config)
            return
        if OTHER in sk[1]:
            self.fold(r, config)  # a caller's own "(other)": counted with ours, never over it
            return
        if series is None:
            self._per_set[dims] = self._per_set.get(dims, 0) + 1
            # Decoded records bring their own dims tuple and strings: share them.
            values = tuple(None if v is None else sys.intern(v) for v in sk[1])
            if all(a is b for a, b in zip(values, sk[1], strict=True)):
                values = sk[1]  # already shared (in-process, the rollup state's own tuple)
            sk = (self._dim_sets.setdefault(dims, dims), values)
            series = self.series[sk] = self.new_series(sk, config)
        if not series.set_part(
            r.window_start, r.partition, r.epoch, r.metrics[COST], r.metrics[CALLS]
        ):
            return  # the same absolute values again (a re-sent record): nothing to score
        if r.metrics[COST] > 0 and r.window_start > series.state[LAST_SPEND]:
            series.last_spend_hour = r.window_start  # the latest hour it spent in
        self.dirty.add((sk, r.window_start))

    def new_series(self, sk: SeriesKey, config: Config) -> Series:
        """A series of fresh detectors: a new row of its entries' bank, once there is one."""
        slots = entries_for(config, sk)
        bank = self._banks.get(slots, _UNSEEN)
        if type(bank) is Bank:
            return Series.fresh(sk, bank)
        series = Series(sk, detectors_for(config, sk))
        if bank is _UNSEEN:
            self._banks[slots] = series.bank if type(series.bank) is Bank else None
        return series

    def fold(self, r: RollupRecord, config: Config) -> None:
        """Count a series past the cap into its set's ``(other)`` series, exactly."""
        dims = self._dim_sets.setdefault(r.dims, r.dims)
        hour = r.window_start
        shares = self.folded.get(hour)
        if shares is None:
            shares = self.folded[hour] = {}
        part = (dims, r.values, r.partition, r.epoch)
        metrics = r.metrics
        new = (metrics[COST], metrics[CALLS])
        old = shares.get(part, (0, 0))
        if new == old:
            return
        shares[part] = new
        sk = (dims, (OTHER,) * len(dims))
        other = self.series.get(sk)
        if other is None:  # outside the cap: it is what the cap turns into
            other = self.series[sk] = self.new_series(sk, config)
        cost, calls = other.part(hour, r.partition, r.epoch)
        other.set_part(hour, r.partition, r.epoch, cost + new[0] - old[0], calls + new[1] - old[1])
        if new[0] > 0:
            other.spent_in(hour)
        self.dirty.add((sk, hour))
        day = hour // 86400 * 86400
        if (dims, day) not in self.cap_noticed:
            self.cap_noticed.add((dims, day))
            self.notices.append((dims, day, hour, config.limits.series_per_set))

    def take_notices(self) -> list[Alert]:
        """The operator alerts of the overflows since the last call."""
        notices, self.notices = self.notices, []
        return [cap_notice(*n) for n in notices]

    def folded_series(self) -> int:
        """Series counted in an ``(other)`` series in the open hours (a metric)."""
        return len({(d, v) for shares in self.folded.values() for d, v, _, _ in shares})

    def sleep_after_s(self, series: Series) -> int:
        """Silence after which a series' silent hours can no longer alert: its detectors'
        longest trailing window, plus an hour."""
        after = self._sleep_after.get(series.slots)
        if after is None:
            dets = series.bank.at(series.row)
            windows = [getattr(det, "window_s", HOUR) for det in dets]
            after = int(max(windows, default=HOUR)) + HOUR
            if any(det.alerts_on_silence for det in dets):
                after = 2**62  # never: each silent hour may alert
            self._sleep_after[series.slots] = after
        return after

    def prune(self, closed_until: int) -> None:
        """Forget series silent for ``FORGET_S`` and folded shares of closed hours."""
        horizon = closed_until - FORGET_S
        gone = [
            k
            for k, s in self.series.items()
            if s.state[LAST_SPEND] < horizon and len(s.state) == HEAD  # silent, no open hour
        ]
        for k in gone:
            del self.series[k]
            if OTHER not in k[1]:
                self._per_set[k[0]] -= 1
        for hour in [h for h in self.folded if h < closed_until]:
            del self.folded[hour]  # closed: a correction to it reaches budgets only
        self.cap_noticed = {n for n in self.cap_noticed if n[1] >= horizon}

    def rebuilt(self) -> None:
        """Recount what is derived from the series (after a restore or a reconfigure)."""
        per_set: dict[tuple[str, ...], int] = {}
        for dims, values in self.series:
            self._dim_sets.setdefault(dims, dims)
            if OTHER not in values:
                per_set[dims] = per_set.get(dims, 0) + 1
        self._per_set = per_set
        self._sleep_after = {}
        self._banks = {}


def cap_notice(dims: tuple[str, ...], day: int, hour: int, cap: int) -> Alert:
    """The one operator alert a day for a dimension set past its series cap."""
    named = ", ".join(dims)
    message = (
        f"more than {cap:,} series of [{named}] have spend: the rest are watched together "
        f"as {named}={OTHER} (their spend is still counted, exactly, there and in every "
        "coarser series). Raise limits.series_per_set if they are all real."
    )
    return Alert(
        kind="series_cap",
        detector="limits",
        scope={d: OTHER for d in dims},
        window_start=format_ts(day),
        window_end=format_ts(day + 86400),
        detected_at=format_ts(hour),
        observed_usd=0.0,
        expected_usd=None,
        severity="warning",
        reason=message,
        id=f"series-cap/{'+'.join(dims)}/{int(day)}",
        seq=0,
    )
