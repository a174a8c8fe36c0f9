"""Hours to verdicts to candidates: closing an hour, the early look, narrowing a broad anomaly.

``close`` feeds an hour the watermark has passed to every series' detectors (they learn it);
``peek`` scores the open hours changed since the last look without learning (spend only
grows, so an hour that already looks like a runaway will close as one: an alert minutes
in, not an hour later); ``narrowest`` restates a broad anomaly at the key that explains it.
Anomalous verdicts become ``Candidate``s, in dollars, for ``_incidents`` to group.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

from spendbrake.detectors._bank import Bank
from spendbrake.detectors._base import Detector, Verdict, usd
from spendbrake.detectors._book import SeriesBook
from spendbrake.detectors._incidents import Candidate, Scope, inside, narrowed, rank
from spendbrake.detectors._recent import STEPS, look_all
from spendbrake.detectors._series import (
    ASLEEP_FROM,
    CLOSED_CALLS,
    CLOSED_COST,
    CLOSED_HOUR,
    HEAD,
    LAST_SPEND,
    Series,
    metric_value,
    weight,
)
from spendbrake.schemas import NUSD, Config, DetectorConfig

__all__ = ["Scoring"]

HOUR = 3600
#: Least share of an hour an early look judges calls over as a rate (five minutes).
PEEK_MIN_SHARE = 300 / HOUR

#: An early look's plan for the series of one list of detector entries (``Scoring._plan``).
_Plan = tuple[float, tuple[tuple[int, DetectorConfig, float], ...]]
#: A series' attributes, with a key's team, feature... (``KeyDirectory.known``).
Known = Callable[[Scope], dict[str, str | None]]


class Scoring:
    """Runs the series' detectors on closed and open hours.

    Parameters
    ----------
    book
        The series.
    known
        A series' known attributes (its scope, plus the key directory's for a key).
    cpc_min_usd
        Dollar impact a cost-per-call anomaly needs (excess per call x calls in the hour).
    """

    def __init__(self, book: SeriesBook, known: Known, cpc_min_usd: float) -> None:
        self.book = book
        self.known = known
        self.cpc_min_usd = cpc_min_usd
        #: ``_plan`` by (detector entries, bank kind), under ``_plans_config``.
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._plans_config: Config | None = None

    def close(self, hour: int, config: Config) -> list[Candidate]:
        """Feed ``hour`` to every series' detectors; the anomalous verdicts as candidates.

        A series silent for longer than its detectors look back (``sleep_after_s``) sleeps:
        its silent hours are learned when it next spends, or is peeked at, and not before.
        A silent hour cannot alert once nothing the detectors compare is left in their
        windows (the conformance suite checks every detector for it), so this only defers
        work: a flood of one-off customers or keys costs what its spend costs, not an update
        per series every hour for two weeks.

        Sooner, a series silent in an hour none of its detectors can alert on dozes
        (``SeriesBook.doze``): the close visits only the series the book says
        (``closing``: awake, or dozing into an hour whose silence may alert), and a dozing
        series learns its silent hours as a run when it next spends, is looked at, or comes
        due (``SeriesBook.settle``), to the state and verdicts an update every hour gives.
        """
        found: list[tuple[Series, Candidate]] = []
        book = self.book
        visit = book.closing(hour)
        awake = book.awake  # those visited that stay awake, noted again for the next close
        for series in visit:
            st = series.state
            if st[ASLEEP_FROM] < 0:  # dozing: due if its silence may alert now
                if book.quiet_until(series, hour, config) > hour:
                    continue
                book.settle(series, hour, config)
                st = series.state
                if st[ASLEEP_FROM]:
                    continue  # it would have been asleep by now
            if st[ASLEEP_FROM] and len(st) == HEAD:
                continue  # asleep, no open hour
            cost, calls = series.close_hour(hour)
            st = series.state
            if not calls and not cost:
                if st[ASLEEP_FROM]:
                    if len(st) > HEAD:
                        awake.append(series.key)
                    continue
                if hour - st[LAST_SPEND] >= book.sleep_after_s(series):
                    series.asleep_from = hour
                    if len(st) > HEAD:
                        awake.append(series.key)
                    continue
                if len(st) == HEAD and book.doze(series, hour, config):
                    continue
            elif st[ASLEEP_FROM]:
                series.wake(hour, config)
            awake.append(series.key)
            for i, det in zip(series.slots, series.bank.at(series.row), strict=True):
                cfg = config.detectors[i]
                verdict = det.update(
                    float(hour), metric_value(cfg, cost, calls), weight(cfg, det, calls)
                )
                c = self._candidate(series, cfg, det, verdict, hour, cost, calls)
                if c is not None:
                    found.append((series, c))
        if len({id(s) for s, _ in found}) > 1:
            # In the book's order, as a close over every series found them.
            order = {id(s): n for n, s in enumerate(book.series.values())}
            found.sort(key=lambda sc: order[id(sc[0])])
        return [c for _, c in found]

    def peek(
        self,
        now: float,
        closed_until: int | None,
        config: Config,
        looks_from: int | None = None,
        step_s: float = 300.0,
        seen_of: Callable[[int], float] | None = None,
    ) -> list[Candidate]:
        """Score the open hours changed since the last look, up to ``now``, learning nothing.

        With ``looks_from`` (the first of the run of looks at every ``step_s`` up to this
        one), each changed series' newest hour is also judged on its recent rate: its calls
        in the last ``STEPS`` steps (``_recent``), which a surge late in an hour fills while
        the hour's total still dilutes it.

        ``seen_of(hour)``: the share of an open hour its totals hold (``EventClock.seen``);
        without it, the share up to ``now``.

        A step's changed hours are read first, then their recent rates; an hour under every
        early-looking detector's ``min_usd`` (``_plan``, one int compare) asks none of them:
        about 97 % of the hours a replay looks at, where ``_worth_peeking`` took a call a
        detector to say no.
        """
        book = self.book
        dirty, book.dirty = book.dirty, set()
        closed = -math.inf if closed_until is None else closed_until
        rows: list[tuple[Series, int, int, int, int, int]] = []
        #: A series' newest changed hour: its last row (rows come in hour order).
        newest: dict[int, int] = {}
        get = book.series.get
        for sk, hour in sorted(dirty, key=_HOUR_OF):  # a series' hours in order
            series = get(sk)
            if series is None or hour < closed:
                continue  # forgotten, or learned since it changed
            if hour > now:
                book.dirty.add((sk, hour))  # past the watermark: earlier hours are learned first
                continue
            cost, calls = series.total(hour)
            st = series.state
            if st[ASLEEP_FROM] and closed_until is not None:
                book.wake(series, closed_until, config)
            newest[id(series)] = len(rows)
            rows.append((series, hour, cost, calls, st[CLOSED_COST], st[CLOSED_CALLS]))
        recent = self._rates(rows, newest.values(), now, looks_from, step_s)
        plans = self._plans_for(config)
        seen_by_hour: dict[int, float] = {}
        found = []
        for k, (series, hour, cost, calls, closed_cost, closed_calls) in enumerate(rows):
            bank = series.bank
            plan = plans.get((bank.slots, type(bank)))
            if plan is None:
                plan = plans[(bank.slots, type(bank))] = self._plan(series, config)
            floor, peekers = plan
            if cost < floor:
                continue  # under every early-looking detector's ``min_usd``: none would look
            # The share of the hour seen so far (at least one early-look step, so a minute's
            # calls are not judged as a rate on their own).
            seen = seen_by_hour.get(hour)
            if seen is None:
                share = (now - hour) / HOUR if seen_of is None else seen_of(hour)
                seen = seen_by_hour[hour] = min(1.0, max(PEEK_MIN_SHARE, share))
            dets = bank.at(series.row)
            for p, cfg, at_least in peekers:
                if cost < at_least:
                    continue  # under its ``min_usd``
                det = dets[p]
                value = metric_value(cfg, cost, calls)
                if not _worth_peeking(
                    cfg, det, value, calls, closed_cost, closed_calls, seen, recent[k]
                ):
                    continue
                w = weight(cfg, det, calls)
                if det.peeks_partial:
                    verdict = det.peek(float(hour), value, w, seen, recent[k])  # type: ignore[call-arg]
                elif det.may_alert(float(hour), value, w):
                    verdict = det.peek(float(hour), value, w)
                else:
                    continue
                c = self._candidate(series, cfg, det, verdict, hour, cost, calls)
                if c is not None:
                    found.append(c)
        return found

    @staticmethod
    def _rates(
        rows: list[tuple[Series, int, int, int, int, int]],
        newest: Iterable[int],
        now: float,
        looks_from: int | None,
        step_s: float,
    ) -> list[tuple[float, float] | None]:
        """Each row's recent rate (``_recent``): (calls in the last ``STEPS`` steps, their
        share of an hour) for each series' newest row, recording this look's calls in its
        ring; None for the others, and while unknown."""
        recent: list[tuple[float, float] | None] = [None] * len(rows)
        step = int(now // step_s)
        hour_steps = int(HOUR // step_s)
        if looks_from is None or hour_steps * step_s != HOUR or hour_steps < STEPS:
            return recent
        share = min(1.0, (now - (step - STEPS) * step_s) / HOUR)
        current = step // hour_steps * HOUR
        rated = list(newest)
        series = [rows[k][0] for k in rated]
        calls = [
            calls if hour == current else s.calls_of(current)
            for s, hour, _, calls, _, _ in (rows[k] for k in rated)
        ]
        for k, got in zip(
            rated, look_all(series, calls, step, looks_from, hour_steps), strict=True
        ):
            if got is not None:
                recent[k] = (float(got), share)
        return recent

    def _plans_for(self, config: Config) -> dict[tuple[Any, ...], _Plan]:
        """The early-look plans of ``_plan`` by (detector entries, bank kind), for
        ``config``: a list of entries means the same detectors, of the same hyperparameters,
        under one config."""
        if config is not self._plans_config:
            self._plans, self._plans_config = {}, config
        return self._plans

    def _plan(self, series: Series, config: Config) -> _Plan:
        """(the least cost_nusd of an open hour one of the series' early-looking detectors
        may be worth peeking at, and (position, entry, its own least) of each of them).

        A detector's least is its ``min_usd`` bar as an int (``cost_floor``), or -inf where
        ``_worth_peeking`` may look whatever the cost (a metric other than a cost, a detector
        outside a bank, whose bar may differ from its bank-mates'). Why: most hours a replay
        looks at are under ``min_usd``; one int compare tells so, where ``_worth_peeking``
        took a call a detector."""
        dets = series.bank.at(series.row)
        peekers = []
        for p, i in self.book.peekers(series):
            cfg, det = config.detectors[i], dets[p]
            least = -math.inf
            if cfg.metric == "cost_usd" and type(series.bank) is Bank:
                least = cost_floor(getattr(det, "min_usd", 0.0))
            peekers.append((p, cfg, least))
        return min((least for _, _, least in peekers), default=math.inf), tuple(peekers)

    def _candidate(
        self,
        series: Series,
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
            known=self.known(series.scope),
        )

    def narrowest(
        self, root: Candidate, closed_until: int | None, config: Config, explain: float = 0.5
    ) -> Candidate:
        """The most specific series whose own excess explains a broad anomaly, else ``root``.

        A team's total often crosses its threshold before the looping key inside it does
        (a sum is less noisy): the alert still belongs to the key, the one thing to act on.
        """
        if root.kind != "anomaly" or rank(root.scope)[0]:
            return root
        hour = int(root.window_start)
        best: Candidate | None = None
        for series in self.book.series.values():
            known = self.known(series.scope)
            if not inside(known, series.scope, root.scope):
                continue
            det = next(
                (d for i, d in series.detectors if config.detectors[i].metric == "cost_usd"),
                None,
            )
            if det is None or getattr(det, "window_s", HOUR) > HOUR:
                continue
            if series.state[ASLEEP_FROM] and closed_until is not None:
                self.book.wake(series, closed_until, config)
            st = series.state
            cost = st[CLOSED_COST] if st[CLOSED_HOUR] == hour else series.total(hour)[0]
            v = det.peek(float(hour), cost / NUSD)
            # A key with nothing learned for this hour (a new key looping from its first
            # hour): all it spends is excess. Without it the alert stayed at the team, where
            # no policy may pause (``actions.apply_policies``), and the loop ran on.
            expected = 0.0 if v.expected is None else v.expected
            if v.observed - expected < explain * root.excess_usd:
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
                excess_usd=v.observed - expected,
                score=root.score,
                severity=root.severity,
                reason=v.reason
                if v.expected is not None
                else f"spend {usd(v.observed)}/h where nothing is learned yet",
                known=known,
            )
            if best is None or (*rank(c.scope), c.excess_usd) > (
                *rank(best.scope),
                best.excess_usd,
            ):
                best = c
        return root if best is None else narrowed(root, best)


def _worth_peeking(
    cfg: DetectorConfig,
    det: Detector,
    value: float,
    calls: int,
    closed_cost: int,
    closed_calls: int,
    seen: float = 1.0,
    recent: tuple[float, float] | None = None,
) -> bool:
    """Skip early looks that cannot alert or are not urgent (they cost replay speed).

    ``closed_cost``, ``closed_calls``: the hour the series' detectors learned last (numbers,
    not a tuple: this runs for about 200k detectors a 1M-event replay, those over their
    cost floor). A cost that has not yet passed the whole previous hour's is no runaway in
    the making: the hour's close still judges it, minutes later. A detector that judges the
    part of the hour seen as a rate (``peeks_partial``) compares with that part of the
    previous hour: a loop that began late in the previous hour made it dear, and must not
    wait for this one to outspend it.
    """
    if getattr(det, "window_s", HOUR) > HOUR:
        return False  # a whole-day comparison (wow) is about trends: its close will do
    if cfg.metric == "cost_per_call":
        # A few calls into the hour say little about the mix, unless the detector weighs
        # each call's evidence (``shift``: a CUSUM over calls).
        return calls >= (1 if getattr(det, "weighs_calls", False) else 10)
    if cfg.metric == "calls":
        return value > closed_calls
    if not value > getattr(det, "min_usd", 0.0):
        return False
    if det.peeks_partial and recent is not None and recent[0] > closed_calls * recent[1]:
        return True  # the last minutes' calls outrun the previous hour's rate
    share = seen if det.peeks_partial else 1.0
    return value * NUSD > closed_cost * share


def cost_floor(min_usd: float) -> float:
    """The least cost_nusd ``c`` with ``c / NUSD > min_usd`` (``_worth_peeking``'s rule, in
    its floats): every larger int passes the rule and every smaller one fails it, since an
    int's true division is correctly rounded and so never falls as ``c`` grows. inf when no
    int passes (NaN, inf), -inf when all do."""
    if isinstance(min_usd, float) and not math.isfinite(min_usd):
        return -math.inf if min_usd == -math.inf else math.inf
    low = math.floor(min_usd) * NUSD  # fails: ``low / NUSD`` is exactly floor(min_usd)
    span = NUSD
    while not (low + span) / NUSD > min_usd:
        low, span = low + span, 2 * span
    high = low + span
    while high - low > 1:  # low fails, high passes
        mid = (low + high) // 2
        if mid / NUSD > min_usd:
            high = mid
        else:
            low = mid
    return high


#: A dirty entry's hour: the sort key of an early look's entries.
_HOUR_OF = operator.itemgetter(1)
