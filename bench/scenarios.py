"""Labeled spend scenarios for the detector evaluation (issue 5, item 9; issue 18).

Why a generator of our own: detection rate, delay and false alerts only mean something
against ground truth, and each failure mode the engine must handle needs its own traffic
and its own label: a looping agent, a weekend batch runaway, a critical spike that must be
alerted and never paused, a legitimate launch, a week-over-week creep (fast, and a slow one
compounding +35 % a week), cents-per-hour noise, a bad prompt change (at a few calls an
hour, and a deploy on a busy key), a silent day, an outage the week before, noisy
customers under one key, duplicates and late events around a budget line, and plain
seasonal traffic with legitimate bursts.

Each label also says how an incident must reach people (``route``): a runaway, a spike or a
dearer prompt is paged; a creep is a trend, for the digest or a page; a launch is no
incident, but a digest line about it is fair (a page is not).

Each scenario is ``series`` independent series, and every series has its own team, feature
and api_key (and each scenario its own model), so an alert's scope says which series, and
so which label, it is about. Traffic per series: hourly Poisson call counts around
``calls`` per hour times an hour-of-week shape and log-normal hourly noise; each call costs
about ``level / calls`` dollars times log-normal noise; a few legitimate short bursts.
Incidents start after ``WARMUP_WEEKS`` weeks, so 30-day baselines and two-week warm-ups
have history; false alerts are scored from then on.

Seeded and pure: series ``j`` of scenario ``i`` draws from ``default_rng([seed, i, j])``, so
the same seed gives the same events and changing ``series`` leaves the others unchanged.
Events are kept as numpy columns in stream order and built as ``UsageEvent`` lazily, so
each replay pass streams them without holding a million objects.

>>> s = generate(seed=3, series=1, weeks=4)
>>> [label.scenario for label in s.labels.series][:3]
['runaway', 'batch_runaway', 'critical_spike']
>>> events = list(s.events())
>>> len(events) == len(s), events[0].event_id
(True, 'bench-3-0')
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from spendbrake.schemas import BudgetConfig, KeyRule, KeysConfig, UsageEvent

__all__ = [
    "HOUR",
    "SCENARIOS",
    "START_TS",
    "WARMUP_WEEKS",
    "WEEK",
    "BudgetLabel",
    "Interval",
    "Labels",
    "ScenarioSet",
    "SeriesLabel",
    "Spec",
    "generate",
]

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
#: 2026-10-05 00:00 UTC, a Monday: hour ``h`` of a series is hour-of-week ``h % 168``.
START_TS = 1_791_158_400.0
#: Weeks of clean history before any incident: two-week warm-ups plus a week of 30-day mean.
WARMUP_WEEKS = 3
#: Budget scenario: share of events sent twice (same event_id) and share arriving late.
DUPLICATE_SHARE = 0.05
LATE_SHARE = 0.02
LATE_MAX_S = 2 * HOUR
#: Budget amounts are set so the busiest day of each budget series ends at this fraction.
BUDGET_PEAK = 1.1
BUDGET_ALERT_AT = (0.5, 0.8, 1.0)
BUDGET_HARD_STOP = 1.2


@dataclass(frozen=True, slots=True)
class Interval:
    """A labeled stretch of one series in event time: ``[start, end)``, epoch seconds."""

    start: float
    end: float
    kind: str


@dataclass(frozen=True)
class BudgetLabel:
    """A budget on one series' team, and the threshold crossings it must report.

    ``expected`` holds ``(period_start, threshold)`` for every threshold the unique
    events cross in that period; each must fire exactly once, and nothing else may.
    """

    name: str
    scope: dict[str, str]
    amount_usd: float
    period: str
    thresholds: tuple[float, ...]
    periods: tuple[float, ...]
    expected: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class SeriesLabel:
    """Ground truth for one series.

    ``attrs`` are the event fields that name it (team, feature, api_key, model): an alert
    is about this series when its scope is a non-empty subset of them. ``intervals`` are
    the labeled stretches (the incident, or a launch, a gap or a tiny surge that must not
    alert); ``incident`` says whether they are true incidents. ``expected_action`` is what
    the default policies should do (``pause`` for a batch runaway); ``pause_allowed`` is
    true only for non-critical runaway keys.
    """

    scenario: str
    attrs: dict[str, str]
    workload: str
    environment: str
    incident: bool
    intervals: tuple[Interval, ...]
    expected_action: str
    pause_allowed: bool
    budget: BudgetLabel | None = None
    #: How the incident must reach people: ``page`` (an alert of severity warning or
    #: critical), ``trend`` (a digest item or a page); for a non-incident, ``digest`` means a
    #: digest item about it is fair (a launch) and ``none`` that nothing should be said.
    route: str = "none"
    #: Customers this key serves (the ``customer`` field of its events), if any.
    customers: tuple[str, ...] = ()

    @property
    def api_key(self) -> str:
        return self.attrs["api_key"]


@dataclass(frozen=True)
class Labels:
    """All series labels of a run, and the run's event-time bounds.

    ``scored_from`` is the end of the warm-up: incidents start after it and false alerts
    are counted from it to ``end_ts``.
    """

    series: tuple[SeriesLabel, ...]
    start_ts: float
    end_ts: float
    scored_from: float

    @property
    def scored_weeks(self) -> float:
        return (self.end_ts - self.scored_from) / WEEK


@dataclass(frozen=True)
class Spec:
    """One scenario: what its series look like and what their label says."""

    name: str
    about: str
    provider: str
    model: str
    feature: str
    workload: str
    environment: str
    pattern: str  # business | always_on | nightly
    level_usd: tuple[float, float]  # mean spend per hour, drawn log-uniformly per series
    calls: tuple[float, float]  # mean calls per hour, drawn uniformly per series
    incident: bool
    expected_action: str
    pause_allowed: bool
    bursts_per_week: float = 2.0
    hour_sigma: float = 0.25  # log-normal noise of the hourly call rate
    call_sigma: float = 0.6  # log-normal noise of the cost of one call
    route: str = "none"  # see ``SeriesLabel.route``


# Append new scenarios at the end: the index seeds each series' random stream.
# fmt: off
SCENARIOS: tuple[Spec, ...] = (
    Spec("runaway", "agent loop: a key spends 10-50x its mean for 2-8 h", "anthropic",
         "claude-opus-4-1", "agent", "standard", "production", "business", (8, 150), (3, 8),
         incident=True, expected_action="alert", pause_allowed=True, route="page"),
    Spec("batch_runaway", "batch key loops around the clock from a Saturday, 10-30x, 8-30 h",
         "openai", "o3-pro", "nightly-batch", "batch", "production", "nightly", (8, 150),
         (3, 8), incident=True, expected_action="pause", pause_allowed=True, route="page"),
    Spec("critical_spike", "critical production service spikes 8-20x for 1-3 h", "anthropic",
         "claude-sonnet-4-5", "support-chat", "critical", "production", "always_on",
         (8, 150), (3, 8), incident=True, expected_action="alert", pause_allowed=False,
         route="page"),
    Spec("launch", "legitimate launch: a sustained 3-5x new level (not an incident)", "openai",
         "gpt-5", "assistant", "standard", "production", "business", (8, 150), (3, 8),
         incident=False, expected_action="none", pause_allowed=False, route="digest"),
    Spec("creep", "week-over-week creep: +8 %/day for a week, then holds", "google",
         "gemini-2.5-pro", "summaries", "standard", "production", "business", (8, 150),
         (3, 8), incident=True, expected_action="alert", pause_allowed=False, route="trend"),
    Spec("tiny", "cents per hour with heavy noise and a 10-30x surge (never alert)", "openai",
         "gpt-4.1-nano", "autocomplete", "standard", "production", "business", (0.01, 0.1),
         (2, 6), incident=False, expected_action="none", pause_allowed=False,
         hour_sigma=0.6, call_sigma=1.0),
    Spec("prompt_change", "bad prompt change: cost per call x3 at flat volume for 12-48 h",
         "anthropic", "claude-opus-4-5", "rag", "standard", "production", "business",
         (8, 150), (3, 8), incident=True, expected_action="alert", pause_allowed=False,
         route="page"),
    Spec("gap", "a silent day, then normal traffic (no alert)", "openai", "gpt-4.1", "ingest",
         "standard", "production", "always_on", (8, 150), (3, 8), incident=False,
         expected_action="none", pause_allowed=False),
    Spec("budget", "daily team budget; 5 % duplicates, 2 % late up to 2 h", "google",
         "gemini-3-pro-preview", "reports", "standard", "production", "business", (8, 150),
         (3, 8), incident=False, expected_action="none", pause_allowed=False),
    Spec("steady", "seasonal traffic with daily legitimate bursts (no alert)", "openai",
         "gpt-4o", "search", "standard", "production", "always_on", (8, 150), (3, 8),
         incident=False, expected_action="none", pause_allowed=False, bursts_per_week=7.0),
    Spec("slow_creep", "creep compounding +35 % a week from the end of the warm-up on",
         "google", "gemini-2.5-flash", "digest", "standard", "production", "business",
         (8, 150), (3, 8), incident=True, expected_action="alert", pause_allowed=False,
         route="trend"),
    Spec("prompt_regression", "a deploy on a busy key: each call costs 3x (3x tokens) from then "
         "on, same volume", "anthropic", "claude-haiku-4-5", "extract", "standard",
         "production", "business", (20, 200), (20, 60), incident=True, expected_action="alert",
         pause_allowed=False, route="page"),
    Spec("outage", "an outage (traffic at 0-20 % for 6-24 h), normal traffic a week later "
         "(no alert)", "openai", "gpt-4.1-mini", "classify", "standard", "production",
         "always_on", (8, 150), (3, 8), incident=False, expected_action="none",
         pause_allowed=False),
    Spec("customers", "one key serving 6-15 customers of uneven size (customer series are "
         "small and noisy; no alert)", "anthropic", "claude-sonnet-4", "copilot", "standard",
         "production", "business", (8, 150), (3, 8), incident=False, expected_action="none",
         pause_allowed=False),
)
# fmt: on


def key_rules() -> KeysConfig:
    """The ``keys:`` section an operator of these series writes: every scenario's keys
    (``{scenario}-NNN-key``) with the scenario's workload. The events carry the same
    workload, but whether a key may be paused is the config's to say."""
    return KeysConfig(
        rules=[
            KeyRule(api_key=f"{spec.name.replace('_', '-')}-*-key", workload=spec.workload)  # type: ignore[arg-type]
            for spec in SCENARIOS
        ]
    )


