"""The detector stage's logic: rollup records in, alerts out. Pure: no Kafka, no clock.

``SpendWatch`` is what ``spendbrake worker`` runs on ``spend.rollups`` and what
``spendbrake replay`` runs in-process, so both produce the same alerts from the same
records. It wires small parts, each with one job:

- ``EventClock`` (``_clock``): the event-time watermark from the input partitions' marks,
  the hours closed behind it, the next early look;
- ``SeriesBook`` (``_book``): per series, the hour being filled, summed across input
  partitions and late epochs (records are ABSOLUTE and keyed, so a re-sent record
  replaces, never adds), sleeping series, the cap per dimension set and its ``(other)``;
  each ``Series`` (``_series``) one int64 array and a row of its detectors' ``Bank``
  (``_bank``);
- ``Scoring`` (``_scoring``): each hour fed to the series' detectors once the watermark
  passes its end plus the allowed lateness (a silent hour is fed as 0, so gaps look like
  gaps), and every ``peek_s`` of event time an early look at the hours still filling;
- ``KeyDirectory`` (``_keys``): each key's team, feature... from the first spend seen of it;
- ``BudgetBook`` (``_budgets``): absolute hourly and per-minute spend of each budget's
  scope, and what crossed;
- ``IncidentBook`` (``_incidents``): anomalies found together grouped into one alert per
  incident.

Policies are applied afterwards (``actions.apply_policies``), the same way live and in
replay, to each alert with the keys in its scope that ``advance`` hands beside it;
whether a key may be paused is the config's ``keys`` section's to say.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from spendbrake.detectors._book import FORGET_S, SeriesBook
from spendbrake.detectors._budgets import BudgetBook
from spendbrake.detectors._clock import EventClock
from spendbrake.detectors._incidents import Candidate, IncidentBook, group
from spendbrake.detectors._keys import KeyDirectory
from spendbrake.detectors._legacy import load_pickled_watch
from spendbrake.detectors._reconfigure import built_from, outdated, remap_detectors
from spendbrake.detectors._scoring import Scoring
from spendbrake.detectors._series import Series, SeriesKey
from spendbrake.detectors._watch_state import dump_watch, load_watch
from spendbrake.schemas import KEY_DIMENSIONS, Alert, Config, KeyInfo, RollupColumns, RollupRecord

__all__ = ["SpendWatch"]

HOUR = 3600
MINUTE = 60
#: A backlog looks at budgets this long before a closed hour's end: at its last instant,
#: in the period the hour belongs to, with its spend and none of the next hour's.
HOUR_END_S = 0.001
_KEY_DIMS = sorted(KEY_DIMENSIONS)


class SpendWatch:
    """Turns a stream of rollup records into alert records.

    Parameters
    ----------
    config
        Detectors, budgets, dimensions and policies (policies are applied by the caller).
    lateness_s
        How long after its end an hour may still change before its detectors learn it
        (the streamer's allowed lateness).
    peek_s
        Event-time interval between early looks at the hours still filling.
    quiet_s
        An incident with no anomaly for this long is closed; a new anomaly is a new incident.
    cpc_min_usd
        Dollar impact a cost-per-call anomaly needs (excess per call x calls in the hour).
    partitions
        Input partitions of the rollups' source. The watermark is then the slowest
        partition's, from ``set_mark`` (a partition replayed from an older snapshot must not
        close hours the others are still filling); until every partition has reported,
        nothing closes. None: the end of the latest minute record seen (one ordered source
        of records, as tests feed them; replay gives marks, as the live stage does).
    """

    #: A record's metrics the watch reads: its first two, cost and calls (``SeriesBook.hours``,
    #: ``BudgetBook.parts``). Replay's rollup child sends it no more (a block's other six
    #: were most of what the watch's process decoded).
    METRICS_READ: ClassVar[int] = 2

    def __init__(
        self,
        config: Config,
        lateness_s: float = 600.0,
        peek_s: float = 300.0,
        quiet_s: float = 6 * 3600.0,
        cpc_min_usd: float = 5.0,
        partitions: int | None = None,
    ) -> None:
        self.config = config
        self.clock = EventClock(lateness_s, peek_s, partitions)
        self.book = SeriesBook()
        self.directory = KeyDirectory()
        self.budgets = BudgetBook(config.budgets)
        self.incidents = IncidentBook(quiet_s, config.confirm_after)
        self.scoring = Scoring(self.book, self.directory.known, cpc_min_usd)
        self._detect_dims = {tuple(d) for d in config.dimensions}
        #: dims -> (key directory?, detected?, budget indices): a cache of ``_role``
        self._roles: dict[tuple[str, ...], tuple[bool, bool, list[int]]] = {}

    # -- what callers read -------------------------------------------------

    @property
    def now(self) -> float:
        """Event-time watermark: the slowest input partition's mark."""
        return self.clock.now

    @property
    def marks(self) -> dict[int, float]:
        """Input partition -> its latest watermark mark."""
        return self.clock.marks

    @property
    def idle(self) -> set[int]:
        """Input partitions declared idle (``set_idle``)."""
        return self.clock.idle

    @property
    def partitions(self) -> int | None:
        return self.clock.partitions

    @partitions.setter
    def partitions(self, count: int | None) -> None:
        self.clock.partitions = count

    @property
    def lateness_s(self) -> float:
        return self.clock.lateness_s

    @property
    def peek_s(self) -> float:
        return self.clock.peek_s

    @property
    def closed_until(self) -> int | None:
        """Start of the first hour the detectors have not learned yet."""
        return self.clock.closed_until

    @property
    def behind(self) -> bool:
        """An hour the watermark has passed is not closed yet."""
        return self.clock.behind

    @property
    def judged_until(self) -> float:
        """Event time up to which every hour is judged: the watermark, but while a backlog's
        hours are being closed (``behind``), the start of the first one not closed yet."""
        closed = self.clock.closed_until
        return float(closed) if self.clock.behind and closed is not None else self.clock.now

    @property
    def series(self) -> dict[SeriesKey, Series]:
        """The watched series by (dims, values)."""
        return self.book.series

    @property
    def keys(self) -> dict[str, KeyInfo]:
        """The key directory: known keys by ``api_key``."""
        return self.directory.keys

    def keys_in(self, scope: dict[str, str | None], since: float) -> list[KeyInfo]:
        """Known keys inside ``scope`` that spent since ``since`` (sorted by key)."""
        return self.directory.keys_in(scope, since)

    def folded_series(self) -> int:
        """Series counted in an ``(other)`` series in the open hours (a metric)."""
        return self.book.folded_series()

    # -- input -------------------------------------------------------------

    def observe(self, records: Iterable[RollupRecord]) -> None:
        """Take rollup records in (any order within a batch; last write per key wins)."""
        self.observe_columns(RollupColumns.runs(records))

    def observe_columns(self, blocks: Iterable[RollupColumns]) -> None:
        """``observe`` for records as columns, a block per set, window size and partition
        (replay's ``StepFold`` hands them over so): a block's set is looked up once."""
        for block in blocks:
            if block.window_s == MINUTE:
                self._minutes(block)
            elif block.window_s == HOUR:
                self._hours(block)
        self.clock.advance()

    def _minutes(self, block: RollupColumns) -> None:
        clock = self.clock
        if clock.partitions is None:  # the watermark comes with the records only
            on_time = [s for s, epoch in zip(block.starts, block.epochs, strict=True) if not epoch]
            end = max(on_time) + MINUTE if on_time else -math.inf
            if end > clock.marks.get(block.partition, -math.inf):
                clock.marks[block.partition] = float(end)
                clock.idle.discard(block.partition)
        # Most minute records are of sets no budget reads: skip them before any work.
        role = self._roles.get(block.dims)
        if role is None or role[2]:
            self.budgets.parts(block)

    def _hours(self, block: RollupColumns) -> None:
        dims = tuple(block.dims)
        is_directory, detected, budgets = self._role(dims)
        if is_directory:
            record = self.directory.record
            for values, start in zip(block.values, block.starts, strict=True):
                record(dims, values, start)
        if budgets:
            self.budgets.parts(block)
        if detected:
            self.book.hours(dims, block, self.clock.closed_until, self.config)

    def set_mark(self, partition: int, watermark: float) -> None:
        """Input ``partition`` has sent every window up to event time ``watermark``."""
        self.clock.mark(partition, watermark)
        self.clock.advance()

    def set_idle(self, partition: int) -> None:
        """A partition with no traffic stops holding the watermark until it reports again."""
        self.clock.idle.add(partition)
        self.clock.advance()

    def windows_read(self, dimensions: Iterable[Iterable[str]]) -> list[tuple[int, ...]]:
        """Window sizes the watch reads of each dimension set (``()``: none at all).

        Hours of detected, key-directory and budget sets; minutes of budget sets only (burn
        rate). Replay rolls up just these; everything else would be skipped in ``observe``.
        """
        out = []
        for dims in dimensions:
            is_directory, detected, budgets = self._role(tuple(dims))
            if budgets:
                out.append((MINUTE, HOUR))
            elif is_directory or detected:
                out.append((HOUR,))
            else:
                out.append(())
        return out

    def minutes_read(
        self, dimensions: Iterable[Iterable[str]]
    ) -> list[frozenset[tuple[str | None, ...]] | None]:
        """Per dimension set, the series whose minutes the watch reads: its budgets' scopes
        (the values in the set's field order); None for a set whose minutes it never reads."""
        return [self.config.budget_minutes(tuple(dims)) for dims in dimensions]

    def _role(self, dims: tuple[str, ...]) -> tuple[bool, bool, list[int]]:
        """(key directory?, detected?, budget indices) of a dimension set, cached."""
        role = self._roles.get(dims)
        if role is None:
            role = self._roles[dims] = (
                sorted(dims) == _KEY_DIMS,
                dims in self._detect_dims,
                self.budgets.scoped_on(dims),
            )
        return role

    # -- evaluation --------------------------------------------------------

    def advance(self, max_hours: int | None = None) -> list[tuple[Alert, list[KeyInfo]]]:
        """Close the hours the watermark has passed, peek at open ones, check budgets.

        Returns the alerts raised, each with the keys it is about (those in its scope that
        spent in its window; for a budget's resume, those its hard stop paused; none for an
        operator notice): what the policy step reads, never written.

        ``max_hours`` bounds the hours closed in one call (a backlog can put weeks behind
        the watermark at once); while ``behind`` is true, call again. Open hours are only
        peeked at once every passed hour is closed.
        """
        clock = self.clock
        if clock.now == -math.inf:
            return []
        candidates: list[Candidate] = []
        if clock.closed_until is None:
            # Start at the earliest hour any series holds: with a backlog, the watermark is
            # already days past the first hours when every partition has reported.
            held = [h for series in self.book.series.values() for h in series.hours()]
            clock.closed_until = min(held, default=int(clock.now // HOUR) * HOUR)
        closed = 0
        alerts: list[tuple[Alert, list[KeyInfo]]] = []
        while clock.behind and (max_hours is None or closed < max_hours):
            found = self.scoring.close(clock.closed_until, self.config)
            clock.closed_until += HOUR
            closed += 1
            self._prune(clock.closed_until)
            if clock.behind:
                # A backlog: each hour is judged, and budgets looked at, as replay and a
                # live stage that kept up would have when the watermark passed it, so an
                # anomaly or a threshold crossed days ago is dated (and a budget's period
                # judged) then, not at today's watermark.
                at = clock.closed_until + clock.lateness_s
                alerts.extend(self._anomaly_alerts(found, at))
                # Budgets at the hour's last instant: at its end they counted the next
                # hour too (read whole already), and a period's last hour fell in the
                # next period, its thresholds taken for late ones and its stop not applied.
                alerts.extend(self._check_budgets(clock.closed_until - HOUR_END_S, hourly=True))
            else:
                candidates.extend(found)
                # Budgets are looked at as each hour closes, as in a backlog: while
                # partitions are read apart they wait with the early looks (below); and a
                # stage with no state read a backlog across a period's end closing only
                # its last hours here, so the earlier period was never judged (its hard
                # stop at 150 % never sent). A tracker that looked past the hour already
                # (a stage that kept up) finds nothing new.
                at = clock.closed_until - HOUR_END_S
                alerts.extend(self._check_budgets(at, hourly=True))
        if self.book.notices:
            alerts.extend((notice, []) for notice in self.book.take_notices())
        if not clock.behind:
            if not clock.apart and clock.peek_due():
                candidates.extend(
                    self.scoring.peek(
                        clock.now,
                        clock.closed_until,
                        self.config,
                        clock.looks_from,
                        clock.peek_s,
                        clock.seen,
                    )
                )
            alerts.extend(self._anomaly_alerts(candidates, clock.now))
            if not clock.apart:
                # Apart, the open hour holds the faster partitions' spend past the
                # watermark: a threshold fired "by 16:02" on spend of 16:50, and a
                # projection added the rest of the hour on top of it.
                alerts.extend(self._check_budgets(clock.now))
        return alerts

    def hold(self, alert: Alert) -> None:
        """The policy step held a pause of ``alert``'s keys (``held_keys``) until its incident
        has lasted: state it again once it has, still anomalous (``IncidentBook.hold``)."""
        if alert.held_keys:
            self.incidents.hold(alert.id)

    def _anomaly_alerts(
        self, candidates: list[Candidate], at: float
    ) -> list[tuple[Alert, list[KeyInfo]]]:
        """One alert per new or escalated incident, dated ``at`` (event time)."""
        closed_until, config = self.clock.closed_until, self.config
        roots = [self.scoring.narrowest(c, closed_until, config) for c in group(candidates)]
        return self.incidents.alerts(roots, at, self.directory.keys_in)

    def _check_budgets(self, at: float, hourly: bool = False) -> list[tuple[Alert, list[KeyInfo]]]:
        """Budget alerts due at ``at``; ``hourly``: an hour judged at its close, whose burn
        rates are looked at every early-look step first, as the live stage does."""
        step = self.clock.peek_s if hourly else None
        return self.budgets.check(at, self.clock.now, self.directory, self.config.keys, step)

    def _prune(self, closed_until: int) -> None:
        horizon = closed_until - FORGET_S
        self.book.prune(closed_until)
        self.directory.prune(horizon)
        self.budgets.prune(horizon)

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything learned, as bytes: plain versioned data (see ``_watch_state``).

        The config parts the state was built from go along, so a restore under a changed
        config maps detectors and budgets the way a live reload does.
        """
        # A dozing series is written as it is (a negative asleep-from hour: the hour it
        # dozed from), not settled: a restore brings it back dozing (``SeriesBook.redue``)
        # and settling it then gives the same state. Until 2026-12-07 every snapshot
        # settled them all, and the next close visited them all again.
        return dump_watch(self)

    def restore(self, data: bytes) -> list[str]:
        """Load a ``snapshot()``; returns what a config change since it was taken restarted.

        Raises ``ValueError`` (one line: what is wrong, where) for bytes that are not such a
        snapshot; the watch is then unchanged.
        """
        return self._follow(load_watch(self, data))

    def restore_legacy(self, data: bytes) -> list[str]:
        """Load a pickled snapshot of an earlier release (until 2026-12-05), once: save it
        again with ``snapshot()``. Our own file only: a pickle runs code when read."""
        return self._follow(load_pickled_watch(self, data))

    def _follow(self, built: dict[str, Any] | None) -> list[str]:
        """After a restore: follow the config in force from the one the state was built
        under (``built``; None: the same), as a live reload does."""
        self._roles = {}
        if built is None:
            return []
        self._detect_dims = {tuple(d) for d in built["dimensions"]}
        if built == built_from(self.config) and not outdated(self.book.series, self.config):
            self.book.redue(self.clock.closed_until, self.config)
            return []
        current = self.config
        self.config = current.model_copy(update=built)
        return self.reconfigure(current)

    def reconfigure(self, config: Config) -> list[str]:
        """Switch to ``config`` keeping every baseline and budget state that still applies.

        Detectors are matched by (kind, metric, scope) and retuned in place
        (``detectors.retune``); budgets by name, keeping their spend and the thresholds
        fired this period (their spend under a new period or time zone; a new scope counts
        afresh). Everything is built first and swapped in at the end, so a failure leaves
        the old state whole.
        Returns one line per thing that had to start afresh (for the log).
        """
        closed_until = self.clock.closed_until
        if closed_until is not None:
            for series in self.book.series.values():
                if series.asleep_from:  # its silent hours are learned by the detectors it had
                    self.book.wake(series, closed_until, self.config)
        series_detectors, notes = remap_detectors(self.book.series, self.config.detectors, config)
        budgets, budget_notes = self.budgets.remapped(config)
        for sk in [sk for sk in self.book.series if sk not in series_detectors]:
            del self.book.series[sk]
        for sk, detectors in series_detectors.items():
            self.book.series[sk].detectors = detectors
        self.book.rebuilt()
        self.budgets = budgets
        self.incidents.confirm_after = config.confirm_after
        self._detect_dims = {tuple(d) for d in config.dimensions}
        self._roles = {}
        self.config = config
        return notes + budget_notes
