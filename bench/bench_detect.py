"""Detector evaluation: replay labeled scenarios through the engine and score the alerts.

Why: on-call trust is the product, so the default detectors must be shown to catch
runaways quickly *and* stay quiet on legitimate volatility, against the rules people use
today. Each contender replays the same event stream (``bench.scenarios``) with the same
budgets and policies and differs only in its detectors:

- ``default``: ``schemas.Config()``'s detectors (baseline on cost, wow, baseline on cost
  per call);
- ``cloud_sigma``: trailing 30-day mean + 3 sigma on cost;
- ``wow_naive``: a plain 30 % week-over-week rule on cost.

The scorer is pure functions over (labels, alert records), so tests feed it hand-made
alerts. Rules (issues 5 and 18):

- An alert *is about* a series when its ``scope`` or one of its ``also`` scopes is non-empty
  and every field in it equals the series' own (a key's customers included).
- It *detects* a true incident when one of those scopes names that series alone (its key,
  team, team and feature, or one of its customers; not a model or the global total, which
  hold many series), its window overlaps ``[start - 1 h, end + 6 h]`` and it was raised
  (``detected_at``, event time) after the start.
- Pages and digest items are told apart by severity: an alert id with a ``warning`` or
  ``critical`` record is a *page* (from that record on); one whose records are all ``info``
  is a *digest item* (a trend, for the digest, never posted as a page). A runaway, a spike
  or a dearer prompt (``route: page``) is detected only by a page; a creep (``route:
  trend``) by either.
- Follow-ups share ``id``: an incident counts once. An alert id about no true incident (by
  any of its scopes, coarse ones included) is a *false page* or a *false digest item*;
  a digest item about a launch is fair (a launch is news for the weekly digest, not a
  page) and counted apart. Those first raised in the warm-up are reported apart.
- A pause (at any time) is wrong when a target's label does not allow a pause (critical
  keys, keys outside runaway scenarios) or when it detects no incident of that key.

    python -m bench detect [--seed N] [--series N] [--weeks 5] [--json]
    python -m bench detect --seeds 0-4 --jobs 2 --contenders default   # the bar per seed
    python -m bench detect --seeds 0-4 --jobs 2 --contenders default --confirm-s 0

Beside the bar: how long after it began each runaway the default policies pause (a batch
loop) was paused, the first pause of its key in detection's window (``--confirm-s``: the
pause policies wait that long for the anomaly to last, ``PolicyConfig.confirm_s``; by
default the default config's, 600; 0 pauses with the first alert).
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.scenarios import (
    HOUR,
    SCENARIOS,
    WARMUP_WEEKS,
    Labels,
    ScenarioSet,
    generate,
    key_rules,
)
from spendbrake.schemas import Config, DetectorConfig, UsageEvent

#: An alert detects an incident when its window overlaps [start - before, end + after].
PAD_BEFORE_S = 1 * HOUR
PAD_AFTER_S = 6 * HOUR
#: Budget-family alerts are scored by the budget check, not as detector alerts.
BUDGET_KINDS = frozenset({"budget", "projection", "burn_rate"})
#: Operator notices (a model without a price) are not about spend at all.
OPERATOR_KINDS = frozenset({"unpriced_model", "series_cap"})
#: Severities that page someone; ``info`` is a digest item.
PAGE_SEVERITIES = frozenset({"warning", "critical"})
AGGREGATE = "(aggregate)"
#: The issue's bar (issue 18) for the default contender.
RUNAWAY_CASES = ("runaway", "batch_runaway", "critical_spike")
CREEP_CASES = ("creep", "slow_creep")
PER_CALL_CASES = ("prompt_change", "prompt_regression")
BAR_RUNAWAY_MIN = 15.0
BAR_CREEP_MIN = 10 * 24 * 60.0
BAR_PER_CALL_MIN = 60.0
BAR_FALSE_PAGES = 2.0

Alert = Mapping[str, Any]
ReplayFn = Callable[[Iterable[UsageEvent], Config], Iterable[dict[str, Any]]]

CONTENDERS: dict[str, tuple[DetectorConfig, ...]] = {
    "default": tuple(Config().detectors),
    "cloud_sigma": (DetectorConfig(kind="cloud_sigma", metric="cost_usd"),),
    "wow_naive": (DetectorConfig(kind="wow_naive", metric="cost_usd"),),
}


# ---------------------------------------------------------------------------- scoring


@dataclass
class ScenarioScore:
    """One scenario's share of a contender's score."""

    scenario: str
    series: int = 0
    incidents: int = 0
    detected: int = 0
    delays_min: list[float] = field(default_factory=list)
    #: False pages (an alert id of severity warning or critical about no incident).
    false_alerts: int = 0
    max_false_per_series: int = 0
    #: Digest items (all records ``info``) about no incident; and those about a launch.
    false_digest: int = 0
    digest_ok: int = 0
    pauses: int = 0
    wrong_pauses: int = 0
    #: Incidents that must be paged and were flagged only in the digest.
    digest_only: int = 0

    @property
    def median_delay_min(self) -> float | None:
        return statistics.median(self.delays_min) if self.delays_min else None

    @property
    def max_delay_min(self) -> float | None:
        return max(self.delays_min) if self.delays_min else None


@dataclass
class BudgetScore:
    """Budget threshold alerts against the labeled crossings, per (budget, period, threshold)."""

    expected: int = 0
    exactly_once: int = 0
    missing: int = 0
    repeated: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        return self.exactly_once == self.expected and not self.unexpected


@dataclass
class Score:
    """One contender's numbers; ``per_scenario`` also holds ``AGGREGATE`` (e.g. global scope)."""

    incidents: int
    detected: int
    delays_min: list[float]
    #: False pages: alert ids with a warning or critical record about no incident.
    false_alerts: int
    #: False page ids by the ``detector`` of their first record: which rule cries wolf.
    false_by_detector: dict[str, int]
    warmup_alerts: int
    series_weeks: float
    alert_ids_on_incidents: int
    pauses: int
    wrong_pauses: int
    wrong_pause_ids: list[str]
    budget: BudgetScore
    budget_family: dict[str, int]
    per_scenario: dict[str, ScenarioScore]
    #: Digest items (every record ``info``): about no incident, about a launch, and in all
    #: (after the warm-up).
    false_digest: int = 0
    digest_ok: int = 0
    digest_items: int = 0
    #: Page ids after the warm-up, and those whose own scope names no single series (a
    #: model, the global total) although a narrower one was the cause or none was.
    pages: int = 0
    coarse_pages: int = 0
    #: Minutes from each incident the default policies pause (``expected_action`` pause)
    #: to its key's first pause, for those paused in its window (as detection's).
    pause_delays_min: list[float] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        return self.detected / self.incidents if self.incidents else math.nan

    @property
    def median_delay_min(self) -> float | None:
        return statistics.median(self.delays_min) if self.delays_min else None

    @property
    def p90_delay_min(self) -> float | None:
        return percentile(self.delays_min, 0.9)

    @property
    def false_per_100_series_weeks(self) -> float:
        return 100.0 * self.false_alerts / self.series_weeks if self.series_weeks else math.nan

    @property
    def false_digest_per_100_series_weeks(self) -> float:
        return 100.0 * self.false_digest / self.series_weeks if self.series_weeks else math.nan

    @property
    def ids_per_detected_incident(self) -> float | None:
        return self.alert_ids_on_incidents / self.detected if self.detected else None

    @property
    def median_pause_delay_min(self) -> float | None:
        return statistics.median(self.pause_delays_min) if self.pause_delays_min else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every figure is an observed delay)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def parse_ts(value: object) -> float | None:
    """RFC 3339 text (``Z`` or an offset) or epoch seconds to epoch seconds; None if absent."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    parsed = datetime.fromisoformat(str(value))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def detected_at(alert: Alert) -> float:
    """When the engine raised the alert (event time); the window end for older records."""
    for name in ("detected_at", "window_end", "window_start"):
        ts = parse_ts(alert.get(name))
        if ts is not None:
            return ts
    return math.nan


def scopes(alert: Alert) -> list[Mapping[str, Any]]:
    """The alert's own scope first, then the parent scopes it says the incident also showed in."""
    return [alert.get("scope") or {}, *(alert.get("also") or [])]


