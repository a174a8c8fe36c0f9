"""Showback from the rollup store: spend per team / feature / model / customer for a
period, with trend, share, caching, unit costs, trace costs, a projection, and the
period's alerts and actions.

Pure: a DuckDB connection and a period in, a plain dict out (JSON-ready; money both as
exact integer nano-dollars ``*_nusd`` and as dollars ``*_usd``). The clock is an
argument (``now``). Rendering lives in ``_report_render.py``, the chart in ``_chart.py``.

Totals come from DAILY windows (a period is whole UTC days, so hourly windows would
give the same sums at 24 times the rows); rows are the latest per record key, and a
window's total is the sum over input partitions and late epochs.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from spendbrake.schemas import NUSD, PriceTable, SpendBrakeError, format_ts

DAY_S = 86400
#: Mean days in a month (365.25 / 12), for a monthly run rate.
DAYS_PER_MONTH = 30.4375
BY_CHOICES = ("team", "feature", "model", "customer")
#: Days of run rate a projection averages (fewer when the period is younger).
RATE_DAYS = 7


class ReportError(SpendBrakeError):
    """A report that cannot be made: no store, an empty period, a bad period text."""


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days ``[start, end)`` (epoch seconds) named by ``label``."""

    label: str
    kind: str
    start: int
    end: int

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY_S

    def prior(self) -> Period:
        """The period of the same kind just before this one."""
        return parse_period(_label(self.kind, _day(self.start - DAY_S)))


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _ts(day: date) -> int:
    return calendar.timegm(day.timetuple())


def _label(kind: str, day: date) -> str:
    if kind == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if kind == "week":
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return day.isoformat()


def parse_period(text: str) -> Period:
    """``2026-10`` (a month), ``2026-W41`` (an ISO week, Monday start) or ``2026-10-05``.

    >>> parse_period("2026-10").days, parse_period("2026-W41").label
    (31.0, '2026-W41')
    """
    text = text.strip()
    try:
        if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
            first = date(int(m[1]), int(m[2]), 1)
            last = calendar.monthrange(first.year, first.month)[1]
            return Period(text, "month", _ts(first), _ts(first + timedelta(days=last)))
        if m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
            year, week = int(m[1]), int(m[2])
            # Dec 28 is always in its year's last ISO week (52 or 53); Python's own words
            # for a bad week ("Invalid week: 60") name neither the range nor the year.
            weeks = date(year, 12, 28).isocalendar().week
            if not 1 <= week <= weeks:
                raise ReportError(f"period {text!r}: week must be in 1..{weeks} for {year}")
            monday = date.fromisocalendar(year, week, 1)
            return Period(text, "week", _ts(monday), _ts(monday + timedelta(days=7)))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return Period(text, "day", _ts(day), _ts(day + timedelta(days=1)))
    except ValueError as exc:
        raise ReportError(f"period {text!r}: {exc}") from exc
    raise ReportError(
        f"period {text!r}: use a month 2026-10, an ISO week 2026-W41 or a day 2026-10-05"
    )


# -- queries ---------------------------------------------------------------------


def dimension_sets(con: Any) -> list[tuple[str, ...]]:
    rows = con.execute("SELECT DISTINCT dims FROM rollups WHERE window_s = 86400").fetchall()
    return sorted(tuple(d for d in dims.split(",") if d) for (dims,) in rows)


def _dims_with(con: Any, *fields: str) -> tuple[str, ...] | None:
    """The smallest stored dimension set holding every field (any such set partitions
    all events, so summing over its other attributes is exact)."""
    found = [d for d in dimension_sets(con) if all(f in d for f in fields)]
    return min(found, key=len) if found else None


