"""The watch's budgets: rollups of each budget's scope in, budget alerts out.

A ``BudgetTracker`` follows one budget's calendar periods; this book feeds it. Rollup
records are absolute and come per input partition and late epoch, so the book keeps each
part of an hour (and of a minute, for burn rates) and hands the tracker their sum, in
nano-dollars as the records carry them: a re-sent record replaces its part, never adds to
it. The parts are kept per scope (``ScopeParts``), not per budget: a team's day, week and
month budgets read the same rollups, so each record is stored and summed once for all of
them. The book also numbers each budget period's alerts (one incident per period) and
remembers which keys a hard stop paused, so the next period's resume undoes exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

from spendbrake.detectors._budget import BudgetTracker, BudgetVerdict
from spendbrake.detectors._keys import KeyDirectory
from spendbrake.schemas import (
    KEY_DIMENSIONS,
    NUSD,
    STOP_PAUSING,
    Alert,
    BudgetConfig,
    Config,
    KeyInfo,
    KeysConfig,
    RollupColumns,
    format_ts,
)

__all__ = ["BudgetBook"]

HOUR = 3600
MINUTE = 60
#: What a reload says of a budget whose spend before it was never held here.
SEEDED_LATER = "its period's spend so far is read from the report store once the store holds it"

#: (input partition, late epoch): the parts of one window that readers sum.
Part = tuple[int, int]
#: window start -> (partition, epoch) -> cost_nusd
Parts = dict[int, dict[Part, int]]
#: A budget scope's (field, value) pairs, sorted by field: budgets on one scope share its parts.
ScopeKey = tuple[tuple[str, str], ...]


@dataclass(slots=True, eq=False)
class ScopeParts:
    """The parts of one scope's hours and minutes, shared by the budgets on that scope.

    One store and one sum per record for all of them: with a budget each, a team's day,
    week and month budgets copied and re-summed the same parts three times. Kept as long
    as the longest-reaching of them needs (``BudgetBook._prune``).
    """

    #: indices of the budgets on this scope, in config order
    budgets: list[int]
    hours: Parts = field(default_factory=dict)
    minutes: Parts = field(default_factory=dict)
    #: the watermark's hour of its last prune (derived)
    pruned: int | None = None
    #: (from, until, previous): while the watermark is in [from, until), no budget of the
    #: scope changed period and the hours from ``previous`` on are kept (derived)
    keep: tuple[float, float, float] | None = None


def _scope_key(cfg: BudgetConfig) -> ScopeKey:
    return tuple(sorted(cfg.scope.items()))


class BudgetBook:
    """The trackers of ``budgets`` (config entries, in order) and the spend parts they read."""

    def __init__(self, budgets: list[BudgetConfig]) -> None:
        self.configs = list(budgets)
        self.trackers = [BudgetTracker.from_config(b) for b in budgets]
        #: scope -> the parts its budgets read
        self.scopes: dict[ScopeKey, ScopeParts] = {}
        for i, b in enumerate(budgets):
            self.scopes.setdefault(_scope_key(b), ScopeParts([])).budgets.append(i)
        #: budget index -> the parts it reads (its scope's, shared)
        self.held = [self.scopes[_scope_key(b)] for b in budgets]
        #: budget index -> the keys its hard stop paused this period
        self.paused: list[list[str]] = [[] for _ in budgets]
        #: budget index -> ``KeyDirectory.changes`` when its stop in force last looked for
        #: keys in scope it has not paused (derived)
        self._looked: list[int | None] = [None for _ in budgets]
        #: incident id (``budget/<name>/<period start>``) -> the last seq sent
        self.seq: dict[str, int] = {}
        #: Stops a reload lifted (a budget removed, or scoped elsewhere), to resume at the
        #: next check: (name, scope, keys its stop paused, why).
        self.lifted: list[tuple[str, dict[str, str], list[str], str]] = []
        #: Budgets a reload added or scoped anew, by name: their period's spend before the
        #: reload was never held here, and waits for ``seed`` (from the report store).
        self.unseeded: list[str] = []
        #: sorted dims -> indices of the budgets scoped on exactly those fields
        self._scopes: dict[tuple[str, ...], list[int]] = {}
        for i, b in enumerate(budgets):
            self._scopes.setdefault(tuple(sorted(b.scope)), []).append(i)
        #: dims -> scope values in that field order -> their parts (derived, a cache)
        self._match: dict[tuple[str, ...], dict[tuple[str | None, ...], ScopeParts]] = {}

    def scoped_on(self, dims: tuple[str, ...]) -> list[int]:
        """Indices of the budgets whose scope is the dimension set ``dims`` (any order)."""
        return self._scopes.get(tuple(sorted(dims)), [])

    def parts(self, block: RollupColumns) -> None:
        """Take a block of hour or minute records in: the trackers each is within see their
        new sum (a re-sent record replaces its part)."""
        dims = tuple(block.dims)
        by_values = self._match.get(dims)
        if by_values is None:
            # Scopes on this dimension set by their values in the records' field order: one
            # dict lookup per record instead of comparing every budget's scope.
            by_values = self._match[dims] = {}
            for i in self.scoped_on(dims):
                scope = self.configs[i].scope
                by_values[tuple(scope[d] for d in dims)] = self.held[i]
        if not by_values:
            return
        hourly = block.window_s == HOUR
        trackers = self.trackers
        partition = block.partition
        for values, start, epoch, cost in zip(
            block.values, block.starts, block.epochs, block.metrics[0], strict=True
        ):
            held = by_values.get(values)
            if held is None:
                continue
            parts = (held.hours if hourly else held.minutes).setdefault(start, {})
            parts[(partition, epoch)] = cost
            total = sum(parts.values())
            at = float(start)
            if hourly:
                for i in held.budgets:
                    trackers[i].set_hour_nusd(at, total)
            else:
                for i in held.budgets:
                    trackers[i].set_minute_nusd(at, total)

    def check(
        self,
        at: float,
        watermark: float,
        keys: KeyDirectory,
        rules: KeysConfig,
        step: float | None = None,
    ) -> list[tuple[Alert, list[KeyInfo]]]:
        """Alerts of every budget newly due at event time ``at`` (the watermark, or an hour
        closed in a backlog), each with the keys it names (its scope's, or those a resume
        undoes); parts older than any tracker reads are then dropped. ``step``: burn rates
        are looked at every ``step`` seconds up to ``at`` first (an hour judged at its
        close, whose burns a live stage would have seen as they ran)."""
        alerts = [self._lifted(*lifted, at) for lifted in self.lifted]
        self.lifted = []
        for i, tracker in enumerate(self.trackers):
            if step is not None:
                for t, verdict in tracker.burns_before(at, step):
                    alerts.append(self._alert(i, verdict, t, keys, rules))
            for verdict in tracker.evaluate(at):
                if verdict.action == "resume" and not self.paused[i]:
                    continue  # its stop paused no key: a daily "resuming" of nothing is noise
                alerts.append(self._alert(i, verdict, at, keys, rules))
            if (more := self._stop_newcomers(i, at, keys, rules)) is not None:
                alerts.append(more)
        for held in self.scopes.values():
            self._prune(held, watermark)
        return alerts

    def _lifted(
        self, name: str, scope: dict[str, str], paused: list[str], why: str, at: float
    ) -> tuple[Alert, list[KeyInfo]]:
        """The resume of a stop a reload lifted: what the next period would have sent."""
        incident = f"budget/{name}/lifted/{int(at)}"
        seq = self.seq[incident] = self.seq.get(incident, -1) + 1
        alert = Alert(
            kind="budget",
            detector="budget",
            scope=dict(scope),
            detected_at=format_ts(at),
            severity="info",
            reason=f"{name}: {why} by a config reload; resuming what its hard stop paused",
            id=incident,
            seq=seq,
            action="resume",
            budget=name,
        )
        return alert, [KeyInfo(api_key=k) for k in paused]

    def _stop_newcomers(
        self, i: int, at: float, keys: KeyDirectory, rules: KeysConfig
    ) -> tuple[Alert, list[KeyInfo]] | None:
        """A follow-up ``pause`` for the pausable keys in scope that spent since a stop still
        in force and are not paused by it: keys that started spending after the stop, or
        whose rollups were read after it (another partition, the next flush). A key paused
        by it and resumed by an operator is not paused again."""
        if self._looked[i] == keys.changes:
            return None
        verdict = self.trackers[i].stop_in_force()
        if verdict is None:
            return None
        self._looked[i] = keys.changes
        held = set(self.paused[i])
        new = [
            k
            for k in keys.keys_in(dict(self.configs[i].scope), verdict.period_start)
            if k.api_key not in held and rules.classify(k.api_key).pausable
        ]
        return self._alert(i, verdict, at, keys, rules, new) if new else None

    def _alert(
        self,
        i: int,
        v: BudgetVerdict,
        at: float,
        keys: KeyDirectory,
        rules: KeysConfig,
        named: list[KeyInfo] | None = None,
    ) -> tuple[Alert, list[KeyInfo]]:
        """The alert of verdict ``v`` of budget ``i``, with the keys it names: ``named``, else
        its scope's keys that spent this period (a resume: the keys its stop paused)."""
        cfg = self.configs[i]
        incident = f"budget/{cfg.name}/{int(v.period_start)}"
        seq = self.seq.get(incident, -1) + 1
        self.seq[incident] = seq
        pausable: set[str] = set()
        if v.action == "resume":
            named = [KeyInfo(api_key=k) for k in self.paused[i]]
            self.paused[i] = []
        else:
            if named is None:
                named = keys.keys_in(dict(cfg.scope), v.period_start)
            if v.action == "pause":
                # What the hard stop pauses (the policy step picks the same keys): the
                # next period's resume undoes exactly these.
                pausable = {k.api_key for k in named if rules.classify(k.api_key).pausable}
                self.paused[i] = sorted(pausable.union(self.paused[i]))
        reason = v.reason
        unknown = [f for f in cfg.scope if f not in KEY_DIMENSIONS]
        if v.action == "pause" and unknown:
            # The key directory knows keys by their own fields, not by a model or customer
            # they called: the stop pauses none (``KeyDirectory.keys_in``), so say so.
            reason = reason.replace(
                STOP_PAUSING, f"; no key paused: keys are not known by {unknown[0]}"
            )
        elif v.action == "pause" and not pausable:
            # "pausing non-critical keys" above a Done line saying nothing was paused: the
            # on-call reads the first and takes the spend for stopped.
            why = (
                f"the keys config lets none of its {len(named)} key(s) be paused"
                if named
                else "no key in scope has spent this period"
            )
            reason = reason.replace(STOP_PAUSING, f"; no key paused: {why}")
        alert = Alert(
            kind=v.kind,
            detector="budget",
            scope=dict(cfg.scope),
            window_start=format_ts(v.window_start),
            window_end=format_ts(v.window_end),
            detected_at=format_ts(at if v.at is None else v.at),
            observed_usd=v.observed_usd,
            expected_usd=v.expected_usd,
            severity=v.severity,  # type: ignore[arg-type]
            reason=reason,
            id=incident,
            seq=seq,
            action=v.action,  # type: ignore[arg-type]
            budget=cfg.name,
            threshold=v.threshold,
        )
        return alert, named

    def _prune(self, held: ScopeParts, watermark: float) -> None:
        """Keep the hours of each of the scope's budgets' period and the previous one (late
        corrections can still cross a threshold of a period that just ended), and six hours
        of minutes.

        Run at every check, so only once an hour does it scan: the parts kept longer are
        never read (the tracker takes no minute older than its burn windows).
        """
        hour = int(watermark // HOUR)
        if held.pruned == hour:
            return
        held.pruned = hour
        keep = held.keep
        if keep is None or not keep[0] <= watermark < keep[1]:
            keep = held.keep = self._keep(held, watermark)
        previous = keep[2]
        hours = held.hours
        if hours and min(hours) < previous:  # most hours: none before the previous period
            for h in [h for h in hours if h < previous]:
                del hours[h]
        minutes = held.minutes
        # Minutes come in time order, but for a late one: those at the front are the old
        # ones (a late one goes when it reaches the front), not a scan of every minute.
        cutoff = watermark - 6 * HOUR - MINUTE
        for m in [m for m in takewhile(cutoff.__gt__, minutes)]:
            del minutes[m]

    def _keep(self, held: ScopeParts, watermark: float) -> tuple[float, float, float]:
        """(from, until, previous): the span around ``watermark`` where none of the scope's
        budgets changes period, and the earliest start of the period before theirs. Asked
        once per period, not each hour: each ask put two calendar conversions per budget
        through the tracker's one-period cache."""
        spans = []
        for i in held.budgets:
            tracker = self.trackers[i]
            start, end = tracker.period_bounds(watermark)
            previous, _ = tracker.period_bounds(start - 1.0)
            tracker.period_bounds(watermark)  # its one-period cache back on the current period
            spans.append((start, end, previous))
        return (
            max(start for start, _, _ in spans),
            min(end for _, end, _ in spans),
            min(previous for _, _, previous in spans),
        )

    def prune(self, horizon: int) -> None:
        """Forget the alert numbering of periods long over."""
        old = horizon - 40 * 86400
        for seq_id in [k for k in self.seq if int(k.rsplit("/", 1)[1]) < old]:
            del self.seq[seq_id]

    def remapped(self, config: Config) -> tuple[BudgetBook, list[str]]:
        """A book for ``config``'s budgets keeping the state of each one matched by name; and
        a note per budget that could not keep it all.

        One whose period or time zone changed keeps its spend: the parts held (this period's
        and the previous one's, by the old calendar) are read again under the new one, whose
        thresholds fire afresh. One whose scope changed, or a new one, counts from the
        rollups read after the reload (the parts of its scope were never held, unless
        another budget read them) and is listed in ``unseeded``, for the spend before it to
        be ``seed``-ed.
        """
        old = {b.name: (i, b) for i, b in enumerate(self.configs)}
        book = BudgetBook(config.budgets)
        for key, held in book.scopes.items():
            if (before := self.scopes.get(key)) is not None:
                held.hours, held.minutes = before.hours, before.minutes
        book.seq = self.seq
        book.lifted = list(self.lifted)
        waiting = set(self.unseeded)
        notes: list[str] = []
        kept = {b.name: b for b in config.budgets}
        for i, before in enumerate(self.configs):
            after = kept.get(before.name)
            if after is not None and after.scope == before.scope:
                continue
            why = "removed" if after is None else "scope changed"
            if self.paused[i] and before.auto_resume:
                # Its stop is lifted with it: the keys it paused would otherwise wait for a
                # resume that no budget will ever send.
                book.lifted.append((before.name, dict(before.scope), self.paused[i], why))
                notes.append(
                    f"budget {before.name}: {why}; resumes the {len(self.paused[i])} keys its "
                    "hard stop paused"
                )
        for j, cfg in enumerate(config.budgets):
            i, before = old.get(cfg.name, (None, None))
            if i is None or before is None or before.scope != cfg.scope:
                why = "new" if before is None else "scope changed"
                notes.append(f"budget {cfg.name}: {why}; {SEEDED_LATER}")
                book.unseeded.append(cfg.name)
                continue
            if cfg.name in waiting:
                book.unseeded.append(cfg.name)
            book.paused[j] = self.paused[i]
            tracker = book.trackers[j]
            if (before.period, before.timezone) == (cfg.period, cfg.timezone):
                # Spend, thresholds fired and the profile carry over; amounts and
                # fractions are the new ones (a raised amount does not re-send 50% at
                # once, it arms 50% of the new amount).
                tracker.carry_over(self.trackers[i])
                if book.paused[j] and cfg.auto_resume and tracker.lift_stop():
                    # Raised above the spend: the stop no longer holds, as its next period
                    # would say (raising a budget is how an operator lets a team go on).
                    book.lifted.append((cfg.name, dict(cfg.scope), book.paused[j], "raised"))
                    notes.append(
                        f"budget {cfg.name}: raised above the spend; resumes the "
                        f"{len(book.paused[j])} keys its hard stop paused"
                    )
                    book.paused[j] = []
                continue
            # Spend carried under the new calendar: without it the budget counted from the
            # reload, so spend before it never reached a threshold or the hard stop.
            tracker.learn_from(self.trackers[i])
            book._feed(j)
            held = book.held[j].hours
            since = format_ts(min(held)) if held else "the reload"
            notes.append(
                f"budget {cfg.name}: period or time zone changed; its thresholds start afresh "
                f"for the new period, counting the spend held since {since}; the rest of the "
                "period is read from the report store once the store holds it"
            )
            # A longer period (a day made a month) reaches back past the two periods held.
            if cfg.name not in book.unseeded:
                book.unseeded.append(cfg.name)
        return book, notes

    def waiting(self, at: float) -> dict[str, tuple[dict[str, str], int]]:
        """The ``unseeded`` budgets' scopes and the start of their period at ``at``: what
        to read from the store for them."""
        return {
            cfg.name: (dict(cfg.scope), int(tracker.period_bounds(at)[0]))
            for cfg, tracker in zip(self.configs, self.trackers, strict=True)
            if cfg.name in self.unseeded
        }

    def seed(self, name: str, hours: list[tuple[int, int, int, int]], at: float) -> float | None:
        """Give budget ``name`` (listed in ``unseeded``) the spend of its period before the
        reload: ``hours`` are the report store's rows of its scope, (hour start, input
        partition, late epoch, cost_nusd), as the rollups topic carried them. A part read
        since the reload is newer and kept. Returns the period's spend so far in dollars
        (None: not waiting); thresholds it crossed fire at the next check.

        Exact when the store holds every rollup this book read before the reload (the
        caller checks its offsets): each part is an absolute total under the key the
        topic's records use, so one read twice replaces itself.
        """
        if name not in self.unseeded:
            return None
        self.unseeded.remove(name)
        i = next(j for j, cfg in enumerate(self.configs) if cfg.name == name)
        tracker = self.trackers[i]
        start, _ = tracker.period_bounds(at)
        held = self.held[i].hours
        for hour, partition, epoch, cost in hours:
            if hour >= start:
                held.setdefault(hour, {}).setdefault((partition, epoch), cost)
        for j in self.held[i].budgets:  # the parts are theirs too
            self._feed(j)
        return sum(sum(p.values()) for h, p in held.items() if h >= start) / NUSD

    def _feed(self, i: int) -> None:
        """Hand budget ``i``'s tracker every hour and minute it holds the parts of."""
        tracker = self.trackers[i]
        for start, parts in sorted(self.held[i].hours.items()):
            tracker.set_hour_nusd(float(start), sum(parts.values()))
        for start, parts in sorted(self.held[i].minutes.items()):
            tracker.set_minute_nusd(float(start), sum(parts.values()))

    # -- state ---------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Plain data: each tracker's own snapshot, the parts it reads, the keys it paused;
        ``lifted`` only when a stop waits to be lifted (the layout is otherwise unchanged).

        The parts of a scope are written with each of its budgets, as when each budget kept
        its own: the layout earlier releases read and write."""
        rows = {
            key: (_parts_rows(held.hours), _parts_rows(held.minutes))
            for key, held in self.scopes.items()
        }
        data = {
            "budgets": [
                {
                    "tracker": tracker.snapshot(),
                    "hours": rows[_scope_key(cfg)][0],
                    "minutes": rows[_scope_key(cfg)][1],
                    "paused": self.paused[i],
                }
                for i, (cfg, tracker) in enumerate(zip(self.configs, self.trackers, strict=True))
            ],
            "seq": [[k, v] for k, v in self.seq.items()],
        }
        if self.lifted:
            data["lifted"] = [[name, scope, keys, why] for name, scope, keys, why in self.lifted]
        if self.unseeded:
            data["unseeded"] = list(self.unseeded)
        return data

    def load(self, data: dict[str, Any]) -> None:
        """Restore a ``dump`` into a book built from the same budget configs."""
        budgets = data["budgets"]
        if len(budgets) != len(self.trackers):
            raise ValueError(f"{len(budgets)} budgets where the config has {len(self.trackers)}")
        for i, saved in enumerate(budgets):
            self.trackers[i].restore(saved["tracker"])
            self.paused[i] = [str(k) for k in saved["paused"]]
        self.take_parts(
            [_parts_of(saved["hours"]) for saved in budgets],
            [_parts_of(saved["minutes"]) for saved in budgets],
        )
        self.seq = {str(k): int(v) for k, v in data["seq"]}
        self.lifted = [  # none in snapshots before 2026-12-07
            (str(name), dict(scope), [str(k) for k in keys], str(why))
            for name, scope, keys, why in data.get("lifted", [])
        ]
        names = {cfg.name for cfg in self.configs}
        self.unseeded = [str(n) for n in data.get("unseeded", []) if n in names]

    def take_parts(self, hours: list[Parts], minutes: list[Parts]) -> None:
        """Hold the parts saved per budget (index) as those of their scopes.

        Releases before 2026-12-07 kept a copy per budget, each pruned to its own period: a
        scope holds the union. A part read by two budgets is one absolute total of the same
        rollup, so the copies agree; should one lag (a re-sent partial total, a seed from a
        store behind), the larger is kept, the later total of costs that are never negative.
        """
        for held in self.scopes.values():
            held.hours, held.minutes, held.pruned, held.keep = {}, {}, None, None
        for i, held in enumerate(self.held):
            _merge(held.hours, hours[i])
            _merge(held.minutes, minutes[i])
        for held in self.scopes.values():
            if len(held.budgets) > 1:  # in time order again (the prune reads minutes so)
                held.hours = dict(sorted(held.hours.items()))
                held.minutes = dict(sorted(held.minutes.items()))


def _merge(into: Parts, parts: Parts) -> None:
    """Add ``parts`` to ``into``, a part held in both keeping the larger total."""
    for start, by in parts.items():
        have = into.get(start)
        if have is None:
            into[start] = dict(by)
            continue
        for part, cost in by.items():
            if cost > have.get(part, -1):
                have[part] = cost


def _parts_rows(parts: Parts) -> list[list[Any]]:
    return [[start, [[p, e, cost] for (p, e), cost in by.items()]] for start, by in parts.items()]


def _parts_of(rows: list[list[Any]]) -> Parts:
    return {int(start): {(int(p), int(e)): int(cost) for p, e, cost in by} for start, by in rows}