class SeriesIndex:
    """Finds the labeled series a scope is about: every field of the scope must match."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self._by_field: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._by_key: dict[str, int] = {}
        for i, label in enumerate(labels.series):
            for name, value in _fields(label).items():
                self._by_field[(name, value)].add(i)
            for customer in label.customers:
                self._by_field[("customer", customer)].add(i)
            self._by_key[label.api_key] = i

    def series_for(self, scope: Mapping[str, Any]) -> set[int]:
        """Series whose fields include ``scope``; none for the empty (global) scope."""
        found: set[int] | None = None
        for name, value in scope.items():
            hits = self._by_field.get((name, value), set())
            found = hits if found is None else found & hits
            if not found:
                return set()
        return set(found or ())

    def by_key(self, api_key: str) -> int | None:
        return self._by_key.get(api_key)


def _fields(label: Any) -> dict[str, str]:
    return {**label.attrs, "environment": label.environment, "workload": label.workload}


def group_by_id(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    """Records of one incident together, in emission order; a record without id stands alone."""
    groups: dict[str, list[Alert]] = defaultdict(list)
    for n, alert in enumerate(alerts):
        groups[str(alert.get("id") or f"(no id #{n})")].append(alert)
    return groups


def _matches(
    records: list[Alert], index: SeriesIndex, *, strict: bool = True
) -> dict[tuple[int, int], float]:
    """True incidents ``(series, interval)`` these records detect, with the earliest time.

    ``strict``: only by a scope that names the series alone (not a model or the global
    total, which hold many); else by any scope the series lies in (is the alert about an
    incident at all).
    """
    return _overlaps(records, index, strict=strict, incidents=True)


def _overlaps(
    records: list[Alert], index: SeriesIndex, *, strict: bool, incidents: bool
) -> dict[tuple[int, int], float]:
    found: dict[tuple[int, int], float] = {}
    for alert in records:
        start = parse_ts(alert.get("window_start"))
        end = parse_ts(alert.get("window_end"))
        start = detected_at(alert) if start is None else start
        end = start if end is None else end
        at = detected_at(alert)
        for scope in scopes(alert):
            hits = index.series_for(scope)
            if strict and len(hits) != 1:
                continue
            for s in hits:
                label = index.labels.series[s]
                if label.incident != incidents:
                    continue
                if not incidents and label.route != "digest":
                    continue
                for k, iv in enumerate(label.intervals):
                    overlaps = start < iv.end + PAD_AFTER_S and end > iv.start - PAD_BEFORE_S
                    # Raised before the incident began, it cannot be about the incident.
                    if overlaps and at >= iv.start:
                        found[(s, k)] = min(found.get((s, k), math.inf), at)
    return found


def _about(records: list[Alert], index: SeriesIndex) -> set[int]:
    """The series an incident's first record is about, its own scope first."""
    for scope in scopes(records[0]):
        hits = index.series_for(scope)
        if hits:
            return hits
    return set()


