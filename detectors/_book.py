"""Every watched series: routing hour records to them, the cap per dimension set, forgetting.

``SeriesBook`` routes an hour record to its series (a new one takes a row of its config
entries' bank), keeps the hours changed since the last early look (``dirty``), lets a
long-silent series sleep, and past ``limits.series_per_set`` series of one set it counts
the rest together, exactly, in that set's ``(other)`` series (``fold``), with one operator
alert a day.

It also says which series an hour's close must visit (``closing``): those ``awake``, and
those dozing (``doze``) whose silent hour may alert then. A series silent in an hour whose
silence none of its detectors can alert on dozes: its silent hours are learned later, as a
run, when it spends or is looked at (``settle``), to the state hour-by-hour closes leave.
Why: a flood of customers that each spend once kept their series awake a day (a day-long
``wow`` window) and fed each of them every hour's silence; the close went over all of them.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from spendbrake.detectors._bank import Bank
from spendbrake.detectors._base import Detector, make_detector
from spendbrake.detectors._series import (
    ASLEEP_FROM,
    HEAD,
    HOUR,
    LAST_SPEND,
    Series,
    SeriesKey,
    metric_value,
)
from spendbrake.schemas import OTHER, Alert, Config, RollupColumns, format_ts

__all__ = ["FORGET_S", "OTHER", "SeriesBook", "cap_notice", "detectors_for", "entries_for"]

#: A series silent this long is forgotten (its detectors too).
FORGET_S = 15 * 86400
_UNSEEN: Any = object()
#: One hour record of a series: (values, hour start, late epoch, cost_nusd, calls).
Row = tuple[tuple[str | None, ...], int, int, int, int]


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
        #: a series' detector slots -> the detectors an early look asks (derived)
        self._peekers: dict[tuple[int, ...], tuple[tuple[int, int], ...]] = {}
        #: config entries -> the bank new series of them take a row of (derived; None: their
        #: detectors are objects of their own, built for each)
        self._banks: dict[tuple[int, ...], Bank | None] = {}
        #: The keys of the series the next close visits (derived): each one neither asleep
        #: nor dozing (``ASLEEP_FROM`` 0), and each with an open hour; a key may come twice,
        #: or of a series gone since (``closing`` drops them). A list of keys, not series:
        #: 8 bytes a series (a dict or set took about 50), and a series gone from ``series``
        #: is gone (its bank row too).
        self.awake: list[SeriesKey] = []
        #: hour -> keys of dozing series whose silent hour may alert then (``doze``; a
        #: series may have woken or gone since: ``closing`` checks).
        self.due: dict[int, list[SeriesKey]] = {}
        #: a series' detector slots -> what each of them is fed for a silent hour (derived)
        self._silent: dict[tuple[int, ...], tuple[float, ...]] = {}
        #: hour -> keys of series whose last spend was that hour when ``prune`` last looked
        #: (derived): it looks at each again once that hour is ``FORGET_S`` old, not at every
        #: series every hour (a flood's thousands). ``None``: not noted yet, all to note.
        self._expiry: dict[int, list[SeriesKey]] | None = None
        #: Keys of the series new since ``prune`` last looked (derived).
        self._born: list[SeriesKey] = []

    def hours(
        self,
        dims: tuple[str, ...],
        block: RollupColumns,
        closed_until: int | None,
        config: Config,
    ) -> None:
        """Set each hour record's part in its series (a new one while its set is under the
        cap), bar a series with no value for a field (a "no customer" series is mostly a
        copy of the global one: counted and budgeted, no detectors) and corrections to hours
        the detectors already learned. Records of series past the cap are folded into
        ``(other)`` together, at the end."""
        get = self.series.get
        dirty = self.dirty
        partition = block.partition
        cap = config.limits.series_per_set
        full = self._per_set.get(dims, 0) >= cap  # again after each new series
        capped: list[Row] = []
        for values, hour, epoch, cost, calls in zip(
            block.values,
            block.starts,
            block.epochs,
            block.metrics[0],
            block.metrics[1],
            strict=True,
        ):
            if None in values or (closed_until is not None and hour < closed_until):
                continue
            sk = (dims, values)
            series = get(sk)
            if series is None or OTHER in values:
                # Past the cap, or a caller's own "(other)": counted with ours, never over it.
                if full or OTHER in values:
                    capped.append((values, hour, epoch, cost, calls))
                    continue
                series = self._watch(dims, values, config)
                sk = series.key
                full = self._per_set[dims] >= cap
            if series.set_part(hour, partition, epoch, cost, calls):
                if series.state[ASLEEP_FROM]:
                    self.woken(series, closed_until, config)  # before its last spend moves
                if cost > 0 and hour > series.state[LAST_SPEND]:
                    series.last_spend_hour = hour  # the latest hour it spent in
                dirty.add((sk, hour))
            # else: the same absolute values again (a re-sent record): nothing to score
        if capped:
            self.fold(dims, partition, capped, config, closed_until)

    def _watch(
        self, dims: tuple[str, ...], values: tuple[str | None, ...], config: Config
    ) -> Series:
        """A new series of ``dims`` with ``values`` (the set under its cap), its key's
        tuples shared with the other series of the set."""
        self._per_set[dims] = self._per_set.get(dims, 0) + 1
        # Decoded records bring their own dims tuple and strings: share them.
        shared = tuple(None if v is None else sys.intern(v) for v in values)
        if all(a is b for a, b in zip(shared, values, strict=True)):
            shared = values  # already shared (in-process, the rollup state's own tuple)
        sk = (self._dim_sets.setdefault(dims, dims), shared)
        series = self.series[sk] = self.new_series(sk, config)
        self.awake.append(sk)
        self._born.append(sk)
        return series

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

    def fold(
        self,
        dims: tuple[str, ...],
        partition: int,
        rows: list[Row],
        config: Config,
        closed_until: int | None = None,
    ) -> None:
        """Count series past the cap into their set's ``(other)`` series, exactly: each
        row's absolute share replaces the one it had (``folded``), and ``(other)`` takes
        the change, summed per hour and epoch (a flood folds thousands a step)."""
        dims = self._dim_sets.setdefault(dims, dims)
        folded, noticed = self.folded, self.cap_noticed
        moved: dict[tuple[int, int], list[int]] = {}  # (hour, epoch) -> [cost, calls, spent]
        # Rows come an hour after another: its shares, and its day's notice, looked up once.
        at_hour = noticed_day = None
        shares: dict[tuple[Any, ...], tuple[int, int]] = {}
        for values, hour, epoch, cost, calls in rows:
            if hour != at_hour:
                at_hour, shares = hour, folded.setdefault(hour, {})
            part = (dims, values, partition, epoch)
            old_cost, old_calls = shares.get(part, (0, 0))
            if cost == old_cost and calls == old_calls:
                continue
            shares[part] = (cost, calls)
            change = moved.get((hour, epoch))
            if change is None:
                change = moved[hour, epoch] = [0, 0, 0]
            change[0] += cost - old_cost
            change[1] += calls - old_calls
            if cost > 0:
                change[2] = 1
            day = hour // 86400 * 86400
            if day != noticed_day:
                noticed_day = day
                if (dims, day) not in noticed:
                    noticed.add((dims, day))
                    self.notices.append((dims, day, hour, config.limits.series_per_set))
        if not moved:
            return
        sk = (dims, (OTHER,) * len(dims))
        other = self.series.get(sk)
        if other is None:  # outside the cap: it is what the cap turns into
            other = self.series[sk] = self.new_series(sk, config)
            self.awake.append(sk)
            self._born.append(sk)
        for (hour, epoch), (cost, calls, spent) in moved.items():
            cost_then, calls_then = other.part(hour, partition, epoch)
            other.set_part(hour, partition, epoch, cost_then + cost, calls_then + calls)
            if other.state[ASLEEP_FROM]:
                self.woken(other, closed_until, config)
            if spent:
                other.spent_in(hour)
            self.dirty.add((sk, hour))

    def closing(self, hour: int) -> list[Series]:
        """The series the close of ``hour`` visits, each once: the awake ones, then the dozing
        ones whose silence may alert at ``hour`` (``Scoring.close`` asks them again). The
        close notes again those still awake after it (``awake``)."""
        get = self.series.get
        visit = dict.fromkeys(self.awake)
        self.awake = []
        for sk in self.due.pop(hour, ()):
            series = get(sk)
            if series is not None and series.state[ASLEEP_FROM] < 0:
                visit[sk] = None
        return [s for s in map(get, visit) if s is not None]  # bar those gone

    def quiet_until(self, series: Series, hour: int, config: Config) -> float:
        """The first hour from ``hour`` on whose silence one of the series' detectors may
        alert on, the silence going on (``Detector.quiet_until``); inf: none."""
        values = self._silent.get(series.slots)
        if values is None:
            values = self._silent[series.slots] = tuple(
                metric_value(config.detectors[i], 0, 0) for i in series.slots
            )
        due = math.inf
        for det, value in zip(series.bank.at(series.row), values, strict=True):
            due = min(due, det.quiet_until(hour, value))
            if due <= hour:
                break
        return due

    def doze(self, series: Series, hour: int, config: Config) -> bool:
        """Let an awake series silent in ``hour`` (and holding no other open hour) doze from
        it, unless one of its detectors may alert on its silence at once: True if it does.

        Its detectors learn nothing until it is settled (``settle``); a silent hour on which
        one of them may alert, before the series would have fallen asleep, is noted in
        ``due``, when the close visits it again."""
        due = self.quiet_until(series, hour, config)
        if due <= hour:
            return False
        series.asleep_from = -hour
        if due < self._asleep_at(series, hour):
            self.due.setdefault(int(due), []).append(series.key)
        return True

    def _asleep_at(self, series: Series, start: int) -> int:
        """The hour the close, fed hour by hour, would have put a series dozing since
        ``start`` to sleep: the first from ``start`` on, on its grid, ``sleep_after_s`` past
        its last spend."""
        late = series.state[LAST_SPEND] + self.sleep_after_s(series) - start
        return start + max(0, -(-late // HOUR)) * HOUR

    def settle(self, series: Series, until: int, config: Config) -> None:
        """A dozing series as hour-by-hour closes up to ``until`` leave it: its silent hours
        learned up to the hour it would have fallen asleep (then asleep from it), or up to
        ``until`` (then awake, its last hour learned silent)."""
        st = series.state
        start = -st[ASLEEP_FROM]
        asleep = self._asleep_at(series, start)
        stop = min(asleep, until)
        st[ASLEEP_FROM] = start
        series.wake(stop, config)  # learns [start, stop), and says awake
        if asleep < until:
            series.asleep_from = asleep
            series.closed = (asleep, 0, 0)
        else:
            series.closed = (until - HOUR, 0, 0)

    def woken(self, series: Series, closed_until: int | None, config: Config) -> None:
        """A sleeping or dozing series got an open hour (or is looked at): it is settled,
        and the closes visit it again."""
        if series.state[ASLEEP_FROM] < 0 and closed_until is not None:
            self.settle(series, closed_until, config)
        self.awake.append(series.key)

    def wake(self, series: Series, until: int, config: Config) -> None:
        """Teach a sleeping or dozing series its silent hours before ``until`` (``until``: the
        first hour not closed yet): it is awake, and the closes visit it."""
        self.woken(series, until, config)
        if series.state[ASLEEP_FROM]:
            series.wake(until, config)

    def settle_all(self, until: int | None, config: Config) -> None:
        """``settle`` every dozing series (what it would be fed hour by hour up to ``until``).

        A snapshot no longer needs it (it writes a dozing series as it is, ``redue``); it
        stays the reference a restored watch is compared with."""
        if until is None:
            return
        for series in self.series.values():
            if series.state[ASLEEP_FROM] < 0:
                self.settle(series, until, config)
                if not series.state[ASLEEP_FROM]:
                    self.awake.append(series.key)

    def redue(self, closed_until: int | None, config: Config) -> None:
        """After a restore: note in ``due`` each dozing series' next hour whose silence may
        alert, as ``doze`` noted it. Its detectors learned nothing since it dozed, so the
        hour is the same; those before ``closed_until`` were visited already (popped).

        Why a snapshot keeps dozing series dozing: settling them all at every checkpoint
        taught each a run of silent hours and had the next close visit them all again,
        the work dozing saves (figures: docs/benchmarks.md, 2026-12-07)."""
        if closed_until is None:
            return
        for series in self.series.values():
            start = -series.state[ASLEEP_FROM]
            if start <= 0:
                continue  # awake (0) or asleep (start < 0)
            due = self.quiet_until(series, start, config)
            if closed_until <= due < self._asleep_at(series, start):
                self.due.setdefault(int(due), []).append(series.key)

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

    def peekers(self, series: Series) -> tuple[tuple[int, int], ...]:
        """(position, config entry) of the series' detectors an early look asks: not those
        comparing whole days (``wow``), whose close will do (``_worth_peeking``'s first rule,
        asked once per list of entries, not per series and look)."""
        found = self._peekers.get(series.slots)
        if found is None:
            dets = series.bank.view(series.row)
            found = self._peekers[series.slots] = tuple(
                (p, i)
                for p, (i, det) in enumerate(zip(series.slots, dets, strict=True))
                if getattr(det, "window_s", HOUR) <= HOUR
            )
        return found

    def prune(self, closed_until: int) -> None:
        """Forget series silent for ``FORGET_S`` and folded shares of closed hours."""
        horizon = closed_until - FORGET_S
        gone = self._expired(horizon)
        for k in gone:
            del self.series[k]
            if OTHER not in k[1]:
                self._per_set[k[0]] -= 1
        for hour in [h for h in self.folded if h < closed_until]:
            del self.folded[hour]  # closed: a correction to it reaches budgets only
        self.cap_noticed = {n for n in self.cap_noticed if n[1] >= horizon}

    def _expired(self, horizon: int) -> list[SeriesKey]:
        """The series whose last spend is older than ``horizon`` and hold no open hour: of
        those noted in ``_expiry`` at an hour before it (the others are noted again at their
        last spend, or, holding an open hour, at the next look). Their order only decides
        which bank rows new series reuse, which no output shows."""
        expiry = self._expiry
        get = self.series.get
        if expiry is None:  # a new or rebuilt book: note every series
            expiry, self._born = {}, list(self.series)
        for sk in self._born:
            s = get(sk)
            if s is not None:
                expiry.setdefault(s.state[LAST_SPEND], []).append(sk)
        self._born = []
        self._expiry = expiry
        gone: dict[SeriesKey, None] = {}
        for hour in [h for h in expiry if h < horizon]:
            for sk in expiry.pop(hour):
                s = get(sk)
                if s is None or sk in gone:
                    continue  # gone already (or noted twice)
                st = s.state
                last = st[LAST_SPEND]
                if last >= horizon:  # spent since: look again when that is old
                    expiry.setdefault(last, []).append(sk)
                elif len(st) == HEAD:  # silent, no open hour
                    gone[sk] = None
                else:
                    expiry.setdefault(horizon, []).append(sk)  # at the next look
        return list(gone)

    def rebuilt(self) -> None:
        """Recount what is derived from the series (after a restore or a reconfigure)."""
        per_set: dict[tuple[str, ...], int] = {}
        for dims, values in self.series:
            self._dim_sets.setdefault(dims, dims)
            if OTHER not in values:
                per_set[dims] = per_set.get(dims, 0) + 1
        self._per_set = per_set
        self._sleep_after = {}
        self._peekers = {}
        self._banks = {}
        self._silent = {}
        self._expiry = None
        # ``due`` stays: its entries are checked as they come due.
        self.awake = [
            sk for sk, s in self.series.items() if not s.state[ASLEEP_FROM] or len(s.state) > HEAD
        ]


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