#: Blended $ per 1M tokens used to derive plausible token counts from a call's cost.
_BLENDED_PER_1M = 10.0


def weekly_shape(pattern: str) -> np.ndarray:
    """Relative call rate per hour of the week (Monday 00:00 UTC first), mean 1.

    Interactive traffic peaks on weekday afternoons, always-on services never sleep,
    batch jobs run around 03:00 every night.
    """
    hour = np.arange(168)
    hod = hour % 24
    weekend = hour >= 5 * 24
    if pattern == "business":
        rate = (0.08 + np.exp(-(((hod - 14.0) / 3.5) ** 2))) * np.where(weekend, 0.3, 1.0)
    elif pattern == "always_on":
        rate = (0.35 + np.exp(-(((hod - 15.0) / 4.5) ** 2))) * np.where(weekend, 0.7, 1.0)
    elif pattern == "nightly":
        rate = 0.02 + np.exp(-(((hod - 3.0) / 1.5) ** 2))
    else:
        raise ValueError(f"unknown pattern {pattern!r}; use business, always_on or nightly")
    return rate / rate.mean()


@dataclass
class _Plan:
    """How one series departs from its seasonal traffic."""

    intervals: list[Interval] = field(default_factory=list)
    #: Multiplies the hourly seasonal call rate (launch, creep); None = 1.
    rate_x: np.ndarray | None = None
    #: (start, end, calls per hour) added on top, uniformly in time (loops, spikes, bursts).
    extra: list[tuple[float, float, float]] = field(default_factory=list)
    #: (start, end, x): each call in the stretch costs x times as much (a prompt change).
    cost_x: list[tuple[float, float, float]] = field(default_factory=list)
    #: (start, end): no events at all (an outage or a silent day).
    silent: list[tuple[float, float]] = field(default_factory=list)
    #: Customers the key's calls are spread over (uneven, Zipf-like shares); 0: none.
    customers: int = 0