def is_page(alert: Alert) -> bool:
    """A record that pages someone: severity warning or critical (``info`` is for the digest)."""
    return str(alert.get("severity", "warning")) in PAGE_SEVERITIES


def score(labels: Labels, alerts: Iterable[Alert]) -> Score:
    """Score one contender's alert records against the labels."""
    index = SeriesIndex(labels)
    per = {spec.name: ScenarioScore(spec.name) for spec in SCENARIOS}
    per[AGGREGATE] = ScenarioScore(AGGREGATE)
    for label in labels.series:
        per.setdefault(label.scenario, ScenarioScore(label.scenario)).series += 1
    alerts = list(alerts)
    groups = group_by_id(alerts)
    first_flag: dict[tuple[int, int], float] = {}
    first_page: dict[tuple[int, int], float] = {}
    on_incidents = false_alerts = warmup = 0
    false_digest = digest_ok = digest_items = pages_n = coarse = 0
    false_per_series: Counter[int] = Counter()
    false_by_detector: Counter[str] = Counter()
    budget_family: Counter[str] = Counter()
    pauses = 0
    wrong: list[str] = []
    for alert_id, records in groups.items():
        kinds = {str(r.get("kind")) for r in records}
        if kinds <= OPERATOR_KINDS:
            continue
        paging = [r for r in records if is_page(r)]
        hits = _matches(records, index)
        for key, at in hits.items():
            first_flag[key] = min(first_flag.get(key, math.inf), at)
        for key, at in _matches(paging, index).items():
            first_page[key] = min(first_page.get(key, math.inf), at)
        if kinds & BUDGET_KINDS:
            budget_family[sorted(kinds & BUDGET_KINDS)[0]] += 1
        about = _about(records, index)
        scenarios = {labels.series[s].scenario for s in about}
        where = scenarios.pop() if len(scenarios) == 1 else AGGREGATE
        on_any = bool(hits) or bool(_matches(records, index, strict=False))
        if on_any:
            on_incidents += 1
        raised = min(detected_at(r) for r in records)
        if not kinds & BUDGET_KINDS and raised >= labels.scored_from:
            if paging:
                pages_n += 1
                if len(index.series_for(records[0].get("scope") or {})) != 1:
                    coarse += 1
            else:
                digest_items += 1
        if not on_any and not kinds & BUDGET_KINDS:
            if raised < labels.scored_from:
                warmup += 1
            elif not paging:
                if _overlaps(records, index, strict=False, incidents=False):
                    digest_ok += 1
                    per[where].digest_ok += 1
                else:
                    false_digest += 1
                    per[where].false_digest += 1
            else:
                false_alerts += 1
                false_by_detector[str(paging[0].get("detector"))] += 1
                per[where].false_alerts += 1
                if len(about) == 1:
                    false_per_series[next(iter(about))] += 1
        if any(r.get("action") == "pause" for r in records):
            pauses += 1
            per[where].pauses += 1
            if _wrong_pause(records, hits, index):
                wrong.append(alert_id)
                per[where].wrong_pauses += 1
    for s, n in false_per_series.items():
        row = per[labels.series[s].scenario]
        row.max_false_per_series = max(row.max_false_per_series, n)
    delays = _tally_incidents(labels, first_flag, first_page, per)
    return Score(
        incidents=sum(r.incidents for r in per.values()),
        detected=sum(r.detected for r in per.values()),
        delays_min=delays,
        false_alerts=false_alerts,
        false_by_detector=dict(false_by_detector),
        warmup_alerts=warmup,
        series_weeks=len(labels.series) * labels.scored_weeks,
        alert_ids_on_incidents=on_incidents,
        pauses=pauses,
        wrong_pauses=len(wrong),
        wrong_pause_ids=wrong,
        budget=score_budgets(labels, alerts),
        budget_family=dict(budget_family),
        per_scenario=per,
        false_digest=false_digest,
        digest_ok=digest_ok,
        digest_items=digest_items,
        pages=pages_n,
        coarse_pages=coarse,
        pause_delays_min=_pause_delays(labels, alerts),
    )