def _grouped(
    con: Any, dims: tuple[str, ...], group: list[str], start: int, end: int
) -> list[tuple[Any, ...]]:
    """Summed metrics per group: (*group values, cost, calls, input, cache_read, output,
    unpriced)."""
    cols = ", ".join(f'"{g}"' for g in group)
    select = f"{cols}, " if group else ""
    group_by = f"GROUP BY {cols}" if group else ""
    return con.execute(
        f"""SELECT {select}SUM(cost_nusd)::BIGINT, SUM(calls)::BIGINT,
               SUM(input_tokens)::BIGINT, SUM(cache_read_tokens)::BIGINT,
               SUM(output_tokens)::BIGINT, SUM(unpriced_calls)::BIGINT
            FROM rollups WHERE dims = ? AND window_s = 86400
              AND window_start >= ? AND window_start < ? {group_by}""",
        [",".join(dims), start, end],
    ).fetchall()


def _prior_so_far(
    con: Any, dims: tuple[str, ...], group: list[str], prior: Period, elapsed_s: float
) -> dict[Any, float]:
    """Cost per group value (None without a group) of the first ``elapsed_s`` of ``prior``:
    its whole days, and the share of the next day (rollups are daily)."""
    whole = int(elapsed_s // DAY_S)
    share = elapsed_s / DAY_S - whole
    cut = prior.start + whole * DAY_S
    out: dict[Any, float] = {}
    for start, end, weight in ((prior.start, cut, 1.0), (cut, cut + DAY_S, share)):
        if weight <= 0.0 or start >= min(end, prior.end):
            continue
        for row in _grouped(con, dims, group, start, min(end, prior.end)):
            key = row[0] if group else None
            cost = row[len(group)] or 0
            out[key] = out.get(key, 0) + weight * cost
    return out


def _outcomes(
    con: Any, dims: tuple[str, ...], group: str | None, start: int, end: int
) -> dict[Any, dict[str, int]]:
    """Outcome counts per group value (None key without a group)."""
    col = f'"{group}"' if group else "NULL"
    rows = con.execute(
        f"""SELECT {col}, outcomes FROM rollups WHERE dims = ? AND window_s = 86400
              AND window_start >= ? AND window_start < ? AND outcomes IS NOT NULL""",
        [",".join(dims), start, end],
    ).fetchall()
    out: dict[Any, dict[str, int]] = {}
    for key, text in rows:
        counts = out.setdefault(key, {})
        for name, count in orjson.loads(text).items():
            counts[name] = counts.get(name, 0) + count
    return out


def _daily_costs(con: Any, start: int, end: int) -> dict[int, int]:
    """Global cost per UTC day (window start -> nano-dollars)."""
    rows = con.execute(
        """SELECT window_start, SUM(cost_nusd)::BIGINT FROM rollups
           WHERE dims = '' AND window_s = 86400 AND window_start >= ? AND window_start < ?
           GROUP BY window_start""",
        [start, end],
    ).fetchall()
    return dict(rows)


# -- math (pure, tested on hand-made numbers) --------------------------------------


def trend_pct(current: float, prior: float) -> float | None:
    """Change from the prior period in percent; None when there was nothing before."""
    if prior <= 0:
        return None
    return (current - prior) / prior * 100.0


def share_pct(part: float, total: float) -> float:
    return part / total * 100.0 if total > 0 else 0.0


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest rank (DuckDB's ``quantile_disc``): the smallest value with at least
    ``q`` of the values at or below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def cache_savings_usd(
    prices: PriceTable, model: str, ts: float, cache_read_tokens: int
) -> float | None:
    """What the cached tokens would have cost at the full input price, minus what they
    cost at the cache-read price; None for a model the price table does not know."""
    price = _model_price(prices, model, ts)
    if price is None:
        return None
    return cache_read_tokens * (price.input - price.cache_read) / 1_000_000


def _model_price(prices: PriceTable, model: str, ts: float) -> Any:
    """The [model] series has no provider: take the model's unique seller, else the
    first provider (sorted) that sells it."""
    price = prices.lookup("", model, ts)
    if price is not None:
        return price
    for provider in sorted({p for p, _ in prices.models()}):
        price = prices.lookup(provider, model, ts)
        if price is not None:
            return price
    return None


def grow(rate_per_day: float, daily_growth: float, days: float) -> float:
    """Spend over ``days`` at ``rate_per_day`` growing ``daily_growth`` a day,
    compounded continuously: rate * ((1+g)^days - 1) / ln(1+g)."""
    if days <= 0:
        return 0.0
    if abs(daily_growth) < 1e-12:
        return rate_per_day * days
    factor = math.log1p(daily_growth)
    return rate_per_day * (math.exp(factor * days) - 1.0) / factor


def project(
    spent_usd: float,
    daily_usd: list[float],
    prior_per_day_usd: float,
    elapsed_days: float,
    period_days: float,
    to_period_end_days: float,
    to_year_end_days: float,
    year_to_date_usd: float,
) -> dict[str, Any]:
    """Projection to period end and year end at the current run rate and growth.

    ``daily_usd`` are the period's complete days so far (oldest first). The run rate is
    the mean of the last ``RATE_DAYS`` of them (or spend so far per elapsed day when no
    day is complete); growth is this period's per-day average against the prior
    period's, spread evenly over the period's days.
    """
    recent = daily_usd[-RATE_DAYS:]
    if recent:
        rate = sum(recent) / len(recent)
        rate_basis = f"mean of the last {len(recent)} complete day(s)"
    else:
        rate = spent_usd / elapsed_days if elapsed_days > 0 else 0.0
        rate_basis = "spend so far per elapsed day (no complete day yet)"
    per_day = spent_usd / elapsed_days if elapsed_days > 0 else 0.0
    if prior_per_day_usd > 0 and per_day > 0:
        growth = per_day / prior_per_day_usd - 1.0
        growth_basis = "this period's per-day average vs the prior period's"
    else:
        growth = 0.0
        growth_basis = "no prior-period spend to compare: assumed flat"
    daily_growth = (1.0 + growth) ** (1.0 / period_days) - 1.0
    period_end = spent_usd + grow(rate, daily_growth, to_period_end_days)
    year_end = year_to_date_usd + grow(rate, daily_growth, to_year_end_days)
    return {
        "run_rate_usd_per_day": rate,
        "growth_per_period_pct": growth * 100.0,
        "daily_growth_pct": daily_growth * 100.0,
        "period_end_usd": period_end,
        "year_end_usd": year_end,
        # "At current growth, $X/month by year-end": the run rate grown to the year's end.
        "monthly_rate_at_year_end_usd": rate
        * (1.0 + daily_growth) ** max(to_year_end_days, 0.0)
        * DAYS_PER_MONTH,
        "assumptions": [
            f"run rate ${rate:,.2f}/day: {rate_basis}",
            f"growth {growth * 100:+.1f}% per period ({growth_basis}), "
            f"compounded daily ({daily_growth * 100:+.3f}%/day)",
            f"{to_period_end_days:.1f} day(s) left in the period, "
            f"{to_year_end_days:.1f} to the year end; year so far ${year_to_date_usd:,.2f}",
        ],
    }


# -- the report ------------------------------------------------------------------------


def build_report(
    con: Any,
    period: Period,
    by: str = "team",
    *,
    now: float,
    prices: PriceTable | None = None,
    top_n: int = 10,
) -> dict[str, Any]:
    """Everything the report shows, as plain data. Raises ReportError on an empty period."""
    if by not in BY_CHOICES:
        raise ReportError(f"--by {by!r}: use one of {', '.join(BY_CHOICES)}")
    prices = prices or PriceTable.default()
    prior = period.prior()
    has_global = () in dimension_sets(con)
    totals = _grouped(con, (), [], period.start, period.end) if has_global else []
    if not totals or totals[0][1] is None:
        raise ReportError(_empty(con, period))
    cost, calls, input_t, cached_t, output_t, unpriced = totals[0]
    prior_cost = _grouped(con, (), [], prior.start, prior.end)[0][0] or 0
    elapsed_s = min(max(now, period.start), period.end) - period.start
    running = elapsed_s < period.end - period.start
    # A period still running is compared with as much of the prior one (prorated within its
    # last day), not the whole of it: three days of December are no -90 % against November.
    compared = _prior_so_far(con, (), [], prior, elapsed_s).get(None, 0) if running else prior_cost
    # Nothing counted before the store's first day: a prior period that began earlier (the
    # month SpendBrake was deployed in) holds only part of its spend, and a trend against
    # it (+248 % for a first whole month) says more about the deployment than the spend.
    # The store's first hour (its first day where it holds days alone) also bounds the run
    # rate of the projection.
    counted_from = con.execute(
        "SELECT coalesce(min(window_start) FILTER (WHERE window_s = 3600), "
        "min(window_start) FILTER (WHERE window_s = 86400)) FROM rollups WHERE dims = ''"
    ).fetchone()[0]
    first_day = None if counted_from is None else counted_from - counted_from % DAY_S
    partial = first_day is not None and prior.start < first_day < prior.end
    prior_days_counted = (prior.end - first_day) / DAY_S if partial else None
    report: dict[str, Any] = {
        "period": {
            "label": period.label,
            "kind": period.kind,
            "start": format_ts(period.start),
            "end": format_ts(period.end),
            "prior": prior.label,
            #: Days of the prior period the store holds, when it began before them.
            "prior_days_counted": prior_days_counted,
        },
        "by": by,
        "total": {
            **_money("cost", cost),
            **_money("prior_cost", prior_cost),
            "calls": calls,
            "input_tokens": input_t,
            "cache_read_tokens": cached_t,
            "output_tokens": output_t,
            "unpriced_calls": unpriced,
            "trend_pct": trend_pct(cost, compared),
            "cache_hit_ratio": cached_t / input_t if input_t else None,
        },
        "notes": [],
    }
    if running:
        report["notes"].append(
            f"{period.label} is still running ({elapsed_s / DAY_S:.1f} of {period.days:g} days): "
            f"trends compare it with the first {elapsed_s / DAY_S:.1f} days of {prior.label}"
        )
    if prior_days_counted is not None:
        report["notes"].append(
            f"nothing was counted before {_day(first_day)}: {prior.label} holds "
            f"{prior_days_counted:g} of its {prior.days:g} days, and trends against it "
            "compare a whole period with that part"
        )
    if unpriced:
        report["notes"].append(_unpriced(con, period, unpriced, calls))
    report["rows"] = _rows(
        con, by, period, prior, cost, report["notes"], elapsed_s if running else None
    )
    report["outcomes"] = _unit_costs(con, period, cost)
    report["customers"] = _customers(con, period, cost, top_n, report["notes"])
    report["caching"] = _caching(con, period, prices, cached_t, report["notes"])
    report["traces"] = _traces(con, period)
    from spendbrake.streamer import traces_from

    kept_from = traces_from(con)
    # Where the period's trace partials begin when older weeks were dropped: the digest
    # names it on its per-task line, which would otherwise read as the whole period's.
    report["traces_from"] = None
    if kept_from is not None and period.start < kept_from:
        report["traces_from"] = format_ts(kept_from)
        report["notes"].append(
            f"cost per trace counts traces from {_day(int(kept_from))} on: older weeks of trace "
            "partials were dropped (store.trace_weeks)"
        )
    report["projection"] = _projection(con, period, prior, cost, prior_cost, now, counted_from)
    report["alerts"] = _alerts(con, period)
    report["actions"] = _actions(con, period)
    return report


def _money(name: str, nusd: int) -> dict[str, Any]:
    return {f"{name}_nusd": nusd, f"{name}_usd": nusd / NUSD}


def _empty(con: Any, period: Period) -> str:
    span = con.execute(
        "SELECT MIN(window_start), MAX(window_start) FROM rollups WHERE window_s = 86400"
    ).fetchone()
    if span is None or span[0] is None:
        return f"no spend recorded for {period.label}: the store holds no daily rollups yet"
    first, last = (format_ts(t)[:10] for t in span)
    return f"no spend recorded for {period.label}: the store holds days {first} to {last}"


def _rows(
    con: Any,
    by: str,
    period: Period,
    prior: Period,
    total: int,
    notes: list[str],
    elapsed_s: float | None = None,
) -> list[dict[str, Any]]:
    """A row per ``by`` value; ``elapsed_s``: the period is still running, and each row's
    trend compares it with that much of the prior period."""
    dims = _dims_with(con, by)
    if dims is None:
        notes.append(f"no rollup dimension set holds {by!r}: add it under dimensions")
        return []
    current = _grouped(con, dims, [by], period.start, period.end)
    before = {r[0]: r[1] for r in _grouped(con, dims, [by], prior.start, prior.end)}
    compared = before if elapsed_s is None else _prior_so_far(con, dims, [by], prior, elapsed_s)
    outcomes = _outcomes(con, dims, by, period.start, period.end)
    rows = []
    for name, cost, calls, input_t, cached_t, output_t, unpriced in current:
        prior_cost = before.get(name) or 0
        rows.append(
            {
                by: name,
                "calls": calls,
                "unpriced_calls": unpriced,
                "input_tokens": input_t,
                "cache_read_tokens": cached_t,
                "output_tokens": output_t,
                **_money("cost", cost),
                **_money("prior_cost", prior_cost),
                "trend_pct": trend_pct(cost, compared.get(name) or 0),
                "share_pct": share_pct(cost, total),
                "cache_hit_ratio": cached_t / input_t if input_t else None,
                "outcomes": outcomes.get(name, {}),
            }
        )
    rows.sort(key=lambda r: (-r["cost_nusd"], str(r[by])))
    return rows


def _unpriced(con: Any, period: Period, unpriced: int, calls: int) -> str:
    """The note for calls no price covered: they count as $0, which a total hides."""
    dims = _dims_with(con, "model")
    rows = _grouped(con, dims, ["model"], period.start, period.end) if dims is not None else []
    models = sorted(str(model) for model, *_, calls_unpriced in rows if calls_unpriced)
    which = (
        f" (model {', '.join(models[:5])}{', ...' if len(models) > 5 else ''})" if models else ""
    )
    return (
        f"{unpriced:,} of {calls:,} calls had no price{which}: they count as $0 in every "
        "figure; give the model a price under pricing in the config"
    )


def _unit_costs(con: Any, period: Period, total: int) -> list[dict[str, Any]]:
    """Cost per outcome: the period's whole spend over each outcome's count."""
    counts = _outcomes(con, (), None, period.start, period.end).get(None, {})
    return [
        {"outcome": name, "count": count, "cost_per_outcome_usd": total / NUSD / count}
        for name, count in sorted(counts.items(), key=lambda kv: -kv[1])
        if count
    ]


def _customers(
    con: Any, period: Period, total: int, top_n: int, notes: list[str]
) -> dict[str, Any] | None:
    dims = _dims_with(con, "customer")
    if dims is None:
        notes.append("no [customer] rollups: cost per customer left out")
        return None
    rows = _grouped(con, dims, ["customer"], period.start, period.end)
    rows.sort(key=lambda r: (-r[1], str(r[0])))
    return {
        "count": sum(1 for r in rows if r[0] is not None),
        "top": [
            {
                "customer": name,
                **_money("cost", cost),
                "calls": calls,
                "cost_per_call_usd": cost / NUSD / calls if calls else None,
                "share_pct": share_pct(cost, total),
            }
            for name, cost, calls, *_ in rows[:top_n]
        ],
    }


def _caching(
    con: Any, period: Period, prices: PriceTable, cached_tokens: int, notes: list[str]
) -> dict[str, Any] | None:
    """Savings per model and day: the [model] series carries the tokens, the price
    table the two prices in force that day."""
    dims = _dims_with(con, "model")
    if dims is None:
        notes.append("no [model] rollups: caching savings left out")
        return None
    rows = con.execute(
        """SELECT model, window_start, SUM(cache_read_tokens)::BIGINT FROM rollups
           WHERE dims = ? AND window_s = 86400 AND window_start >= ? AND window_start < ?
             AND cache_read_tokens > 0
           GROUP BY model, window_start""",
        [",".join(dims), period.start, period.end],
    ).fetchall()
    saved = 0.0
    by_model: dict[str, float] = {}
    unpriced: dict[str, int] = {}
    for model, day, tokens in rows:
        value = cache_savings_usd(prices, model, day, tokens)
        if value is None:
            unpriced[model] = unpriced.get(model, 0) + tokens
            continue
        saved += value
        by_model[model] = by_model.get(model, 0.0) + value
    if unpriced:
        notes.append(
            "caching savings leave out models without a price: " + ", ".join(sorted(unpriced))
        )
    return {
        "cache_read_tokens": cached_tokens,
        "saved_usd": saved,
        "saved_by_model_usd": dict(sorted(by_model.items(), key=lambda kv: -kv[1])),
        "unpriced_cache_read_tokens": unpriced,
    }


def _traces(con: Any, period: Period) -> dict[str, Any] | None:
    """Cost per trace: partials summed per trace, a trace counted in the period it started."""
    row = con.execute(
        """WITH ids AS (SELECT DISTINCT trace_id FROM traces WHERE start_ts >= ? AND start_ts < ?),
           t AS (
               SELECT trace_id, SUM(cost_nusd) AS cost, SUM(calls) AS calls, MIN(start_ts) AS s
               FROM traces WHERE trace_id IN (SELECT trace_id FROM ids)
               GROUP BY trace_id)
           SELECT COUNT(*), quantile_disc(cost, 0.5)::BIGINT, quantile_disc(cost, 0.95)::BIGINT,
                  MAX(cost)::BIGINT, SUM(cost)::BIGINT, SUM(calls)::BIGINT
           FROM t WHERE s >= ? AND s < ?""",
        [period.start, period.end, period.start, period.end],
    ).fetchone()
    count, p50, p95, top, total, calls = row
    if not count:
        return None
    return {
        "count": count,
        "calls": calls,
        **_money("p50", p50),
        **_money("p95", p95),
        **_money("max", top),
        **_money("mean", total // count),
    }


def _projection(
    con: Any,
    period: Period,
    prior: Period,
    cost: int,
    prior_cost: int,
    now: float,
    counted_from: int | None,
) -> dict[str, Any]:
    """``counted_from``: the store's first hour. A day before it (or the day it began in) is
    not a day of $0 but one nothing was counted in; a deployment begun on the 3rd halved its
    run rate."""
    as_of = min(max(now, period.start), period.end)
    complete = int((as_of - period.start) / DAY_S)
    start = period.start if counted_from is None else min(max(period.start, counted_from), as_of)
    elapsed = (as_of - start) / DAY_S
    daily = _daily_costs(con, period.start, period.start + complete * DAY_S)
    days = [
        daily.get(day, 0) / NUSD
        for day in (period.start + i * DAY_S for i in range(complete))
        if day >= start
    ]
    year = _day(int(as_of) - (1 if as_of == period.end else 0)).year
    jan1 = _ts(date(year, 1, 1))
    # The year so far ends with the period when it is over: the next period's days are
    # among the projected ones. While it runs, the day holding as_of counts in full (its
    # window holds what has been spent in it), and no later day does.
    ytd_end = period.end if as_of == period.end else _ts(_day(int(as_of))) + DAY_S
    ytd = sum(_daily_costs(con, jan1, ytd_end).values())
    # The prior period's days before counting began are not $0 either: a deployment begun
    # on the 16th put a month's spend over 30 days, and December "grew" +126 %.
    prior_start = (
        prior.start if counted_from is None else min(max(prior.start, counted_from), prior.end)
    )
    prior_days = (prior.end - prior_start) / DAY_S
    out = project(
        spent_usd=cost / NUSD,
        daily_usd=days,
        prior_per_day_usd=prior_cost / NUSD / prior_days if prior_days > 0 else 0.0,
        elapsed_days=elapsed,
        period_days=period.days,
        to_period_end_days=(period.end - as_of) / DAY_S,
        to_year_end_days=(_ts(date(year + 1, 1, 1)) - as_of) / DAY_S,
        year_to_date_usd=ytd / NUSD,
    )
    if start > period.start:
        out["assumptions"].append(
            f"counting began {format_ts(start)[:16].replace('T', ' ')} UTC: the days before "
            "it are unknown, not $0, and left out of the run rate"
        )
    out["as_of"] = format_ts(as_of)
    out["year"] = year
    return out


def _alerts(con: Any, period: Period) -> dict[str, Any]:
    """Every alert record of the period (``items``; the table shows the most severe, json
    all: cut at 20, a month's hard stops were missing from both, unsaid)."""
    rows = con.execute(
        """SELECT detected_at, kind, severity, scope, observed_usd, action, targets, reason,
                  id, seq, window_start, window_end,
                  CASE WHEN kind = 'budget' THEN record END
           FROM alerts WHERE detected_at >= ? AND detected_at < ?
           ORDER BY detected_at, id, seq""",
        [period.start, period.end],
    ).fetchall()
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row[1] or "?"] = by_kind.get(row[1] or "?", 0) + 1
    # Incidents alerted, apart from trends: an incident's follow-ups (``seq`` > 0) are
    # records of the same incident, and trends are listed on their own, not paged.
    incidents: dict[str, str] = {r[8]: r[1] or "?" for r in rows if r[2] != "info"}
    incidents_by_kind: dict[str, int] = {}
    for kind in incidents.values():
        incidents_by_kind[kind] = incidents_by_kind.get(kind, 0) + 1
    items = [
        {
            "detected_at": format_ts(r[0]),
            "kind": r[1],
            "severity": r[2],
            "scope": orjson.loads(r[3]) if r[3] else {},
            "observed_usd": r[4],
            "action": r[5],
            "targets": orjson.loads(r[6]) if r[6] else [],
            "reason": r[7],
            "id": f"{r[8]}#{r[9]}",
            # A budget's 50, 80 and 100 % read alike on a backlog ("spent $104 ... (104%)"):
            # the threshold crossed tells them apart.
            "threshold": orjson.loads(r[12]).get("threshold") if r[12] else None,
        }
        for r in rows
    ]
    # Trends (severity info) are not paged: the digest is where they are read, so they are
    # listed apart (an incident's first record), not cut off by the busiest alerts.
    seen: set[str] = set()
    trends = []
    for r in rows:
        if r[2] == "info" and r[8] not in seen:
            seen.add(r[8])
            trends.append(
                {
                    "detected_at": format_ts(r[0]),
                    "kind": r[1],
                    "scope": orjson.loads(r[3]) if r[3] else {},
                    "reason": r[7],
                    "id": r[8],
                    # The span it judged (a trend's day), which detected_at is not: a
                    # day's trend is found ten minutes after the day has ended.
                    "window_start": format_ts(r[10]) if r[10] is not None else None,
                    "window_end": format_ts(r[11]) if r[11] is not None else None,
                }
            )
    return {
        "count": len(rows),
        "by_kind": by_kind,
        "incidents": len(incidents),
        "incidents_by_kind": incidents_by_kind,
        "trend_count": len({r[8] for r in rows if r[2] == "info"}),
        "items": items,
        "trends": trends,
    }


def _actions(con: Any, period: Period) -> dict[str, Any]:
    """Every audit record of the period (``items``; the table shows ten and counts the rest)."""
    # Alerts carry event time, audit records wall-clock time: a backlog's alerts fire
    # (in event time) inside the period while their actions happen later, so an action
    # belongs to the period when it happened in it OR answered one of its alerts.
    rows = con.execute(
        """SELECT at_ts, action, target, result, source, incident, detail FROM actions
           WHERE (at_ts >= ? AND at_ts < ?)
              OR alert IN (SELECT id || '#' || seq FROM alerts
                           WHERE detected_at >= ? AND detected_at < ?)
           ORDER BY at_ts, id""",
        [period.start, period.end, period.start, period.end],
    ).fetchall()
    by_result: dict[str, int] = {}
    for row in rows:
        key = f"{row[1]} {row[3]}"
        by_result[key] = by_result.get(key, 0) + 1
    items = [
        {
            "at": format_ts(r[0]),
            "action": r[1],
            "target": r[2],
            "result": r[3],
            "source": r[4],
            "incident": r[5],
            "detail": r[6],
        }
        for r in rows
    ]
    return {"count": len(rows), "by_result": by_result, "items": items}


def team_model_costs(con: Any, period: Period) -> tuple[dict[str, dict[str, int]], bool]:
    """team -> model -> nano-dollars for the chart; False when the store has no
    [team, model] series (then one bar per team under the model ``"all"``)."""
    dims = ("team", "model") if ("team", "model") in dimension_sets(con) else None
    if dims is None:
        rows = [
            (t, "all", c)
            for t, c, *_ in _grouped(con, ("team",), ["team"], period.start, period.end)
        ]
    else:
        rows = [
            (t, m, c)
            for t, m, c, *_ in _grouped(con, dims, ["team", "model"], period.start, period.end)
        ]
    out: dict[str, dict[str, int]] = {}
    for team, model, cost in rows:
        out.setdefault(str(team), {})[str(model)] = cost
    return out, dims is not None


def open_store(path: str | Path) -> Any:
    """Open the store read-only for a report, or raise ReportError saying why not."""
    from spendbrake.streamer import StoreBusy, connect_store, table_type

    path = Path(path)
    if not path.is_file():
        raise ReportError(
            f"no store at {path}: run `spendbrake worker --stages ...,store` first, or pass --store"
        )
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[8:12] != b"DUCK":  # DuckDB's file magic: a config, an export, an empty file...
        raise ReportError(
            f"{path} is not a store (a DuckDB file, which the worker's store stage writes "
            "under its --state-dir): pass the store file as --store"
        )
    try:
        con = connect_store(path, read_only=True)
    except StoreBusy as exc:
        raise ReportError(str(exc)) from exc
    except Exception as exc:  # duckdb raises its own error types for a bad file
        raise ReportError(f"{path}: cannot open as a DuckDB store ({exc})") from exc
    if table_type(con, "rollups") is None:  # another program's DuckDB file
        con.close()
        raise ReportError(f"{path} is a DuckDB file but not a store: it has no rollups table")
    return con


def report_from_store(
    path: str | Path,
    period: Period,
    by: str = "team",
    *,
    now: float,
    prices: PriceTable | None = None,
    top_n: int = 10,
    chart: str | Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """Open the store, build the report, close it; write the chart PNG if ``chart``.

    Returns the report and whether the chart is stacked by model (it needs [team, model]
    rollups). The one path every reader takes: the report and digest commands, the
    worker's digest schedule and the demo. Raises ``ReportError``.
    """
    con = open_store(path)
    try:
        data = build_report(con, period, by, now=now, prices=prices, top_n=top_n)
        costs, stacked = team_model_costs(con, period) if chart else ({}, False)
    finally:
        con.close()
    if chart:
        from ._chart import spend_chart

        try:
            spend_chart(costs, stacked, f"Spend by team, {period.label}", chart)
        except OSError as exc:
            raise ReportError(f"cannot write the chart {chart}: {exc.strerror or exc}") from exc
    return data, stacked
