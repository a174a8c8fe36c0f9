"""The detector stage's logic: rollup records in, alerts out. Pure: no Kafka, no clock.

``SpendWatch`` is what ``spendbrake worker`` runs on ``spend.rollups`` and what
``spendbrake replay`` runs in-process, so both produce the same alerts from the same
records. It keeps, per series:

- the hour being filled, summed across input partitions and late epochs (records are
  ABSOLUTE and keyed, so a re-sent record replaces, never adds);
- its detectors, fed each hour once the event-time watermark passes the hour's end plus
  the allowed lateness (a silent hour is fed as 0, so gaps look like gaps);
- an early look: every ``peek_s`` of event time, hours still filling are scored without
  learning (spend only grows, so an hour that already looks like a runaway will close as
  one), which turns a runaway into an alert minutes in, not an hour later.

Budgets get absolute hourly and per-minute spend of their scope and say what crossed.
Anomalies found together are grouped into one alert per incident (``_incidents``).
Policies are applied afterwards (``actions.apply_policies``), the same way live and in replay.
The key directory (``keys``) records each key's team, feature... from the first spend seen of
it, for scoping; whether a key may be paused is the config's ``keys`` section's to say.
"""

from __future__ import annotations

import math
import pickle
import sys
from array import array
from collections.abc import Iterable
from typing import Any, Protocol

from spendbrake.detectors._base import Detector, Verdict, make_detector, usd
from spendbrake.detectors._budget import BudgetTracker, BudgetVerdict
from spendbrake.detectors._incidents import (
    Candidate,
    IncidentBook,
    Scope,
    group,
    inside,
    narrowed,
    rank,
    scope_text,
)
from spendbrake.detectors._retune import retune
from spendbrake.schemas import (
    KEY_DIMENSIONS,
    Alert,
    Config,
    DetectorConfig,
    KeyInfo,
    unpickle_state,
)

__all__ = ["RollupLike", "SpendWatch"]

HOUR = 3600
MINUTE = 60
NUSD = 1_000_000_000
#: A series silent this long is forgotten (its detectors too).
FORGET_S = 15 * 86400
_KEY_DIMS = tuple(KEY_DIMENSIONS)
#: (input partition, late epoch): the parts of one window that readers sum.
Part = tuple[int, int]
#: The value of every field of the series that holds a dimension set's overflow.
OTHER = "(other)"


class RollupLike(Protocol):
    """The fields of ``streamer.RollupRecord`` the watch reads."""

    dims: tuple[str, ...]
    values: tuple[str | None, ...]
    window_s: int
    window_start: int
    partition: int
    epoch: int
    metrics: tuple[int, ...]


#: Values per open part in ``_Series.parts``.
_ROW = 5
#: One tuple per distinct list of config indices, shared by every series it applies to.
_SLOTS: dict[tuple[int, ...], tuple[int, ...]] = {}