def _pause_delays(labels: Labels, alerts: Sequence[Alert]) -> list[float]:
    """Minutes from the start of each incident to be paused to its key's first pause, raised
    after the start and by six hours after its end (detection's window); unpaused ones left
    out (``paused`` of ``expected`` tells them)."""
    paused: dict[str, list[float]] = defaultdict(list)
    for a in alerts:
        if a.get("action") == "pause":
            for key in a.get("targets") or []:
                paused[str(key)].append(detected_at(a))
    delays = []
    for label in labels.series:
        if label.expected_action != "pause":
            continue
        for iv in label.intervals:
            times = [t for t in paused.get(label.api_key, ()) if iv.start <= t <= iv.end + 6 * HOUR]
            if times:
                delays.append((min(times) - iv.start) / 60.0)
    return delays


def _tally_incidents(
    labels: Labels,
    first_flag: Mapping[tuple[int, int], float],
    first_page: Mapping[tuple[int, int], float],
    per: dict[str, ScenarioScore],
) -> list[float]:
    """Count each true incident and its delay (minutes) into its scenario; return all delays.

    An incident to be paged counts from its first page; a trend from its first record.
    """
    delays: list[float] = []
    for s, label in enumerate(labels.series):
        for k, iv in enumerate(label.intervals if label.incident else ()):
            row = per[label.scenario]
            row.incidents += 1
            at = (first_flag if label.route == "trend" else first_page).get((s, k))
            if at is None and (s, k) in first_flag:
                row.digest_only += 1
            if at is not None:
                row.detected += 1
                row.delays_min.append((at - iv.start) / 60.0)
                delays.append((at - iv.start) / 60.0)
    return delays


def _wrong_pause(
    records: list[Alert], hits: dict[tuple[int, int], float], index: SeriesIndex
) -> bool:
    """A pause is wrong if a target may never be paused or has no incident this id detects."""
    detected = {s for s, _ in hits}
    for alert in records:
        if alert.get("action") != "pause":
            continue
        for key in alert.get("targets") or []:
            s = index.by_key(str(key))
            if s is None or not index.labels.series[s].pause_allowed or s not in detected:
                return True
    return False


def score_budgets(labels: Labels, alerts: Iterable[Alert]) -> BudgetScore:
    """Each labeled threshold crossing must fire exactly once, and nothing else may fire.

    A ``budget`` record belongs to the period containing its ``window_start``; every
    record counts, follow-ups included, since a threshold never has a second alert.
    """
    budgets = {lb.budget.name: lb.budget for lb in labels.series if lb.budget is not None}
    fired: Counter[tuple[str, float, float]] = Counter()
    for alert in alerts:
        name, threshold = alert.get("budget"), alert.get("threshold")
        if alert.get("kind") != "budget" or name not in budgets or threshold is None:
            continue
        budget = budgets[name]
        at = parse_ts(alert.get("window_start"))
        at = detected_at(alert) if at is None else at
        i = max(0, bisect.bisect_right(budget.periods, at) - 1)
        fired[(name, budget.periods[i], round(float(threshold), 6))] += 1
    expected = {(b.name, period, round(t, 6)) for b in budgets.values() for period, t in b.expected}
    counts = [fired.get(key, 0) for key in expected]
    return BudgetScore(
        expected=len(expected),
        exactly_once=sum(c == 1 for c in counts),
        missing=sum(c == 0 for c in counts),
        repeated=sum(c > 1 for c in counts),
        unexpected=sum(n for key, n in fired.items() if key not in expected),
    )


# ---------------------------------------------------------------------------- running


