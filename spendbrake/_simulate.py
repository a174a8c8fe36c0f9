"""Realistic LLM usage traffic, seeded and pure: the demo, benchmarks and tests use it.

Traffic is drawn with numpy a slice of whole minutes at a time: for every API
key and minute a Poisson count around a rate shaped by minute of the week
(interactive keys peak in weekday business hours, the critical support bot never
sleeps, batch keys run at night), occasional legitimate bursts and any injected
incidents; then lognormal token counts, cache and reasoning tokens, customers,
trace ids and outcomes for the whole slice. Only building each ``UsageEvent`` is
per-call Python.

No clock and no I/O: the caller passes the start time, and ``pace`` takes the
clock and sleep it should use. ``rate_per_s`` is the mean over a whole week, so
a weekday afternoon runs well above it and a Sunday night well below.

>>> events = list(simulate(1_791_158_400.0, 600, rate_per_s=2, seed=1))
>>> events[0].event_id, all(a.ts <= b.ts for a, b in zip(events, events[1:]))
('sim-1-0', True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

import numpy as np

from spendbrake.schemas import UsageEvent, encode_event

WEEK_S = 7 * 86400
#: 1970-01-05 was a Monday: minute of week 0 is Monday 00:00 UTC.
_MONDAY_S = 4 * 86400
_WEEK_MINUTES = 7 * 1440
#: About this many calls are drawn per slice: enough to amortize numpy's per-call
#: overhead, few enough to keep memory flat.
_SLICE_CALLS = 10_000
#: Lognormal sigma of input and output tokens per call.
_SIGMA = np.array([[0.6], [0.8]])

#: US dollars per 1M tokens: input, cache read, cache write, output. A small local
#: copy so simulated gateways can pre-price calls; the engine has its own table.
PRICES_PER_1M: dict[str, tuple[float, float, float, float]] = {
    "gpt-4.1": (2.00, 0.50, 2.00, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 0.40, 1.60),
    "gpt-4o-mini": (0.15, 0.075, 0.15, 0.60),
    "o4-mini": (1.10, 0.275, 1.10, 4.40),
    "gpt-5": (1.25, 0.125, 1.25, 10.00),
    "claude-sonnet-4-5": (3.00, 0.30, 3.75, 15.00),
    "claude-haiku-4-5": (1.00, 0.10, 1.25, 5.00),
    "gemini-2.5-pro": (1.25, 0.125, 1.25, 10.00),
    "gemini-2.5-flash": (0.30, 0.03, 0.30, 2.50),
}

#: kind: (default x, default duration in seconds, the workload it must hit or None)
INCIDENT_KINDS: dict[str, tuple[float, float, str | None]] = {
    "runaway": (20.0, 3 * 3600, None),  # agent loop: x times the calls on a key
    "batch_runaway": (10.0, 2 * 86400, "batch"),  # a batch key loops around the clock
    "spike": (5.0, 1800, "critical"),  # short surge on a critical service
    "launch": (2.0, math.inf, None),  # legitimate sustained level shift
    "creep": (1.3, math.inf, None),  # x times the calls per week, compounding
    "prompt_change": (3.0, math.inf, None),  # x times the tokens per call, same volume
}
MATCH_FIELDS = ("team", "feature", "api_key", "environment", "workload", "model")
PATTERNS = ("business", "always_on", "nightly")


@dataclass(frozen=True)
class KeyProfile:
    """One API key's traffic. Token counts are per-call means; ``weight`` is its
    share of weekly calls relative to the other keys."""

    api_key: str
    team: str
    feature: str
    provider: str
    model: str
    weight: float
    input_tokens: float
    output_tokens: float
    workload: str = "standard"
    environment: str = "prod"
    pattern: str = "business"  # one of PATTERNS
    cache_hit: float = 0.0  # share of calls that read a cached prefix
    cache_write: float = 0.0  # share of the other calls that write one (Anthropic)
    reasoning: float = 0.0  # mean share of output tokens spent reasoning
    calls_per_trace: float = 1.0  # mean calls per agent task
    outcome: str | None = None
    outcome_rate: float = 0.0
    customer_facing: bool = False


@dataclass(frozen=True)
class TrafficProfile:
    """Who calls what. Bursts are legitimate surges: per key per day, with a
    multiplier and a length in minutes drawn uniformly from the ranges."""

    keys: tuple[KeyProfile, ...]
    customers: tuple[str, ...] = ()
    bursts_per_day: float = 1.0
    burst_x: tuple[float, float] = (2.0, 4.0)
    burst_minutes: tuple[float, float] = (5.0, 30.0)

    @classmethod
    def default(cls) -> TrafficProfile:
        k = KeyProfile
        # fmt: off
        return cls(
            keys=(
                k("search-agent-prod", "search", "agent", "openai", "gpt-4.1", 14, 6000, 350,
                  cache_hit=0.6, calls_per_trace=6, outcome="answer_accepted",
                  outcome_rate=0.1, customer_facing=True),
                k("search-rerank-prod", "search", "rerank", "google", "gemini-2.5-flash", 12,
                  2500, 60, cache_hit=0.3, customer_facing=True),
                k("support-bot-prod", "support", "chat", "anthropic", "claude-sonnet-4-5", 16,
                  5000, 400, workload="critical", pattern="always_on", cache_hit=0.7,
                  cache_write=0.5, calls_per_trace=4, outcome="ticket_resolved",
                  outcome_rate=0.15, customer_facing=True),
                k("support-triage-prod", "support", "triage", "openai", "gpt-4.1-mini", 8, 1200,
                  80, pattern="always_on", customer_facing=True),
                k("growth-email-batch", "growth", "email", "openai", "gpt-4o-mini", 8, 1500, 400,
                  workload="batch", pattern="nightly", cache_hit=0.5, customer_facing=True),
                k("growth-copy-prod", "growth", "copy", "google", "gemini-2.5-pro", 5, 1800, 600,
                  outcome="copy_published", outcome_rate=0.2),
                k("platform-router-prod", "platform", "router", "anthropic", "claude-haiku-4-5",
                  10, 800, 30, workload="critical", cache_hit=0.5, cache_write=0.2),
                k("platform-evals-staging", "platform", "evals", "openai", "o4-mini", 5, 3000,
                  1800, environment="staging", reasoning=0.6),
                k("research-nightly-summarizer", "research", "nightly-summarizer", "anthropic",
                  "claude-sonnet-4-5", 6, 12000, 900, workload="batch", pattern="nightly",
                  cache_hit=0.3, cache_write=0.6),
                k("research-notebook-staging", "research", "notebook", "openai", "gpt-5", 4,
                  4000, 2500, environment="staging", reasoning=0.7, calls_per_trace=3),
                k("research-analyst-prod", "research", "analyst", "google", "gemini-2.5-pro", 4,
                  9000, 1200, cache_hit=0.4, calls_per_trace=2),
            ),
            customers=("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"),
        )
        # fmt: on

    def key_rules(self) -> list[dict[str, str]]:
        """The ``keys:`` rules an operator of this traffic writes: each key and its workload.

        Events carry a workload too, but that is the caller's word; who may be paused is
        the config's (``spendbrake/demo.yaml`` lists the default profile's keys alike).
        """
        return [{"api_key": k.api_key, "workload": k.workload} for k in self.keys]


@dataclass(frozen=True)
class Incident:
    """A scripted anomaly, usually from ``parse_incident``. ``x``, ``duration_s``
    and the start left as None take the kind's defaults (start: the run's middle)."""

    kind: str
    match: tuple[tuple[str, str], ...] = ()
    x: float | None = None
    start_ts: float | None = None
    start_offset_s: float | None = None
    duration_s: float | None = None

    def window(self, sim_start_ts: float, sim_duration_s: float) -> tuple[float, float]:
        """Event-time ``[begin, end)`` of this incident in a run."""
        if self.start_ts is not None:
            begin = self.start_ts
        elif self.start_offset_s is not None:
            begin = sim_start_ts + self.start_offset_s
        else:
            begin = sim_start_ts + sim_duration_s / 2
        span = INCIDENT_KINDS[self.kind][1] if self.duration_s is None else self.duration_s
        return begin, begin + span

    def label(self) -> str:
        """``KIND:key=value,...`` of its match fields, for messages."""
        where = ",".join(f"{name}={value}" for name, value in self.match)
        return f"{self.kind}:{where}" if where else self.kind

    def targets(self, keys: Sequence[KeyProfile]) -> list[int]:
        """Indexes of the keys hit: every match, or with no match fields the first
        key whose workload fits the kind. ``ValueError`` if none."""
        workload = INCIDENT_KINDS[self.kind][2]
        hits = [
            i
            for i, key in enumerate(keys)
            if workload in (None, key.workload)
            and all(getattr(key, name) == value for name, value in self.match)
        ]
        if not hits:
            what = f"{workload} key" if workload else "key"
            raise ValueError(f"incident {self.label()} matches no {what} in the profile")
        return hits if self.match else hits[:1]


def parse_incident(text: str) -> Incident:
    """Parse ``KIND[:key=value,...]``, e.g.
    ``runaway:team=search,feature=agent,x=20,start=2026-10-20T02:00:00Z,duration=3h``.

    Keys: the ``MATCH_FIELDS`` (team, feature, api_key, environment, workload,
    model), ``x``, ``start`` (RFC 3339, a date, or ``+2h`` after the run's start)
    and ``duration`` (``90s``, ``30m``, ``3h``, ``2d``, ``1w``).

    >>> parse_incident("spike:x=8,start=+1h").window(0.0, 86400.0)
    (3600.0, 5400.0)
    """
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind not in INCIDENT_KINDS:
        choices = ", ".join(INCIDENT_KINDS)
        raise ValueError(f"incident {text!r}: unknown kind {kind!r}; use one of {choices}")
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, _, value = (s.strip() for s in part.partition("="))
        if name not in (*MATCH_FIELDS, "x", "start", "duration"):
            choices = ", ".join((*MATCH_FIELDS, "x", "start", "duration"))
            raise ValueError(f"incident {text!r}: unknown key {name!r}; use {choices}")
        if not value or name in fields:
            problem = "is given twice" if value else "needs a value, as key=value"
            raise ValueError(f"incident {text!r}: {part!r} {problem}")
        fields[name] = value
    spec_x, start, duration = (fields.pop(name, None) for name in ("x", "start", "duration"))
    part = f"x={spec_x}"
    try:
        x = None if spec_x is None else float(spec_x)
        if x is not None and not 0 < x < math.inf:
            raise ValueError
        part = f"start={start}"
        offset_s = _duration(start[1:]) if start and start.startswith("+") else None
        start_ts = _timestamp(start) if start and offset_s is None else None
        part = f"duration={duration}"
        duration_s = None if duration is None else _duration(duration)
    except ValueError as exc:
        reason = str(exc) if part[0] != "x" else "must be a number > 0"
        raise ValueError(f"incident {text!r}: {part} {reason}") from None
    return Incident(kind, tuple(fields.items()), x, start_ts, offset_s, duration_s)


def _duration(text: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if not found:
        raise ValueError("needs a number and a unit s, m, h, d or w, e.g. 30m or 3h")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": WEEK_S}[found.group(2)]
    return float(found.group(1)) * unit


def _timestamp(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("needs RFC 3339 like 2026-10-20T02:00:00Z, a date, or +2h") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _utc(ts: float) -> str:
    """``ts`` as ``--start`` and ``start=`` take it, to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _weekly_shape(pattern: str) -> np.ndarray:
    """Relative call rate per minute of the week (Monday 00:00 UTC first), mean 1."""
    minute = np.arange(_WEEK_MINUTES)
    hour = (minute % 1440) / 60.0
    weekend = minute >= 5 * 1440
    if pattern == "business":
        rate = (0.08 + np.exp(-(((hour - 14.0) / 3.5) ** 2))) * np.where(weekend, 0.3, 1.0)
    elif pattern == "always_on":
        rate = (0.35 + np.exp(-(((hour - 15.0) / 4.5) ** 2))) * np.where(weekend, 0.7, 1.0)
    else:  # nightly: batch jobs around 03:00 UTC, every night
        rate = 0.02 + np.exp(-(((hour - 3.0) / 1.5) ** 2))
    return rate / rate.mean()


def simulate(
    start_ts: float,
    duration_s: float,
    *,
    rate_per_s: float = 20.0,
    seed: int = 0,
    incidents: Sequence[Incident] = (),
    profile: TrafficProfile | None = None,
    priced_fraction: float = 0.5,
) -> Iterator[UsageEvent]:
    """Yield usage events in event-time order over ``[start_ts, start_ts + duration_s)``.

    Parameters
    ----------
    start_ts, duration_s
        The event-time span, epoch seconds and seconds.
    rate_per_s
        Mean calls per second over a week, bursts included; seasonality moves the
        rate around it, incidents add on top.
    seed
        The same seed and arguments give the same events; ``event_id`` is
        ``sim-{seed}-{n}``.
    incidents
        Usually from ``parse_incident``. Every event of a targeted key in a minute
        inside the incident's window has tag ``sim_incident`` = the kind.
    priced_fraction
        Share of events that carry ``cost_usd``, as if priced by a gateway.

    Streams a slice of minutes at a time, so memory stays flat however long the
    run. Bad arguments, and incidents that match no key, raise ``ValueError``
    here rather than at the first event.
    """
    profile = profile or TrafficProfile.default()
    if not (rate_per_s >= 0 and duration_s >= 0 and 0 <= priced_fraction <= 1):
        raise ValueError(
            "need rate_per_s >= 0, duration_s >= 0 and 0 <= priced_fraction <= 1, got "
            f"{rate_per_s}, {duration_s}, {priced_fraction}"
        )
    for k in profile.keys:
        if k.model not in PRICES_PER_1M or k.pattern not in PATTERNS:
            raise ValueError(f"key {k.api_key}: unknown model {k.model} or pattern {k.pattern}")
    plans = []
    for incident in incidents:
        begin, end = incident.window(start_ts, duration_s)
        if begin >= start_ts + duration_s or end <= start_ts:
            # Else it is silently left out: the file is the traffic alone.
            raise ValueError(
                f"incident {incident.label()} runs from {_utc(begin)}"
                f"{'' if math.isinf(end) else f' to {_utc(end)}'}, outside the "
                f"simulated span {_utc(start_ts)} to {_utc(start_ts + duration_s)}: lengthen "
                "the duration or move the incident's start"
            )
        x = INCIDENT_KINDS[incident.kind][0] if incident.x is None else incident.x
        plans.append((incident.kind, x, begin, end, incident.targets(profile.keys)))
    calls = _draw(start_ts, duration_s, rate_per_s, seed, plans, profile, priced_fraction)
    return _events(calls, seed, profile)


def _events(slices: Iterable[tuple], seed: int, profile: TrafficProfile) -> Iterator[UsageEvent]:
    names = ("provider", "model", "team", "feature", "api_key", "environment", "workload")
    per_key = [np.array([getattr(k, name) for k in profile.keys], dtype=object) for name in names]
    customers = np.array([*profile.customers, None], dtype=object)
    outcomes = np.array([k.outcome for k in profile.keys] + [None], dtype=object)
    kinds = np.array([None, *INCIDENT_KINDS], dtype=object)
    chunks = (
        tuple(column[..., lo : lo + 4096] for column in arrays)  # bounds the Python lists
        for arrays in slices
        for lo in range(0, len(arrays[0]), 4096)
    )
    n = 0
    for ts, key, tokens, trace, cost, customer, outcome, incident in chunks:
        count = len(ts)
        provider, model, team, feature, api_key, environment, workload = (
            column[key].tolist() for column in per_key
        )
        inp, out, cache_read, cache_write, reasoning = tokens.tolist()
        traces = zip(key.tolist(), trace.tolist(), strict=True)
        yield from map(
            UsageEvent,
            [f"sim-{seed}-{i}" for i in range(n, n + count)],
            ts.tolist(), provider, model, inp, out, team, cache_read, cache_write, reasoning,
            [None if c != c else c for c in cost.tolist()], feature, api_key,
            customers[customer].tolist(), environment, workload,
            [f"tr-{seed}-{k}-{t}" for k, t in traces], outcomes[outcome].tolist(),
            [{"sim_incident": kind} if kind else {} for kind in kinds[incident].tolist()],
        )  # fmt: skip
        n += count


def _draw(
    start_ts: float,
    duration_s: float,
    rate_per_s: float,
    seed: int,
    plans: list[tuple[str, float, float, float, list[int]]],
    profile: TrafficProfile,
    priced_fraction: float,
) -> Iterator[tuple]:
    """The numeric core: every random draw, one slice of whole minutes at a time.

    Yields per slice, in event-time order, arrays of: ts, key index, tokens (rows:
    input, output, cache read, cache write, reasoning), trace number, cost_usd (NaN:
    unpriced), customer index (-1: none), outcome index (key index; len(keys):
    none) and incident (0: none, else 1 + index in INCIDENT_KINDS).
    """
    keys = profile.keys
    n_keys = len(keys)
    rng = np.random.default_rng(seed)

    def col(name: str) -> np.ndarray:
        return np.array([getattr(k, name) for k in keys], dtype=float)

    lo_x, hi_x = profile.burst_x
    lo_m, hi_m = profile.burst_minutes
    burst_p = profile.bursts_per_day / 1440  # chance a burst starts, per key and minute
    burst_share = burst_p * (lo_m + hi_m) / 2 * ((lo_x + hi_x) / 2 - 1)
    per_minute = rate_per_s * 60 * col("weight") / col("weight").sum() / (1 + burst_share)
    shape = np.stack([_weekly_shape(k.pattern) for k in keys])
    mean_in, mean_out, cache_hit = col("input_tokens"), col("output_tokens"), col("cache_hit")
    cache_write, reasoning, outcome_rate = col("cache_write"), col("reasoning"), col("outcome_rate")
    new_trace = 1 / np.maximum(col("calls_per_trace"), 1.0)
    facing = np.array([k.customer_facing and bool(profile.customers) for k in keys])
    price = np.array([PRICES_PER_1M[k.model] for k in keys]) / 1e6
    customer_cdf = np.cumsum(1 / np.arange(1, len(profile.customers) + 1) ** 1.1)  # Zipf
    customer_cdf /= customer_cdf[-1] if len(customer_cdf) else 1
    busiest = (per_minute[:, None] * shape).sum(axis=0).max() * (1 + burst_share) + 1
    width = int(max(1, min(60, _SLICE_CALLS // busiest)))  # minutes per slice
    burst_end, burst_x = np.zeros(n_keys), np.ones(n_keys)
    trace_no = np.zeros(n_keys, dtype=np.int64)
    end_ts = start_ts + duration_s
    for slice_ts in np.arange(math.floor(start_ts / 60) * 60.0, end_ts, 60.0 * width).tolist():
        # 1. Expected calls per (key, minute): weekly shape, bursts, incidents.
        grid = slice_ts + 60.0 * np.arange(width)
        mid = grid + 30
        week_minute = ((grid - _MONDAY_S) // 60).astype(np.int64) % _WEEK_MINUTES
        lam = per_minute[:, None] * shape[:, week_minute] * (grid < end_ts)
        mult = np.where(burst_end[:, None] > grid, burst_x[:, None], 1.0)
        for k, j in zip(*np.nonzero(rng.random((n_keys, width)) < burst_p), strict=True):
            burst_end[k] = grid[j] + 60 * rng.uniform(lo_m, hi_m)
            burst_x[k] = rng.uniform(lo_x, hi_x)
            mult[k, j:] = np.where(grid[j:] < burst_end[k], burst_x[k], mult[k, j:])
        lam *= mult
        token_x = np.ones((n_keys, width))
        label = np.zeros((n_keys, width), dtype=np.int64)
        for kind, x, begin, end, hits in plans:
            on = (begin <= mid) & (mid < end)
            for i in hits if on.any() else ():
                label[i, on] = list(INCIDENT_KINDS).index(kind) + 1
                if kind == "prompt_change":
                    token_x[i, on] *= x
                elif kind == "creep":
                    lam[i, on] *= x ** ((mid[on] - begin) / WEEK_S)
                elif kind == "batch_runaway":  # runs around the clock, not just at night
                    lam[i, on] = np.maximum(lam[i, on], per_minute[i]) * x
                else:
                    lam[i, on] *= x
        counts = rng.poisson(lam)
        calls_per_key = counts.sum(axis=1)
        total = int(calls_per_key.sum())
        if not total:
            continue
        # 2. Per-call draws; calls come grouped by key, in time order within a key.
        cell = np.repeat(np.arange(n_keys * width), counts.ravel())
        # Uniform offsets in the minute, sorted within each (key, minute) cell.
        offset = np.sort(cell * 64.0 + rng.random(total) * 60) - cell * 64.0
        which, minute = np.divmod(cell, width)
        u = rng.random((8, total))
        # Lognormal sizes with mean 1 (mu = -sigma**2 / 2), times any prompt change.
        size = np.exp(rng.standard_normal((2, total)) * _SIGMA - _SIGMA**2 / 2)
        size *= token_x[which, minute]
        inp = np.maximum(mean_in[which] * size[0], 1).astype(np.int64)
        out = np.maximum(mean_out[which] * size[1], 1).astype(np.int64)
        hit = u[0] < cache_hit[which]
        cr = np.where(hit, (inp * (0.5 + 0.45 * u[1])) // 128 * 128, 0).astype(np.int64)
        cw = np.where(~hit & (u[2] < cache_write[which]), inp * (0.3 + 0.6 * u[1]), 0)
        rs = np.minimum(out * reasoning[which] * (0.6 + 0.8 * u[3]), out)
        tokens = np.stack([inp, out, cr, cw.astype(np.int64), rs.astype(np.int64)])
        p = price[which].T
        cost = (inp - tokens[2] - tokens[3]) * p[0] + tokens[2] * p[1] + tokens[3] * p[2]
        cost = np.where(u[7] < priced_fraction, (cost + out * p[3]).round(9), np.nan)
        # A trace goes on, across slices too, until a call of its key starts a new one.
        begins = (u[4] < new_trace[which]).astype(np.int64)
        run = np.cumsum(begins)
        first = np.cumsum(calls_per_key) - calls_per_key
        trace = trace_no[which] + run - (run - begins)[first[which]]
        seen = calls_per_key > 0
        trace_no[seen] = trace[(np.cumsum(calls_per_key) - 1)[seen]]
        customer = np.where(facing[which], np.searchsorted(customer_cdf, u[5]), -1)
        outcome = np.where(u[6] < outcome_rate[which], which, n_keys)
        # 3. Event-time order within the run's bounds.
        # Offsets are distinct floats, so this order has no ties to break differently
        # on another machine; rounding to milliseconds afterwards keeps it.
        order = np.argsort(grid[minute] + offset)
        ts = (grid[minute] + offset)[order].round(3)
        keep = (ts >= start_ts) & (ts < end_ts)
        order = order[keep]
        yield (
            ts[keep], which[order], tokens[:, order], trace[order], cost[order],
            customer[order], outcome[order], label[which, minute][order],
        )  # fmt: skip


def pace(
    events: Iterable[UsageEvent],
    start_ts: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    speed: float = 1.0,
) -> Iterator[UsageEvent]:
    """Re-yield ``events`` no earlier than their event time, played ``speed`` times
    faster than real time from the first ``clock()`` reading (``time.monotonic``)."""
    wall0 = clock()
    for event in events:
        delay = (event.ts - start_ts) / speed - (clock() - wall0)
        if delay > 0:
            sleep(delay)
        yield event


def write_jsonl(events: Iterable[UsageEvent], fh: IO[bytes]) -> int:
    """Write events as v1 wire JSON, one per line; return how many."""
    count = 0
    for event in events:
        fh.write(encode_event(event) + b"\n")
        count += 1
    return count