@dataclass(frozen=True)
class _Ctx:
    """What an incident planner may use: the run's bounds and the series' own numbers."""

    rng: np.random.Generator
    t0: float
    end: float
    incident_from: float
    n_hours: int
    calls: float
    shape: np.ndarray

    def minute(self, lo: float, hi: float) -> float:
        """A start drawn uniformly in [lo, hi], on a whole minute."""
        return math.floor(self.rng.uniform(lo, max(lo, hi)) / 60.0) * 60.0

    def hour(self, lo: float, hi: float) -> float:
        """A start drawn uniformly in [lo, hi], on a whole hour."""
        return math.floor(self.rng.uniform(lo, max(lo, hi)) / HOUR) * HOUR


def _plan_runaway(c: _Ctx) -> _Plan:
    dur = c.rng.uniform(2, 8) * HOUR
    start = c.minute(c.incident_from, c.end - dur - 6 * HOUR)
    x = c.rng.uniform(10, 50)
    return _Plan(
        [Interval(start, start + dur, "runaway")], extra=[(start, start + dur, x * c.calls)]
    )


def _plan_batch_runaway(c: _Ctx) -> _Plan:
    saturdays = [
        c.t0 + d * DAY
        for d in range(5, c.n_hours // 24, 7)
        if c.t0 + d * DAY >= c.incident_from and c.t0 + d * DAY + 22 * HOUR <= c.end
    ]
    if not saturdays:
        raise ValueError("batch_runaway needs a Saturday after the warm-up; use more weeks")
    day = float(c.rng.choice(saturdays))
    start = c.minute(day, day + 14 * HOUR)
    end = min(start + c.rng.uniform(8, 30) * HOUR, c.end - HOUR)
    x = c.rng.uniform(10, 30)
    return _Plan([Interval(start, end, "batch_runaway")], extra=[(start, end, x * c.calls)])


def _plan_critical_spike(c: _Ctx) -> _Plan:
    dur = c.rng.uniform(1, 3) * HOUR
    start = c.minute(c.incident_from, c.end - dur - 6 * HOUR)
    x = c.rng.uniform(8, 20)
    return _Plan([Interval(start, start + dur, "spike")], extra=[(start, start + dur, x * c.calls)])


def _plan_launch(c: _Ctx) -> _Plan:
    start = c.hour(c.incident_from, c.end - 5 * DAY)
    rate_x = np.ones(c.n_hours)
    rate_x[int((start - c.t0) // HOUR) :] = c.rng.uniform(3, 5)
    return _Plan([Interval(start, c.end, "launch")], rate_x=rate_x)


def _plan_creep(c: _Ctx) -> _Plan:
    start = c.hour(c.incident_from, c.end - 8 * DAY)
    end = min(start + 7 * DAY, c.end)
    hours = c.t0 + HOUR * np.arange(c.n_hours)
    days = np.clip(hours - start, 0.0, end - start) / DAY
    return _Plan([Interval(start, end, "creep")], rate_x=1.08**days)


def _plan_tiny(c: _Ctx) -> _Plan:
    dur = c.rng.uniform(1, 3) * HOUR
    start = c.minute(c.incident_from, c.end - dur)
    x = c.rng.uniform(10, 30)
    return _Plan(
        [Interval(start, start + dur, "tiny_surge")], extra=[(start, start + dur, x * c.calls)]
    )


def _plan_prompt_change(c: _Ctx) -> _Plan:
    dur = c.rng.uniform(12, 48) * HOUR
    start = c.minute(c.incident_from, c.end - dur - 6 * HOUR)
    return _Plan(
        [Interval(start, start + dur, "prompt_change")], cost_x=[(start, start + dur, 3.0)]
    )


def _plan_gap(c: _Ctx) -> _Plan:
    start = c.hour(c.incident_from, c.end - 3 * DAY)
    return _Plan([Interval(start, start + DAY, "gap")], silent=[(start, start + DAY)])


def _plan_none(c: _Ctx) -> _Plan:
    return _Plan()


def _plan_slow_creep(c: _Ctx) -> _Plan:
    """+35 % a week, compounding, from within two days of the warm-up's end to the run's end."""
    start = c.hour(c.incident_from, c.incident_from + 2 * DAY)
    hours = c.t0 + HOUR * np.arange(c.n_hours)
    weeks = np.clip(hours - start, 0.0, None) / WEEK
    return _Plan([Interval(start, c.end, "creep")], rate_x=1.35**weeks)


def _plan_prompt_regression(c: _Ctx) -> _Plan:
    """A deploy in working hours (a weekday, 09:00-17:00 UTC) makes every call 3x dearer."""
    days = [
        c.t0 + d * DAY
        for d in range(c.n_hours // 24)
        if d % 7 < 5 and c.incident_from <= c.t0 + d * DAY <= c.end - 3 * DAY
    ]
    day = float(c.rng.choice(days))
    start = c.minute(day + 9 * HOUR, day + 17 * HOUR)
    return _Plan([Interval(start, c.end, "prompt_regression")], cost_x=[(start, c.end, 3.0)])


def _plan_outage(c: _Ctx) -> _Plan:
    """Traffic at 0-20 % for 6-24 h, late enough that the week after it is scored."""
    dur = math.floor(c.rng.uniform(6, 24)) * HOUR
    start = c.hour(c.incident_from - 4 * DAY, c.end - WEEK - DAY - dur)
    rate_x = np.ones(c.n_hours)
    first = int((start - c.t0) // HOUR)
    rate_x[first : first + int(dur // HOUR)] = c.rng.uniform(0.0, 0.2)
    return _Plan([Interval(start, start + dur, "outage")], rate_x=rate_x)


def _plan_customers(c: _Ctx) -> _Plan:
    return _Plan(customers=int(c.rng.integers(6, 16)))


_PLANNERS = {
    "runaway": _plan_runaway,
    "batch_runaway": _plan_batch_runaway,
    "critical_spike": _plan_critical_spike,
    "launch": _plan_launch,
    "creep": _plan_creep,
    "tiny": _plan_tiny,
    "prompt_change": _plan_prompt_change,
    "gap": _plan_gap,
    "budget": _plan_none,
    "steady": _plan_none,
    "slow_creep": _plan_slow_creep,
    "prompt_regression": _plan_prompt_regression,
    "outage": _plan_outage,
    "customers": _plan_customers,
}


@dataclass
class _Drawn:
    """One series' events before merging: event time, stream (arrival) time, cost, id."""

    ts: np.ndarray
    arrival: np.ndarray
    cost: np.ndarray
    local_id: np.ndarray  # index among the series' unique events; duplicates repeat one
    customer: np.ndarray | None = None  # index into the series' customers, per event


def _draw_series(spec: Spec, c: _Ctx, plan: _Plan, level: float) -> _Drawn:
    """Seasonal Poisson traffic plus the plan's changes, in event-time order."""
    rng = c.rng
    sigma = spec.hour_sigma
    lam = c.calls * np.tile(c.shape, c.n_hours // 168 + 1)[: c.n_hours]
    lam = lam * rng.lognormal(-(sigma**2) / 2, sigma, c.n_hours)
    if plan.rate_x is not None:
        lam = lam * plan.rate_x
    counts = rng.poisson(lam)
    base = np.repeat(c.t0 + HOUR * np.arange(c.n_hours), counts)
    parts = [base + rng.uniform(0.0, HOUR, len(base))]
    extra = list(plan.extra)
    # Legitimate short bursts: x2-5 of the seasonal rate for 10-45 minutes.
    for _ in range(rng.poisson(spec.bursts_per_week * c.n_hours / 168)):
        start = rng.uniform(c.t0, c.end - HOUR)
        dur = rng.uniform(10, 45) * 60
        rate = (rng.uniform(2, 5) - 1) * c.calls * c.shape[int((start - c.t0) // HOUR) % 168]
        extra.append((start, start + dur, rate))
    for start, end, per_hour in extra:
        n = rng.poisson(per_hour * (end - start) / HOUR)
        parts.append(rng.uniform(start, end, n))
    ts = np.sort(np.concatenate(parts)).round(3)  # milliseconds, as gateways stamp them
    ts = ts[ts < c.end]
    for start, end in plan.silent:
        ts = ts[(ts < start) | (ts >= end)]
    cs = spec.call_sigma
    cost = level / c.calls * rng.lognormal(-(cs**2) / 2, cs, len(ts))
    for start, end, x in plan.cost_x:
        cost[(ts >= start) & (ts < end)] *= x
    cost = np.maximum(cost.round(6), 1e-6)
    customer = None
    if plan.customers:
        share = 1.0 / np.arange(1, plan.customers + 1) ** 1.1
        customer = rng.choice(plan.customers, size=len(ts), p=share / share.sum())
    return _Drawn(ts, ts.copy(), cost, np.arange(len(ts)), customer)


def _duplicate_and_delay(d: _Drawn, rng: np.random.Generator) -> tuple[_Drawn, int, int]:
    """Resend some events (same id, seconds to minutes later) and deliver some late."""
    n = len(d.ts)
    arrival = d.arrival.copy()
    late = rng.random(n) < LATE_SHARE
    arrival[late] += rng.uniform(5 * 60, LATE_MAX_S, int(late.sum()))
    dup = np.flatnonzero(rng.random(n) < DUPLICATE_SHARE)
    dup_arrival = arrival[dup] + rng.uniform(1.0, 600.0, len(dup))
    out = _Drawn(
        np.concatenate([d.ts, d.ts[dup]]),
        np.concatenate([arrival, dup_arrival]),
        np.concatenate([d.cost, d.cost[dup]]),
        np.concatenate([d.local_id, d.local_id[dup]]),
        None if d.customer is None else np.concatenate([d.customer, d.customer[dup]]),
    )
    return out, len(dup), int(late.sum())


def _budget_label(name: str, team: str, d: _Drawn, t0: float, end: float) -> BudgetLabel:
    """A daily UTC budget whose busiest day ends at ``BUDGET_PEAK`` of the amount.

    Expected crossings come from the unique events only, by event time: counting a
    duplicate, or a late event in the wrong day, changes them.
    """
    periods = np.arange(t0, end, DAY)
    uniq = np.unique(d.local_id, return_index=True)[1]
    day = ((d.ts[uniq] - t0) // DAY).astype(np.int64)
    totals = np.bincount(day, weights=d.cost[uniq], minlength=len(periods))
    amount = round(float(totals.max()) / BUDGET_PEAK, 2)
    expected = tuple(
        (float(p), t)
        for p, total in zip(periods.tolist(), totals.tolist(), strict=True)
        for t in BUDGET_ALERT_AT
        if total >= t * amount
    )
    return BudgetLabel(
        name=name,
        scope={"team": team},
        amount_usd=amount,
        period="day",
        thresholds=BUDGET_ALERT_AT,
        periods=tuple(periods.tolist()),
        expected=expected,
    )


@dataclass
class ScenarioSet:
    """A generated run: labels, the budgets to configure, and the merged event stream.

    The stream is in arrival order (event time, except for late events and resent
    duplicates in the budget scenario); ``events()`` builds it afresh on each call.
    """

    seed: int
    series_per_scenario: int
    weeks: int
    labels: Labels
    budgets: list[BudgetConfig]
    duplicates: int
    late: int
    _ts: np.ndarray
    _cost: np.ndarray
    _series: np.ndarray
    _uid: np.ndarray
    #: Per event, an index into ``_customers`` (-1: no customer).
    _customer: np.ndarray
    _customers: tuple[str, ...]

    def __len__(self) -> int:
        return len(self._ts)

    def hourly_spend(self) -> np.ndarray:
        """Each series' spend per hour of the run (series x hours, in label order), each
        event once (the budget scenario's resent duplicates are not spend)."""
        lb = self.labels
        hours = int((lb.end_ts - lb.start_ts) // HOUR)
        _, first = np.unique(self._uid, return_index=True)
        hour = ((self._ts[first] - lb.start_ts) // HOUR).astype(np.int64)
        spend = np.zeros((len(lb.series), hours))
        np.add.at(spend, (self._series[first], hour), self._cost[first])
        return spend

    def events(self, chunk: int = 8192) -> Iterator[UsageEvent]:
        """Yield the stream as ``UsageEvent`` objects, a numpy chunk at a time."""
        labels = self.labels.series
        specs = {s.name: s for s in SCENARIOS}
        static = [
            (
                specs[lb.scenario].provider,
                lb.attrs["model"],
                lb.attrs["team"],
                lb.attrs["feature"],
                lb.attrs["api_key"],
                lb.environment,
                lb.workload,
            )
            for lb in labels
        ]
        prefix = f"bench-{self.seed}-"
        columns = [np.array(column, dtype=object) for column in zip(*static, strict=True)]
        # Index -1 (no customer) reads the trailing None.
        customers = np.array([*self._customers, None], dtype=object)
        for lo in range(0, len(self._ts), chunk):
            series = self._series[lo : lo + chunk]
            n = len(series)
            cost = self._cost[lo : lo + chunk]
            tokens = cost / _BLENDED_PER_1M * 1e6
            provider, model, team, feature, api_key, env, workload = (
                column[series].tolist() for column in columns
            )
            zeros, nones = [0] * n, [None] * n
            customer = customers[self._customer[lo : lo + chunk]].tolist()
            # Positional arguments in UsageEvent's field order: 3x faster than keywords.
            yield from map(
                UsageEvent,
                [prefix + str(u) for u in self._uid[lo : lo + chunk].tolist()],
                self._ts[lo : lo + chunk].tolist(), provider, model,
                np.maximum(tokens * 0.85, 1).astype(np.int64).tolist(),
                np.maximum(tokens * 0.15, 1).astype(np.int64).tolist(),
                team, zeros, zeros, zeros, cost.tolist(), feature, api_key, customer, env,
                workload, nones, nones,
            )  # fmt: skip


def generate(seed: int = 0, series: int = 20, weeks: int = 5) -> ScenarioSet:
    """Draw ``series`` series of every scenario over ``weeks`` weeks from ``START_TS``.

    The default (20 series, 5 weeks) is about 1.1M events.
    """
    if weeks < WARMUP_WEEKS + 1:
        raise ValueError(f"weeks must be at least {WARMUP_WEEKS + 1}, got {weeks}")
    if series < 1:
        raise ValueError(f"series must be at least 1, got {series}")
    t0, end = START_TS, START_TS + weeks * WEEK
    incident_from = t0 + WARMUP_WEEKS * WEEK
    n_hours = weeks * 168
    labels: list[SeriesLabel] = []
    budgets: list[BudgetConfig] = []
    drawn: list[_Drawn] = []
    customers: list[str] = []
    duplicates = late = 0
    for i, spec in enumerate(SCENARIOS):
        shape = weekly_shape(spec.pattern)
        for j in range(series):
            rng = np.random.default_rng([seed, i, j])
            lo, hi = spec.level_usd
            level = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            calls = float(rng.uniform(*spec.calls))
            c = _Ctx(rng, t0, end, incident_from, n_hours, calls, shape)
            plan = _PLANNERS[spec.name](c)
            d = _draw_series(spec, c, plan, level)
            team = f"{spec.name.replace('_', '-')}-{j:03d}"
            budget = None
            if spec.name == "budget":
                budget = _budget_label(f"daily-{team}", team, d, t0, end)
                budgets.append(
                    BudgetConfig(
                        name=budget.name,
                        scope=budget.scope,
                        amount_usd=budget.amount_usd,
                        period="day",
                        alert_at=list(BUDGET_ALERT_AT),
                        hard_stop_at=BUDGET_HARD_STOP,
                    )
                )
                d, n_dup, n_late = _duplicate_and_delay(d, rng)
                duplicates += n_dup
                late += n_late
            names: tuple[str, ...] = ()
            if d.customer is not None:
                names = tuple(f"{team}-cust{k:02d}" for k in range(plan.customers))
                d.customer = d.customer + len(customers)
                customers.extend(names)
            drawn.append(d)
            labels.append(
                SeriesLabel(
                    scenario=spec.name,
                    attrs={
                        "team": team,
                        "feature": spec.feature,
                        "api_key": f"{team}-key",
                        "model": spec.model,
                    },
                    workload=spec.workload,
                    environment=spec.environment,
                    incident=spec.incident,
                    intervals=tuple(plan.intervals),
                    expected_action=spec.expected_action,
                    pause_allowed=spec.pause_allowed,
                    budget=budget,
                    route=spec.route,
                    customers=names,
                )
            )
    ts, cost, series_ix, uid, customer = _merge(drawn)
    return ScenarioSet(
        seed=seed,
        series_per_scenario=series,
        weeks=weeks,
        labels=Labels(tuple(labels), t0, end, incident_from),
        budgets=budgets,
        duplicates=duplicates,
        late=late,
        _ts=ts,
        _cost=cost,
        _series=series_ix,
        _uid=uid,
        _customer=customer,
        _customers=tuple(customers),
    )


def _merge(
    drawn: list[_Drawn],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One stream in arrival order; ids unique per event, shared by its duplicates."""
    offsets = np.cumsum([0] + [int(d.local_id.max(initial=-1)) + 1 for d in drawn])
    ts = np.concatenate([d.ts for d in drawn])
    arrival = np.concatenate([d.arrival for d in drawn])
    cost = np.concatenate([d.cost for d in drawn])
    series = np.concatenate([np.full(len(d.ts), k, dtype=np.int32) for k, d in enumerate(drawn)])
    uid = np.concatenate([d.local_id + offsets[k] for k, d in enumerate(drawn)])
    customer = np.concatenate(
        [np.full(len(d.ts), -1) if d.customer is None else d.customer for d in drawn]
    ).astype(np.int64)
    order = np.lexsort((uid, arrival))  # ties: the smaller id first, on every machine
    uid = uid[order]
    # Renumber ids in order of first arrival, so the stream reads bench-S-0, bench-S-1, ...
    _, first, inverse = np.unique(uid, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return ts[order], cost[order], series[order], rank[inverse], customer[order]