@dataclass
class Run:
    """One contender's replay: its alert records and how fast the replay went."""

    name: str
    alerts: list[dict[str, Any]]
    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.nan


def contender_config(name: str, scenarios: ScenarioSet, confirm_s: int | None = None) -> Config:
    """The contender's detectors with the run's budgets, the default policies and the keys
    section naming each scenario's keys with its workload; ``confirm_s`` on the pause
    policies (``PolicyConfig.confirm_s``; None: the default policies' own)."""
    policies = [
        p.model_copy(update={"confirm_s": confirm_s})
        if p.action == "pause" and confirm_s is not None
        else p
        for p in Config().policies
    ]
    return Config(
        detectors=list(CONTENDERS[name]),
        budgets=scenarios.budgets,
        keys=key_rules(),
        policies=policies,
    )


def load_replay() -> ReplayFn:
    """The engine's in-process replay, imported late so the scorer works without it."""
    try:
        from spendbrake._replay import replay
    except ImportError as exc:
        raise SystemExit(f"spendbrake._replay is not available yet ({exc})") from None
    return replay


def run_contender(
    name: str, scenarios: ScenarioSet, replay: ReplayFn, confirm_s: int | None = None
) -> Run:
    """Replay the whole stream once with this contender's config, collecting every alert."""
    config = contender_config(name, scenarios, confirm_s)
    started = time.perf_counter()
    alerts = [dict(a) for a in replay(scenarios.events(), config)]
    return Run(name, alerts, len(scenarios), time.perf_counter() - started)


def stream_rate(scenarios: ScenarioSet) -> float:
    """Events/s of building the stream alone: the floor under every replay figure."""
    started = time.perf_counter()
    n = sum(1 for _ in scenarios.events())
    return n / (time.perf_counter() - started)


# ---------------------------------------------------------------------------- reporting


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _detectors(name: str) -> str:
    return ", ".join(
        d.kind if d.metric == "cost_usd" else f"{d.kind} ({d.metric})" for d in CONTENDERS[name]
    )


def summary_table(runs: Sequence[Run], scores: Mapping[str, Score]) -> str:
    """One markdown row per contender."""
    head = (
        "| contender | detectors | detection | median delay (min) | p90 delay (min) "
        "| false pages / 100 series-weeks | digest items (false / launch / all) "
        "| pages on a coarse scope | wrong pauses | budget thresholds exactly once "
        "| replay events/s |"
    )
    rows = [head, "|" + " --- |" * 11]
    for run in runs:
        s = scores[run.name]
        b = s.budget
        budget = (
            f"{'yes' if b.ok else 'no'} ({b.exactly_once}/{b.expected}; missing {b.missing}, "
            f"repeated {b.repeated}, unexpected {b.unexpected})"
        )
        rows.append(
            f"| {run.name} | {_detectors(run.name)} "
            f"| {s.detected}/{s.incidents} ({100 * s.detection_rate:.0f} %) "
            f"| {_num(s.median_delay_min)} | {_num(s.p90_delay_min)} "
            f"| {s.false_per_100_series_weeks:.1f} ({s.false_alerts}) "
            f"| {s.false_digest} / {s.digest_ok} / {s.digest_items} "
            f"| {s.coarse_pages} of {s.pages} "
            f"| {s.wrong_pauses} of {s.pauses} | {budget} | {_num(run.events_per_s, '{:,.0f}')} |"
        )
    return "\n".join(rows)


def scenario_table(
    runs: Sequence[Run], scores: Mapping[str, Score], weeks_scored: float = math.nan
) -> str:
    """Rows per scenario; each cell: detected/incidents in median (max) delay, false pages
    (and per 100 series-weeks), false digest items, pauses."""
    about = {spec.name: spec.about for spec in SCENARIOS}
    about[AGGREGATE] = "alerts whose scope is no single scenario (e.g. global)"
    names = [run.name for run in runs]
    rows = [
        "| scenario | what | series | " + " | ".join(names) + " |",
        "|" + " --- |" * (3 + len(names)),
    ]
    for scenario in [spec.name for spec in SCENARIOS] + [AGGREGATE]:
        cells = []
        for name in names:
            r = scores[name].per_scenario[scenario]
            parts = []
            if r.incidents:
                parts.append(
                    f"{r.detected}/{r.incidents} in {_num(r.median_delay_min)} min "
                    f"(max {_num(r.max_delay_min)})"
                )
                if r.digest_only:
                    parts.append(f"{r.digest_only} in the digest only")
            false = f"{r.false_alerts} false"
            if r.series and weeks_scored == weeks_scored:
                false += f" ({100 * r.false_alerts / (r.series * weeks_scored):.1f}/100 sw)"
            if r.max_false_per_series:
                false += f" (max {r.max_false_per_series}/series)"
            parts.append(false)
            if r.false_digest or r.digest_ok:
                parts.append(f"digest {r.false_digest} false, {r.digest_ok} on launches")
            if r.pauses:
                parts.append(f"{r.pauses} pauses, {r.wrong_pauses} wrong")
            cells.append(" · ".join(parts))
        series = scores[names[0]].per_scenario[scenario].series if names else 0
        rows.append(f"| {scenario} | {about[scenario]} | {series or '–'} | {' | '.join(cells)} |")
    return "\n".join(rows)