class _Series:
    """One rolled-up series: its hours still open and its detectors.

    There is one per key, team, feature..., so it is kept small: its scope is read off
    the series key, the config indices of its detectors are a tuple shared with every
    series that has the same ones, and the watch, not the series, knows which open hours
    changed since they were last scored.
    """

    __slots__ = ("asleep_from", "closed", "dets", "key", "last_spend_hour", "parts", "slots")

    def __init__(
        self,
        key: tuple[tuple[str, ...], tuple[str | None, ...]],
        detectors: Iterable[tuple[int, Detector]] = (),
    ) -> None:
        #: (dims, values): the watch's key for this series
        self.key = key
        self.detectors = list(detectors)
        #: The hours still open, as rows of (hour start, partition, epoch, cost_nusd, calls)
        #: one after another: a row is 40 bytes where a dict entry, its key and value tuples
        #: and their ints were about 180. A total past int64 turns it into a list.
        self.parts: array[int] | list[int] = array("q")
        self.last_spend_hour = 0
        #: (hour start, cost_nusd, calls) of the hour its detectors learned last
        self.closed: tuple[int, int, int] = (0, 0, 0)
        #: The first silent hour its detectors have not learned yet (0: none): see ``_close``.
        self.asleep_from = 0

    @property
    def scope(self) -> Scope:
        return tuple(zip(*self.key, strict=True))

    @property
    def detectors(self) -> list[tuple[int, Detector]]:
        """(config index, detector) of each detector that applies to this series."""
        return list(zip(self.slots, self.dets, strict=True))

    @detectors.setter
    def detectors(self, pairs: list[tuple[int, Detector]]) -> None:
        slots = tuple(i for i, _ in pairs)
        self.slots = _SLOTS.setdefault(slots, slots)
        self.dets = tuple(d for _, d in pairs)

    def set_part(self, hour: int, partition: int, epoch: int, cost: int, calls: int) -> bool:
        """Set one partition's and epoch's absolute (cost_nusd, calls) of ``hour``; False if
        they were already so (a re-sent record: nothing to score)."""
        parts = self.parts
        for i in range(0, len(parts), _ROW):
            if parts[i] == hour and parts[i + 1] == partition and parts[i + 2] == epoch:
                if parts[i + 3] == cost and parts[i + 4] == calls:
                    return False
                self._write(i + 3, (cost, calls))
                return True
        self._write(len(parts), (hour, partition, epoch, cost, calls))
        return True

    def _write(self, at: int, values: tuple[int, ...]) -> None:
        parts = self.parts
        if type(parts) is list:
            parts[at : at + len(values)] = values
            return
        try:
            parts[at : at + len(values)] = array("q", values)
        except OverflowError:
            self.parts = [*parts]
            self.parts[at : at + len(values)] = values

    def part_items(self) -> list[tuple[tuple[int, int, int], tuple[int, int]]]:
        """((hour, partition, epoch), (cost_nusd, calls)) of every part."""
        p = self.parts
        return [((p[i], p[i + 1], p[i + 2]), (p[i + 3], p[i + 4])) for i in range(0, len(p), _ROW)]

    def part(self, hour: int, partition: int, epoch: int) -> tuple[int, int]:
        """The (cost_nusd, calls) set for one partition and epoch of ``hour``; zeros if none."""
        parts = self.parts
        for i in range(0, len(parts), _ROW):
            if parts[i] == hour and parts[i + 1] == partition and parts[i + 2] == epoch:
                return parts[i + 3], parts[i + 4]
        return 0, 0

    def hours(self) -> list[int]:
        """The open hours, earliest first."""
        return sorted(set(self.parts[::_ROW]))

    def total(self, hour: int) -> tuple[int, int]:
        """(cost_nusd, calls) of ``hour`` summed over its partitions and epochs."""
        parts = self.parts
        cost = calls = 0
        for i in range(0, len(parts), _ROW):
            if parts[i] == hour:
                cost += parts[i + 3]
                calls += parts[i + 4]
        return cost, calls

    def pop_hour(self, hour: int) -> tuple[int, int]:
        """``total(hour)``, forgetting the hour."""
        out = self.total(hour)
        parts = self.parts
        kept = [
            x for i in range(0, len(parts), _ROW) if parts[i] != hour for x in parts[i : i + _ROW]
        ]
        if len(kept) != len(parts):
            self.parts = array("q", kept) if type(parts) is array else kept
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: Any) -> None:
        """This layout, or an older one: a dataclass with ``scope``, (index, detector)
        pairs and ``peeked`` (until 2026-12-04), and before that a dict per hour."""
        slots = dict(state[1] if isinstance(state, tuple) else state)
        self.asleep_from = 0  # until 2026-12-05 every series learned every hour as it closed
        if "hours" in slots:
            hours = slots.pop("hours")
            slots["parts"] = {(h, p, e): v for h, by in hours.items() for (p, e), v in by.items()}
        if isinstance(slots.get("parts"), dict):  # until 2026-12-04: a dict of parts
            old = slots.pop("parts")
            self.parts = array("q")
            for (h, p, e), (cost, calls) in sorted(old.items()):
                self.set_part(h, p, e, cost, calls)
        if "scope" in slots:
            scope = slots.pop("scope")
            slots["key"] = (tuple(n for n, _ in scope), tuple(v for _, v in scope))
            slots.pop("peeked", None)
            self.detectors = slots.pop("detectors")
        if "slots" in slots:
            slots["slots"] = _SLOTS.setdefault(slots["slots"], slots["slots"])
        for name, value in slots.items():
            setattr(self, name, value)


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
        nothing closes. None: the latest minute record seen (one ordered source, as in
        replay).
    """

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
        self.lateness_s = lateness_s
        self.peek_s = peek_s
        self.cpc_min_usd = cpc_min_usd
        self.detect_dims = {tuple(d) for d in config.dimensions}
        self.budgets = [BudgetTracker.from_config(b) for b in config.budgets]
        self._budget_scopes: dict[tuple[str, ...], list[int]] = {}
        for i, b in enumerate(config.budgets):
            dims = tuple(sorted(b.scope))
            self._budget_scopes.setdefault(dims, []).append(i)
        self.series: dict[tuple[tuple[str, ...], tuple[str | None, ...]], _Series] = {}
        #: budget index -> hour/minute start -> (partition, epoch) -> cost_nusd
        self._budget_hours: list[dict[int, dict[tuple[int, int], int]]] = [{} for _ in self.budgets]
        self._budget_minutes: list[dict[int, dict[tuple[int, int], int]]] = [
            {} for _ in self.budgets
        ]
        self._budget_paused: list[list[str]] = [[] for _ in self.budgets]
        self._budget_seq: dict[str, int] = {}
        #: dims -> scope values -> budget indices (derived from the config; not snapshotted)
        self._budget_match: dict[tuple[str, ...], dict[tuple[str | None, ...], list[int]]] = {}
        self.keys: dict[str, KeyInfo] = {}
        self._key_hour: dict[str, int] = {}
        self.incidents = IncidentBook(quiet_s)
        self._roles: dict[tuple[str, ...], tuple[bool, bool, list[int]]] = {}
        #: (series key, hour start) of the open hours changed since the last early look.
        self._dirty: set[tuple[tuple[tuple[str, ...], tuple[str | None, ...]], int]] = set()
        #: One tuple per dimension set, shared by the keys of its series.
        self._dim_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        #: Event-time watermark: the slowest input partition's latest minute (see ``observe``).
        self.now = -math.inf
        self.partitions = partitions
        #: input partition -> end of the latest minute it reported (on-time records only)
        self.marks: dict[int, float] = {}
        #: partitions the caller declared idle: they do not hold the watermark back
        self.idle: set[int] = set()
        self.closed_until: int | None = None
        self._next_peek = -math.inf
        #: Series past ``limits.series_per_set``, folded into their set's ``(other)`` series:
        #: hour -> (dims, values, partition, epoch) -> the absolute (cost_nusd, calls) they
        #: added, so a re-sent record replaces its share instead of adding it again.
        self._folded: dict[int, dict[tuple[Any, ...], tuple[int, int]]] = {}
        #: (dims, UTC day) of the overflows already reported, and the reports to send.
        self._cap_noticed: set[tuple[tuple[str, ...], int]] = set()
        self._notices: list[Alert] = []
        #: dims -> series watched (derived from ``series``; not snapshotted)
        self._per_set: dict[tuple[str, ...], int] = {}
        #: a series' detector slots -> seconds of silence after which it sleeps (derived)
        self._sleep_after: dict[tuple[int, ...], int] = {}

    # -- input -------------------------------------------------------------

    def observe(self, records: Iterable[RollupLike]) -> None:
        """Take rollup records in (any order within a batch; last write per key wins)."""
        marks = self.marks
        # With ``partitions`` given, the watermark comes from ``set_mark`` only.
        own = self.partitions is None
        roles = self._roles
        for r in records:
            if r.window_s == MINUTE:
                if own and r.epoch == 0:
                    end = r.window_start + MINUTE
                    if end > marks.get(r.partition, -math.inf):
                        marks[r.partition] = float(end)
                        self.idle.discard(r.partition)
                # Most minute records are of sets no budget reads: skip them before any work.
                role = roles.get(r.dims)
                if role is None or role[2]:
                    self._budget_part(r, self._budget_minutes)
            elif r.window_s == HOUR:
                self._hour(r)
        self._watermark()

    def set_mark(self, partition: int, watermark: float) -> None:
        """Input ``partition`` has sent every window up to event time ``watermark``."""
        if watermark > self.marks.get(partition, -math.inf):
            self.marks[partition] = float(watermark)
            self.idle.discard(partition)
        self._watermark()

    def set_idle(self, partition: int) -> None:
        """A partition with no traffic stops holding the watermark until it reports again."""
        self.idle.add(partition)
        self._watermark()

    def _watermark(self) -> None:
        marks = self.marks
        if self.partitions is None:
            held = list(marks.values())
        else:
            active = [p for p in range(self.partitions) if p not in self.idle]
            if any(p not in marks for p in active):
                return  # a partition has not reported yet: it may hold the earliest data
            held = [marks[p] for p in active]
        if held:
            self.now = max(self.now, min(held) if self.partitions is not None else max(held))

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

    def _role(self, dims: tuple[str, ...]) -> tuple[bool, bool, list[int]]:
        """(key directory?, detected?, budget indices) of a dimension set, cached."""
        role = self._roles.get(dims)
        if role is None:
            role = self._roles[dims] = (
                sorted(dims) == sorted(_KEY_DIMS),
                dims in self.detect_dims,
                self._budget_scopes.get(tuple(sorted(dims)), []),
            )
        return role

    def _hour(self, r: RollupLike) -> None:
        dims = tuple(r.dims)
        is_directory, detected, budgets = self._role(dims)
        if is_directory:
            self._directory(dims, r)
        if budgets:
            self._budget_part(r, self._budget_hours)
        if not detected or None in r.values:
            # Spend with no team (or customer...) is counted and budgeted, but a "no
            # customer" series is mostly a copy of the global one: no detectors on it.
            return
        if self.closed_until is not None and r.window_start < self.closed_until:
            return  # a correction to an hour the detectors already learned: budgets only
        sk = (dims, tuple(r.values))
        series = self.series.get(sk)
        if series is None and self._per_set.get(dims, 0) >= self.config.limits.series_per_set:
            self._fold(r)
            return
        if OTHER in sk[1]:
            self._fold(r)  # a caller's own "(other)": counted with ours, never overwriting it
            return
        if series is None:
            self._per_set[dims] = self._per_set.get(dims, 0) + 1
            # Decoded records bring their own dims tuple and strings: share them.
            values = tuple(None if v is None else sys.intern(v) for v in sk[1])
            if all(a is b for a, b in zip(values, sk[1], strict=True)):
                values = sk[1]  # already shared (in-process, the rollup state's own tuple)
            sk = (self._dim_sets.setdefault(dims, dims), values)
            series = self.series[sk] = self._new_series(sk)
        if not series.set_part(r.window_start, r.partition, r.epoch, r.metrics[0], r.metrics[1]):
            return  # the same absolute values again (a re-sent record): nothing to score
        if r.metrics[0] > 0:
            series.last_spend_hour = max(series.last_spend_hour, r.window_start)
        self._dirty.add((sk, r.window_start))

    def _fold(self, r: RollupLike) -> None:
        """Count a series past the cap into its set's ``(other)`` series, exactly."""
        dims = self._dim_sets.setdefault(tuple(r.dims), tuple(r.dims))
        hour = r.window_start
        shares = self._folded.setdefault(hour, {})
        part = (dims, tuple(r.values), r.partition, r.epoch)
        new = (r.metrics[0], r.metrics[1])
        old = shares.get(part, (0, 0))
        if new == old:
            return
        shares[part] = new
        sk = (dims, (OTHER,) * len(dims))
        other = self.series.get(sk)
        if other is None:  # outside the cap: it is what the cap turns into
            other = self.series[sk] = self._new_series(sk)
        cost, calls = other.part(hour, r.partition, r.epoch)
        other.set_part(hour, r.partition, r.epoch, cost + new[0] - old[0], calls + new[1] - old[1])
        if new[0] > 0:
            other.last_spend_hour = max(other.last_spend_hour, hour)
        self._dirty.add((sk, hour))
        day = hour // 86400 * 86400
        if (dims, day) not in self._cap_noticed:
            self._cap_noticed.add((dims, day))
            self._notices.append(self._cap_notice(dims, day, hour))

    def _cap_notice(self, dims: tuple[str, ...], day: int, hour: int) -> Alert:
        """The one operator alert a day for a dimension set past its series cap."""
        cap = self.config.limits.series_per_set
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
            window_start=float(day),
            window_end=float(day + 86400),
            detected_at=float(hour),
            observed_usd=0.0,
            expected_usd=None,
            severity="warning",
            reason=message,
            id=f"series-cap/{'+'.join(dims)}/{int(day)}",
        )

    def folded_series(self) -> int:
        """Series counted in an ``(other)`` series in the open hours (a metric)."""
        return len({(d, v) for shares in self._folded.values() for d, v, _, _ in shares})

    def _directory(self, dims: tuple[str, ...], r: RollupLike) -> None:
        attrs = dict(zip(dims, r.values, strict=True))
        key = attrs.get("api_key")
        if key is None:
            return
        if key not in self.keys:
            self.keys[key] = KeyInfo(
                api_key=key,
                team=attrs.get("team"),
                feature=attrs.get("feature"),
                environment=attrs.get("environment"),
                workload=attrs.get("workload"),
            )
        self._key_hour[key] = max(self._key_hour.get(key, 0), r.window_start)

    def _budget_part(self, r: RollupLike, store: list[dict[int, dict[Part, int]]]) -> None:
        dims = tuple(r.dims)
        by_values = self._budget_match.get(dims)
        if by_values is None:
            # Budgets on this dimension set by their scope's values in the record's field
            # order: one dict lookup per record instead of comparing every budget's scope.
            by_values = self._budget_match[dims] = {}
            for i in self._role(dims)[2]:
                scope = self.config.budgets[i].scope
                by_values.setdefault(tuple(scope[d] for d in dims), []).append(i)
        for i in by_values.get(tuple(r.values), ()):
            store[i].setdefault(r.window_start, {})[(r.partition, r.epoch)] = r.metrics[0]
            tracker = self.budgets[i]
            usd = sum(store[i][r.window_start].values()) / NUSD
            if r.window_s == HOUR:
                tracker.set_hour(float(r.window_start), usd)
            else:
                tracker.set_minute(float(r.window_start), usd)

    def _new_series(self, key: tuple[tuple[str, ...], tuple[str | None, ...]]) -> _Series:
        attrs = dict(zip(*key, strict=True))
        detectors = []
        for i, cfg in enumerate(self.config.detectors):
            if cfg.runs_on(key[0]) and all(attrs.get(k) == v for k, v in cfg.scope.items()):
                detectors.append((i, make_detector(cfg.kind, **cfg.params)))
        return _Series(key, detectors)

    # -- evaluation --------------------------------------------------------

    def advance(self, max_hours: int | None = None) -> list[Alert]:
        """Close the hours the watermark has passed, peek at open ones, check budgets.

        ``max_hours`` bounds the hours closed in one call (a backlog can put weeks behind
        the watermark at once); while ``behind`` is true, call again. Open hours are only
        peeked at once every passed hour is closed.
        """
        if self.now == -math.inf:
            return []
        candidates: list[Candidate] = []
        if self.closed_until is None:
            # Start at the earliest hour any series holds: with a backlog, the watermark is
            # already days past the first hours when every partition has reported.
            held = [h for series in self.series.values() for h in series.parts[::_ROW]]
            self.closed_until = min(held, default=int(self.now // HOUR) * HOUR)
        closed = 0
        alerts: list[Alert] = []
        while self.behind and (max_hours is None or closed < max_hours):
            found = self._close(self.closed_until)
            self.closed_until += HOUR
            closed += 1
            self._prune()
            if self.behind:
                # A backlog: each hour is judged, and budgets looked at, as replay and a
                # live stage that kept up would have when the watermark passed it, so an
                # anomaly or a threshold crossed days ago is dated (and a budget's period
                # judged) then, not at today's watermark.
                at = self.closed_until + self.lateness_s
                alerts.extend(self._anomaly_alerts(found, at))
                alerts.extend(self._check_budgets(self.closed_until))
            else:
                candidates.extend(found)
        if self._notices:
            alerts.extend(self._notices)
            self._notices = []
        if not self.behind:
            if self.now >= self._next_peek:
                self._next_peek = (self.now // self.peek_s + 1) * self.peek_s
                candidates.extend(self._peek())
            alerts.extend(self._anomaly_alerts(candidates, self.now))
            alerts.extend(self._check_budgets(self.now))
        return alerts

    def _check_budgets(self, now: float) -> list[Alert]:
        alerts = []
        for i, tracker in enumerate(self.budgets):
            for verdict in tracker.evaluate(now):
                alerts.append(self._budget_alert(i, verdict, now))
            self._prune_budget(i)
        return alerts

    @property
    def behind(self) -> bool:
        """An hour the watermark has passed is not closed yet."""
        return (
            self.closed_until is not None and self.closed_until + HOUR + self.lateness_s <= self.now
        )

    def _value(self, cfg: DetectorConfig, cost: int, calls: int) -> float:
        if cfg.metric == "cost_usd":
            return cost / NUSD
        if cfg.metric == "calls":
            return float(calls)
        return cost / NUSD / calls if calls else math.nan

    @staticmethod
    def _weight(cfg: DetectorConfig, det: Detector, calls: int) -> float:
        """The evidence behind a window's value: its calls for a cost per call (a mean), and
        for a cost when the detector counts calls (``baseline``'s ``count_x``)."""
        if cfg.metric == "cost_per_call" or getattr(det, "count_x", 0.0):
            return float(calls)
        return 1.0

    def _close(self, hour: int) -> list[Candidate]:
        """Feed ``hour`` to every series' detectors; the anomalous verdicts as candidates.

        A series silent for longer than its detectors look back (``_sleep_after_s``) sleeps:
        its silent hours are learned when it next spends, or is peeked at, and not before.
        A silent hour cannot alert once nothing the detectors compare is left in their
        windows (the conformance suite checks every detector for it), so this only defers
        work: a flood of one-off customers or keys costs what its spend costs, not an update
        per series every hour for two weeks.
        """
        found = []
        for series in self.series.values():
            if series.asleep_from and not series.parts:
                continue
            cost, calls = series.pop_hour(hour)
            series.closed = (hour, cost, calls)
            if not calls and not cost:
                if series.asleep_from:
                    continue
                if hour - series.last_spend_hour >= self._sleep_after_s(series):
                    series.asleep_from = hour
                    continue
            elif series.asleep_from:
                self._wake(series, hour)
            for i, det in zip(series.slots, series.dets, strict=True):
                cfg = self.config.detectors[i]
                value = self._value(cfg, cost, calls)
                verdict = det.update(float(hour), value, self._weight(cfg, det, calls))
                c = self._candidate(series, cfg, det, verdict, hour, cost, calls)
                if c is not None:
                    found.append(c)
        return found

    def _sleep_after_s(self, series: _Series) -> int:
        """Silence after which a series' silent hours can no longer alert: its detectors'
        longest trailing window, plus an hour."""
        after = self._sleep_after.get(series.slots)
        if after is None:
            windows = [getattr(det, "window_s", HOUR) for det in series.dets]
            after = int(max(windows, default=HOUR)) + HOUR
            if any(det.alerts_on_silence for det in series.dets):
                after = 2**62  # never: each silent hour may alert
            self._sleep_after[series.slots] = after
        return after

    def _wake(self, series: _Series, until: int) -> None:
        """Teach a sleeping series' detectors its silent hours before ``until``."""
        for hour in range(series.asleep_from, until, HOUR):
            for i, det in zip(series.slots, series.dets, strict=True):
                cfg = self.config.detectors[i]
                det.update(float(hour), self._value(cfg, 0, 0), self._weight(cfg, det, 0))
        series.asleep_from = 0

    def _peek(self) -> list[Candidate]:
        found = []
        dirty, self._dirty = self._dirty, set()
        closed_until = -math.inf if self.closed_until is None else self.closed_until
        for sk, hour in sorted(dirty, key=_hour_of):  # a series' hours in order
            series = self.series.get(sk)
            if series is None or hour < closed_until:
                continue  # forgotten, or learned since it changed
            if hour > self.now:
                self._dirty.add((sk, hour))  # past the watermark: earlier hours are learned first
                continue
            cost, calls = series.total(hour)
            if series.asleep_from and self.closed_until is not None:
                self._wake(series, self.closed_until)
            for i, det in zip(series.slots, series.dets, strict=True):
                cfg = self.config.detectors[i]
                value = self._value(cfg, cost, calls)
                if not self._worth_peeking(cfg, det, value, calls, series.closed):
                    continue
                verdict = det.peek(float(hour), value, self._weight(cfg, det, calls))
                c = self._candidate(series, cfg, det, verdict, hour, cost, calls)
                if c is not None:
                    found.append(c)
        return found

    @staticmethod
    def _worth_peeking(
        cfg: DetectorConfig,
        det: Detector,
        value: float,
        calls: int,
        closed: tuple[int, int, int],
    ) -> bool:
        """Skip early looks that cannot alert or are not urgent (they cost replay speed).

        A cost that has not yet passed the whole previous hour's is no runaway in the
        making: the hour's close still judges it, minutes later.
        """
        if getattr(det, "window_s", HOUR) > HOUR:
            return False  # a whole-day comparison (wow) is about trends: its close will do
        if cfg.metric == "cost_per_call":
            # A few calls into the hour say little about the mix, unless the detector weighs
            # each call's evidence (``shift``: a CUSUM over calls).
            return calls >= (1 if getattr(det, "weighs_calls", False) else 10)
        if cfg.metric == "calls":
            return value > closed[2]
        return value > getattr(det, "min_usd", 0.0) and value * NUSD > closed[1]

    def _candidate(
        self,
        series: _Series,
        cfg: DetectorConfig,
        det: Detector,
        v: Verdict,
        hour: int,
        cost: int,
        calls: int,
    ) -> Candidate | None:
        """An anomalous verdict on the hour (``cost`` nano-dollars, ``calls``) as a candidate."""
        if not v.is_anomaly:
            return None
        expected = v.expected
        window_s = getattr(det, "window_s", HOUR)
        reason = v.reason
        if cfg.metric == "cost_per_call" and window_s > HOUR:
            # A trailing window's cost per call against the same hours a week earlier (sums
            # of hourly costs per call): the dollars are this hour's cost against what it
            # would have cost at last week's cost per call.
            ratio = v.observed / expected if expected else math.inf
            observed = cost / NUSD
            expected_usd = observed / ratio
            excess = observed - expected_usd
            if excess < self.cpc_min_usd:
                return None
            kind = "cost_per_call"
            bar = reason.partition(", over ")[2]  # what the rise is over, in wow's words
            reason = (
                f"cost per call over the last {window_s / 3600:g}h {ratio:.1f}x the same hours "
                f"a week earlier; this hour {usd(observed)} vs {usd(expected_usd)} at last "
                f"week's cost per call" + (f", over {bar}" if bar else "")
            )
        elif cfg.metric == "cost_per_call":
            excess = (v.observed - (expected or 0.0)) * calls
            if excess < self.cpc_min_usd:
                return None
            kind, observed, expected_usd = "cost_per_call", v.observed * calls, None
            if expected is not None:
                expected_usd = expected * calls
        elif cfg.metric == "calls":
            kind, observed, expected_usd, excess = "anomaly", v.observed, expected, 0.0
        else:
            kind = "wow" if cfg.kind.startswith("wow") else "anomaly"
            observed, expected_usd = v.observed, expected
            excess = v.observed - (expected or 0.0)
        start, end = float(hour), float(hour + HOUR)
        if window_s > HOUR:
            start = end - window_s  # the trailing window compared
        return Candidate(
            scope=series.scope,
            kind=kind,
            detector=cfg.kind if cfg.metric == "cost_usd" else f"{cfg.kind}:{cfg.metric}",
            window_start=start,
            window_end=end,
            observed_usd=observed,
            expected_usd=expected_usd,
            excess_usd=max(excess, 0.0),
            score=v.score,
            # A trend (a creep, a weekly rise) is for the digest: severity info, not a page.
            severity="info" if v.trend else ("critical" if v.score >= 0.75 else "warning"),
            reason=reason,
            known=self._known(series.scope),
        )

    def _known(self, scope: Scope) -> dict[str, str | None]:
        """A series' attributes, with a key's team, feature... from the key directory."""
        known: dict[str, str | None] = dict(scope)
        key = known.get("api_key")
        if key is not None and key in self.keys:
            known = {**self.keys[key].attrs(), **known}
        return known

    def _narrowest(self, root: Candidate, explain: float = 0.5) -> Candidate:
        """The most specific series whose own excess explains a broad anomaly, else ``root``.

        A team's total often crosses its threshold before the looping key inside it does
        (a sum is less noisy): the alert still belongs to the key, the one thing to act on.
        """
        if root.kind != "anomaly" or rank(root.scope)[0]:
            return root
        hour = int(root.window_start)
        best: Candidate | None = None
        for series in self.series.values():
            known = self._known(series.scope)
            if not inside(known, series.scope, root.scope):
                continue
            det = next(
                (d for i, d in series.detectors if self.config.detectors[i].metric == "cost_usd"),
                None,
            )
            if det is None or getattr(det, "window_s", HOUR) > HOUR:
                continue
            if series.asleep_from and self.closed_until is not None:
                self._wake(series, self.closed_until)
            cost = series.closed[1] if series.closed[0] == hour else series.total(hour)[0]
            v = det.peek(float(hour), cost / NUSD)
            if v.expected is None or v.observed - v.expected < explain * root.excess_usd:
                continue
            if not v.is_anomaly and any(name not in known for name, _ in root.scope):
                # Whether this key is inside a model's or a customer's series is unknown
                # (the key directory does not hold them): an unremarkable key that happens
                # to be over by as much is not the cause. Within a team, it may be.
                continue
            c = Candidate(
                scope=series.scope,
                kind=root.kind,
                detector=root.detector,
                window_start=root.window_start,
                window_end=root.window_end,
                observed_usd=v.observed,
                expected_usd=v.expected,
                excess_usd=v.observed - v.expected,
                score=root.score,
                severity=root.severity,
                reason=v.reason,
                known=known,
            )
            if best is None or (*rank(c.scope), c.excess_usd) > (
                *rank(best.scope),
                best.excess_usd,
            ):
                best = c
        return root if best is None else narrowed(root, best)

    def _anomaly_alerts(self, candidates: list[Candidate], at: float) -> list[Alert]:
        """One alert per new or escalated incident, dated ``at`` (event time)."""
        alerts = []
        roots: dict[Scope, Candidate] = {}
        for root in map(self._narrowest, group(candidates)):
            if root.scope in roots:
                roots[root.scope].also.extend(
                    s for s in root.also if s not in roots[root.scope].also
                )
            else:
                roots[root.scope] = root
        for root in roots.values():
            admitted = self.incidents.admit(root, at)
            if admitted is None:
                continue
            incident, _ = admitted
            alerts.append(
                Alert(
                    kind=root.kind,
                    detector=root.detector,
                    scope=dict(root.scope),
                    also=[dict(s) for s in root.also],
                    window_start=root.window_start,
                    window_end=root.window_end,
                    detected_at=at,
                    observed_usd=root.observed_usd,
                    expected_usd=root.expected_usd,
                    severity=root.severity,  # type: ignore[arg-type]
                    reason=f"{scope_text(root.scope)}: {root.reason}",
                    id=incident.id,
                    seq=incident.seq,
                    score=root.score,
                    keys=self.keys_in(dict(root.scope), root.window_start - HOUR),
                )
            )
        return alerts

    def keys_in(self, scope: dict[str, str | None], since: float) -> list[KeyInfo]:
        """Known keys inside ``scope`` that spent since ``since`` (sorted by key)."""
        out = []
        for key in sorted(self.keys):
            info = self.keys[key]
            attrs = info.attrs()
            if self._key_hour.get(key, 0) < since:
                continue
            # Fields the directory does not hold (model, customer) cannot be resolved to keys.
            if all(name in attrs and attrs[name] == value for name, value in scope.items()):
                out.append(info)
        return out

    def _budget_alert(self, i: int, v: BudgetVerdict, at: float) -> Alert:
        cfg = self.config.budgets[i]
        incident = f"budget/{cfg.name}/{int(v.period_start)}"
        seq = self._budget_seq.get(incident, -1) + 1
        self._budget_seq[incident] = seq
        if v.action == "resume":
            keys = [KeyInfo(api_key=k) for k in self._budget_paused[i]]
            self._budget_paused[i] = []
        else:
            keys = self.keys_in(dict(cfg.scope), v.period_start)
            if v.action == "pause":
                # What the hard stop pauses (the policy step picks the same keys): the
                # next period's resume undoes exactly these.
                classify = self.config.keys.classify
                self._budget_paused[i] = sorted(
                    k.api_key for k in keys if classify(k.api_key).pausable
                )
        return Alert(
            kind=v.kind,
            detector="budget",
            scope=dict(cfg.scope),
            window_start=v.window_start,
            window_end=v.window_end,
            detected_at=at,
            observed_usd=v.observed_usd,
            expected_usd=v.expected_usd,
            severity=v.severity,  # type: ignore[arg-type]
            reason=v.reason,
            id=incident,
            seq=seq,
            action=v.action,  # type: ignore[arg-type]
            budget=cfg.name,
            threshold=v.threshold,
            keys=keys,
        )

    # -- memory ------------------------------------------------------------

    def _prune(self) -> None:
        assert self.closed_until is not None
        horizon = self.closed_until - FORGET_S
        gone = [k for k, s in self.series.items() if s.last_spend_hour < horizon and not s.parts]
        for k in gone:
            del self.series[k]
            if OTHER not in k[1]:
                self._per_set[k[0]] -= 1
        for hour in [h for h in self._folded if h < self.closed_until]:
            del self._folded[hour]  # closed: a correction to it reaches budgets only
        self._cap_noticed = {n for n in self._cap_noticed if n[1] >= horizon}
        for key in [k for k, h in self._key_hour.items() if h < horizon]:
            del self._key_hour[key]
            del self.keys[key]
        old = horizon - 40 * 86400
        for seq_id in [k for k in self._budget_seq if int(k.rsplit("/", 1)[1]) < old]:
            del self._budget_seq[seq_id]

    def _prune_budget(self, i: int) -> None:
        start, _ = self.budgets[i].period_bounds(self.now)
        previous, _ = self.budgets[i].period_bounds(start - 1.0)
        # Keep this period's and the previous one's hours (late corrections can still cross
        # a threshold of a period that just ended) and six hours of minutes.
        hours = self._budget_hours[i]
        for h in [h for h in hours if h < previous]:
            del hours[h]
        minutes = self._budget_minutes[i]
        for m in [m for m in minutes if m < self.now - 6 * HOUR - MINUTE]:
            del minutes[m]

    # -- state ---------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything learned, as bytes (detectors are small picklable objects).

        The config parts the state was built from go along, so a restore under a changed
        config maps detectors and budgets the way a live reload does.
        """
        derived = ("config", "_budget_match", "_per_set", "_sleep_after")
        state: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k not in derived}
        state["_built_from"] = _built_from(self.config)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> list[str]:
        """Load a snapshot; returns what a config change since it was taken restarted."""
        state = unpickle_state(data)  # our own state file, written by snapshot()
        built_from = state.pop("_built_from", None)
        self.__dict__.update(state)
        self._count_series()
        if self._dirty and not isinstance(next(iter(self._dirty))[1], int):
            # Until 2026-12-04 the watch marked whole series: every open hour of them.
            series = self.series
            self._dirty = {
                (sk, h) for sk in self._dirty if sk in series for h in series[sk].hours()
            }
        self._budget_match = {}
        if built_from is None:
            return []
        if built_from == _built_from(self.config) and not self._detectors_outdated():
            return []
        current = self.config
        self.config = current.model_copy(update=built_from)
        return self.reconfigure(current)

    def _count_series(self) -> None:
        per_set: dict[tuple[str, ...], int] = {}
        for dims, values in self.series:
            if OTHER not in values:
                per_set[dims] = per_set.get(dims, 0) + 1
        self._per_set = per_set

    def _detectors_outdated(self) -> bool:
        """Detectors built with other parameters than the config resolves to now: a default
        changed in an upgrade. Restoring retunes them, keeping what they learned."""
        want = [make_detector(c.kind, **c.params).params for c in self.config.detectors]
        checked: set[int] = set()
        for series in self.series.values():
            for i, det in series.detectors:
                if i not in checked:  # a config entry builds all its detectors alike
                    checked.add(i)
                    if det.params != want[i]:
                        return True
            if len(checked) == len(want):
                break
        return False

    def reconfigure(self, config: Config) -> list[str]:
        """Switch to ``config`` keeping every baseline and budget state that still applies.

        Detectors are matched by (kind, metric, scope) and retuned in place
        (``detectors.retune``); budgets by name, keeping their spend and the thresholds
        fired this period unless their scope, period or time zone changed. Everything is
        built first and swapped in at the end, so a failure leaves the old state whole.
        Returns one line per thing that had to start afresh (for the log).
        """
        if self.closed_until is not None:
            for series in self.series.values():
                if series.asleep_from:  # its silent hours are learned by the detectors it had
                    self._wake(series, self.closed_until)
        detect_dims = {tuple(d) for d in config.dimensions}
        series_detectors, notes = self._remap_detectors(config, detect_dims)
        budget_state, budget_notes = self._remap_budgets(config)
        for sk in [sk for sk in self.series if sk not in series_detectors]:
            del self.series[sk]
        self._count_series()
        for sk, detectors in series_detectors.items():
            self.series[sk].detectors = detectors
        self.budgets, self._budget_hours, self._budget_minutes, self._budget_paused = budget_state
        self._budget_scopes = {}
        for i, b in enumerate(config.budgets):
            self._budget_scopes.setdefault(tuple(sorted(b.scope)), []).append(i)
        self.detect_dims = detect_dims
        self._roles = {}
        self._budget_match = {}
        self._sleep_after = {}
        self.config = config
        return notes + budget_notes

    def _remap_detectors(
        self, config: Config, detect_dims: set[tuple[str, ...]]
    ) -> tuple[dict[Any, list[tuple[int, Detector]]], list[str]]:
        old = self.config.detectors
        # New detector index -> the old one it continues (None: a new detector).
        continues: list[int | None] = []
        for new in config.detectors:
            same = (new.kind, new.metric, new.scope)
            match = next(
                (
                    i
                    for i, o in enumerate(old)
                    if i not in continues and (o.kind, o.metric, o.scope) == same
                ),
                None,
            )
            continues.append(match)
        params = [make_detector(c.kind, **c.params).params for c in config.detectors]
        restarted: set[int] = set()
        out: dict[Any, list[tuple[int, Detector]]] = {}
        for sk, series in self.series.items():
            if sk[0] not in detect_dims:
                continue
            learned = dict(series.detectors)
            attrs = dict(series.scope)
            rebuilt: list[tuple[int, Detector]] = []
            for j, cfg in enumerate(config.detectors):
                if not cfg.runs_on(sk[0]) or not all(
                    attrs.get(k) == v for k, v in cfg.scope.items()
                ):
                    continue
                i = continues[j]
                before = learned.get(i) if i is not None else None
                after = retune(before, **params[j]) if before is not None else None
                if after is None:
                    after = make_detector(cfg.kind, **cfg.params)
                    if before is not None:
                        restarted.add(j)
                rebuilt.append((j, after))
            out[sk] = rebuilt
        notes = [
            f"detectors[{j}] ({_named(config.detectors[j])}): a parameter that shapes what it "
            "learned changed; its baselines start afresh"
            for j in sorted(restarted)
        ]
        notes += [
            f"detectors[{j}] ({_named(config.detectors[j])}): new; learns from now on"
            for j, i in enumerate(continues)
            if i is None
        ]
        notes += [f"detector {_named(o)} removed" for i, o in enumerate(old) if i not in continues]
        return out, notes

    def _remap_budgets(self, config: Config) -> tuple[tuple[Any, Any, Any, Any], list[str]]:
        old = {b.name: (i, b) for i, b in enumerate(self.config.budgets)}
        budgets, hours, minutes, paused = [], [], [], []
        notes: list[str] = []
        for cfg in config.budgets:
            tracker = BudgetTracker.from_config(cfg)
            i, before = old.get(cfg.name, (None, None))
            if (
                i is not None
                and before is not None
                and (
                    (before.scope, before.period, before.timezone)
                    == (cfg.scope, cfg.period, cfg.timezone)
                )
            ):
                # Spend, thresholds fired and the profile carry over; amounts and
                # fractions are the new ones (a raised amount does not re-fire 50%).
                learned = {k: v for k, v in vars(self.budgets[i]).items() if k.startswith("_")}
                vars(tracker).update(learned)
                hours.append(self._budget_hours[i])
                minutes.append(self._budget_minutes[i])
                paused.append(self._budget_paused[i])
            else:
                hours.append({})
                minutes.append({})
                paused.append([])
                why = "new" if i is None else "scope, period or time zone changed"
                notes.append(f"budget {cfg.name}: {why}; counts spend read from now on")
            budgets.append(tracker)
        return (budgets, hours, minutes, paused), notes


def _built_from(config: Config) -> dict[str, Any]:
    """The config parts a watch's state depends on."""
    return {
        "detectors": config.detectors,
        "budgets": config.budgets,
        "dimensions": config.dimensions,
    }


def _named(cfg: DetectorConfig) -> str:
    """How an operator tells a config's detectors apart: ``baseline on cost_per_call``."""
    scope = "".join(f", {k}={v}" for k, v in sorted(cfg.scope.items()))
    return f"{cfg.kind} on {cfg.metric}{scope}"


def _hour_of(dirty: tuple[Any, int]) -> int:
    return dirty[1]