def bar(s: Score) -> list[tuple[bool, str]]:
    """The issue's bar (issue 18), line by line: (met, what was measured)."""
    return [(ok, f"{name} {figure}") for ok, name, figure in bar_lines(s)]


def bar_lines(s: Score) -> list[tuple[bool, str, str]]:
    """The bar's lines as (met, the line's name, the figure measured against it)."""
    per = s.per_scenario

    def delays(cases: Iterable[str]) -> list[float]:
        return [d for c in cases if c in per for d in per[c].delays_min]

    def count(cases: Iterable[str]) -> tuple[int, int]:
        return sum(per[c].detected for c in cases if c in per), sum(
            per[c].incidents for c in cases if c in per
        )

    runaway, creep, per_call = delays(RUNAWAY_CASES), delays(CREEP_CASES), delays(PER_CALL_CASES)
    med = statistics.median(runaway) if runaway else math.inf
    creep_max = max(creep) if creep else math.inf
    call_med = statistics.median(per_call) if per_call else math.inf
    call_max = max(per_call) if per_call else math.inf
    d_creep, n_creep = count(CREEP_CASES)
    d_call, n_call = count(PER_CALL_CASES)
    return [
        (s.detected == s.incidents, "every incident detected:", f"{s.detected}/{s.incidents}"),
        (med <= BAR_RUNAWAY_MIN, "runaways and spikes, median delay", f"{med:.0f} min (<= 15)"),
        (
            d_creep == n_creep and creep_max <= BAR_CREEP_MIN,
            "creeps",
            f"{d_creep}/{n_creep}, the latest after {creep_max / 1440:.1f} days (<= 10)",
        ),
        (
            d_call == n_call and call_med <= BAR_PER_CALL_MIN,
            "cost per call",
            f"{d_call}/{n_call}, median {call_med:.0f} min (<= 60), max {call_max:.0f} min",
        ),
        (
            s.false_per_100_series_weeks <= BAR_FALSE_PAGES,
            "false pages",
            f"{s.false_per_100_series_weeks:.1f} per 100 series-weeks (<= 2)",
        ),
        (s.wrong_pauses == 0, "wrong pauses", f"{s.wrong_pauses}"),
        (s.budget.ok, "budget thresholds exactly once:", "yes" if s.budget.ok else "no"),
    ]


def preamble(scenarios: ScenarioSet, stream_eps: float | None) -> str:
    labels = scenarios.labels
    n = len(labels.series)
    weeks = scenarios.weeks
    first = WARMUP_WEEKS + 1
    scored = f"week {weeks}" if first == weeks else f"weeks {first}-{weeks}"
    lines = [
        f"Detector evaluation: seed {scenarios.seed}, {len(SCENARIOS)} scenarios x "
        f"{scenarios.series_per_scenario} series ({n} series), {weeks} weeks of hourly-seasonal "
        f"traffic, {len(scenarios):,} events ({scenarios.duplicates:,} duplicates, "
        f"{scenarios.late:,} late by up to 2 h, in the budget scenario).",
        f"Weeks 1-{WARMUP_WEEKS} are warm-up, so 30-day baselines and two-week warm-ups have "
        f"history; every incident starts after week {WARMUP_WEEKS}. False alerts are counted "
        f"over {scored} ({n * labels.scored_weeks:.0f} series-weeks). An incident is detected "
        f"by an alert on its series whose window overlaps [start - {PAD_BEFORE_S / HOUR:.0f} h, "
        f"end + {PAD_AFTER_S / HOUR:.0f} h], raised after the start; delay is detected_at - "
        "start in event time.",
    ]
    if stream_eps is not None:
        lines.append(f"Building the event stream alone runs at {stream_eps:,.0f} events/s.")
    return "\n".join(lines)


def report_json(
    scenarios: ScenarioSet, runs: Sequence[Run], scores: Mapping[str, Score], stream_eps: float
) -> dict[str, Any]:
    labels = scenarios.labels
    out: dict[str, Any] = {
        "seed": scenarios.seed,
        "series_per_scenario": scenarios.series_per_scenario,
        "series": len(labels.series),
        "weeks": scenarios.weeks,
        "warmup_weeks": WARMUP_WEEKS,
        "events": len(scenarios),
        "duplicates": scenarios.duplicates,
        "late": scenarios.late,
        "series_weeks_scored": len(labels.series) * labels.scored_weeks,
        "stream_events_per_s": stream_eps,
        "contenders": {},
    }
    for run in runs:
        s = scores[run.name]
        body = asdict(s)
        body.pop("per_scenario")
        body.update(
            detectors=[d.model_dump() for d in CONTENDERS[run.name]],
            detection_rate=s.detection_rate,
            median_delay_min=s.median_delay_min,
            p90_delay_min=s.p90_delay_min,
            false_per_100_series_weeks=s.false_per_100_series_weeks,
            false_digest_per_100_series_weeks=s.false_digest_per_100_series_weeks,
            bar=[
                {"met": ok, "what": f"{name} {figure}", "line": name.rstrip(":"), "figure": figure}
                for ok, name, figure in bar_lines(s)
            ],
            ids_per_detected_incident=s.ids_per_detected_incident,
            median_pause_delay_min=s.median_pause_delay_min,
            budget_ok=s.budget.ok,
            alerts=len(run.alerts),
            replay_seconds=run.seconds,
            replay_events_per_s=run.events_per_s,
            per_scenario={
                k: {
                    **asdict(v),
                    "median_delay_min": v.median_delay_min,
                    "max_delay_min": v.max_delay_min,
                }
                for k, v in s.per_scenario.items()
            },
        )
        out["contenders"][run.name] = body
    return out


def save_run(run: Run, directory: Path) -> None:
    """Keep a replay's alerts (JSONL) and timing, so it can be scored again without replaying."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"alerts-{run.name}.jsonl", "wb") as fh:
        for alert in run.alerts:
            fh.write(orjson.dumps(alert, option=orjson.OPT_APPEND_NEWLINE))
    meta = {"events": run.events, "seconds": run.seconds}
    (directory / f"alerts-{run.name}.meta.json").write_bytes(orjson.dumps(meta))


def load_run(name: str, directory: Path) -> Run:
    """A run saved by ``save_run``; without its timing file the speed is unknown (NaN)."""
    with open(directory / f"alerts-{name}.jsonl", "rb") as fh:
        alerts = [orjson.loads(line) for line in fh if line.strip()]
    meta_path = directory / f"alerts-{name}.meta.json"
    meta = orjson.loads(meta_path.read_bytes()) if meta_path.exists() else {}
    return Run(name, alerts, meta.get("events", 0), meta.get("seconds", math.nan))


def print_report(
    scenarios: ScenarioSet, runs: Sequence[Run], scores: Mapping[str, Score], stream_eps: float
) -> None:
    print(preamble(scenarios, stream_eps))
    print()
    print(summary_table(runs, scores))
    print()
    print(scenario_table(runs, scores, scenarios.labels.scored_weeks))
    print()
    for run in runs:
        s = scores[run.name]
        false = ", ".join(f"{k} {v}" for k, v in sorted(s.false_by_detector.items())) or "none"
        budget = ", ".join(f"{k} {v}" for k, v in sorted(s.budget_family.items())) or "none"
        print(
            f"{run.name}: false page ids by detector: {false}; raised in the warm-up: "
            f"{s.warmup_alerts}; budget-family alert ids: {budget}; runaways to pause: "
            f"{len(s.pause_delays_min)} paused, median {_num(s.median_pause_delay_min)} min "
            "from their start"
        )
    for run in runs:
        lines = bar(scores[run.name])
        met = sum(ok for ok, _ in lines)
        print(f"\n{run.name} against the bar (issue 18): {met} of {len(lines)} met")
        for ok, what in lines:
            print(f"  [{'x' if ok else ' '}] {what}")


def main(argv: list[str] | None = None, replay: ReplayFn | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=20, help="series per scenario (20)")
    parser.add_argument("--weeks", type=int, default=5, help=f"at least {WARMUP_WEEKS + 1}")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated subset to run"
    )
    parser.add_argument("--dump", type=Path, help="save each contender's alerts and timing here")
    parser.add_argument(
        "--rescore", type=Path, help="score alerts saved by --dump (same seed/series/weeks)"
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        help="several seeds (0-4 or 0,3,7): one table of the bar per seed, instead of one report "
        "(--dump and --rescore then use a folder seed-S per seed)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="seeds evaluated at once, one process each (1)"
    )
    parser.add_argument(
        "--confirm-s",
        type=int,
        default=None,
        help="confirm_s of the pause policies: pause only once an anomaly has lasted this long "
        "(default: the default config's, 600)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; use {', '.join(CONTENDERS)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.seeds is not None:
        return _main_seeds(args, names, replay)
    scenarios, runs, scores, stream_eps = evaluate(
        args.seed, args.series, args.weeks, names, replay, args.dump, args.rescore, args.confirm_s
    )
    result = report_json(scenarios, runs, scores, stream_eps)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        print_report(scenarios, runs, scores, stream_eps)
    return result


def evaluate(
    seed: int,
    series: int,
    weeks: int,
    names: Sequence[str],
    replay: ReplayFn | None,
    dump: Path | None = None,
    rescore: Path | None = None,
    confirm_s: int | None = None,
) -> tuple[ScenarioSet, list[Run], dict[str, Score], float]:
    """One seed's scenarios, each contender's alerts (replayed, or read back from
    ``rescore``) and their scores."""
    if rescore is None and replay is None:
        replay = load_replay()
    scenarios = generate(seed=seed, series=series, weeks=weeks)
    stream_eps = stream_rate(scenarios)
    runs, scores = [], {}
    for name in names:
        if rescore is not None:
            run = load_run(name, rescore)
        else:
            assert replay is not None
            print(
                f"seed {seed}: replaying {len(scenarios):,} events with {name} ...", file=sys.stderr
            )
            run = run_contender(name, scenarios, replay, confirm_s)
        if dump:
            save_run(run, dump)
        runs.append(run)
        scores[name] = score(scenarios.labels, run.alerts)
    return scenarios, runs, scores, stream_eps


def seed_list(text: str) -> list[int]:
    """``0-4`` or ``0,3,7`` (or both: ``0-2,9``), each seed once, in order."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use seeds like 0-4 or 0,3,7") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed")
    return list(dict.fromkeys(seeds))


def _one_seed(
    seed: int, args: argparse.Namespace, names: Sequence[str], replay: ReplayFn | None
) -> dict[str, Any]:
    folder = f"seed-{seed}"
    dump = args.dump / folder if args.dump else None
    rescore = args.rescore / folder if args.rescore else None
    scenarios, runs, scores, eps = evaluate(
        seed, args.series, args.weeks, names, replay, dump, rescore, args.confirm_s
    )
    return report_json(scenarios, runs, scores, eps)


def _main_seeds(
    args: argparse.Namespace, names: Sequence[str], replay: ReplayFn | None
) -> dict[str, Any]:
    """Every seed of ``--seeds``, then the bar per contender and seed in one table: a change
    tuned on one seed shows here whether it holds on the others."""
    seeds: list[int] = args.seeds
    if args.jobs > 1 and replay is None:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(seeds))) as pool:
            futures = [pool.submit(_one_seed, seed, args, names, None) for seed in seeds]
            results = [f.result() for f in futures]
    else:
        results = [_one_seed(seed, args, names, replay) for seed in seeds]
    out = {"seeds": {str(seed): r for seed, r in zip(seeds, results, strict=True)}}
    if args.json:
        print(orjson.dumps(out).decode())
    else:
        print(seeds_table(seeds, results, names))
    return out


def seeds_table(
    seeds: Sequence[int], results: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> str:
    """The bar, one row per contender and seed; a figure that misses its line in bold."""
    first = results[0]
    lines = [
        f"Detector evaluation over seeds {', '.join(map(str, seeds))}: "
        f"{first['series_per_scenario']} series per scenario, {first['weeks']} weeks, "
        f"{first['series_weeks_scored']:.0f} "
        "series-weeks scored per seed.",
        "",
    ]
    heads = [b["line"] for b in first["contenders"][names[0]]["bar"]]
    lines.append(f"| contender | seed | {' | '.join(heads)} | met |")
    lines.append("| --- " * (len(heads) + 3) + "|")
    held: dict[str, list[int]] = {}
    for name in names:
        counts = [0] * len(heads)
        for seed, result in zip(seeds, results, strict=True):
            body = result["contenders"][name]
            cells = [b["figure"] if b["met"] else f"**{b['figure']}**" for b in body["bar"]]
            met = sum(b["met"] for b in body["bar"])
            counts = [c + b["met"] for c, b in zip(counts, body["bar"], strict=True)]
            lines.append(f"| {name} | {seed} | {' | '.join(cells)} | {met} of {len(heads)} |")
        held[name] = counts
    lines.append("")
    for name in names:
        pauses = [result["contenders"][name]["median_pause_delay_min"] for result in results]
        lines.append(
            f"{name}: runaways to pause paused a median of "
            + ", ".join(_num(p) for p in pauses)
            + " min after they began (per seed)"
        )
    for name, counts in held.items():
        every = sum(c == len(seeds) for c in counts)
        per_line = ", ".join(f"{h} {c}" for h, c in zip(heads, counts, strict=True))
        lines.append(
            f"{name}: {every} of {len(heads)} lines met on every seed; seeds meeting each line: "
            f"{per_line} (of {len(seeds)})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
