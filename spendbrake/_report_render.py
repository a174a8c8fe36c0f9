"""Render a report (``_report.build_report``'s dict) as a rich table, CSV or JSON.

Names in a report (teams, features, customers, models, keys, alert reasons) are the
callers' text: on a terminal each is shown with control characters as codes and rich
markup escaped (:func:`terminal_text`), so an ``ESC [`` sequence or a ``[link=...]`` tag
in a team name cannot repaint the screen or plant a link; in CSV a name never starts a
spreadsheet formula (``schemas.csv_text``).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spendbrake.schemas import csv_text, parse_ts, visible

CSV_COLUMNS = (
    "calls",
    "input_tokens",
    "cache_read_tokens",
    "output_tokens",
    "cost_usd",
    "cost_nusd",
    "prior_cost_usd",
    "trend_pct",
    "share_pct",
    "cache_hit_ratio",
    "unpriced_calls",  # last: a column added keeps the others where scripts read them
)


#: Alert and audit lines the table shows; the json lists every one.
SHOWN = 10
_SEVERITY_RANK = {"critical": 0, "warning": 1}


def _most_severe(alerts: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """The ``most`` alerts that matter most, in time order: hard stops and pages before
    trends and 50 % notes (the first ten by time hid a month's hard stop)."""
    ranked = sorted(
        range(len(alerts)), key=lambda i: (_SEVERITY_RANK.get(alerts[i]["severity"], 2), i)
    )
    return [alerts[i] for i in sorted(ranked[:most])]


def render_json(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"


def render_csv(report: dict[str, Any]) -> str:
    """The per-group rows only (one line per team / feature / model / customer)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    by = report["by"]
    writer.writerow([by, *CSV_COLUMNS])
    for row in report["rows"]:
        writer.writerow([csv_text(_name(row[by])), *(_cell(row[c]) for c in CSV_COLUMNS)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.9f}".rstrip("0").rstrip(".")
    return value


def _name(value: Any) -> str:
    return "(none)" if value is None else str(value)


def terminal_text(value: Any) -> str:
    """Caller text for a rich console or table cell: shown literally, never markup or
    terminal control."""
    return escape(visible("" if value is None else value))


def _usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 0.995 or value == 0 else f"${value:,.4f}"


def _pct(value: float | None) -> str:
    return "new" if value is None else f"{value:+.1f}%"


def _tokens(value: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def period_span(start: str, end: str) -> str:
    """A period's days, first to last, in UTC: ``Thu 2026-10-01 to Sat 2026-10-31, UTC``.

    Not ``2026-10-01 to 2026-11-01``: the end is the next period's start, and a reader
    takes November 1st for a day of October's report.
    """
    first = datetime.fromtimestamp(parse_ts(start), UTC)
    last = datetime.fromtimestamp(parse_ts(end), UTC) - timedelta(days=1)
    if first.date() == last.date():
        return f"{first:%a %Y-%m-%d}, UTC"
    return f"{first:%a %Y-%m-%d} to {last:%a %Y-%m-%d}, UTC"


def render_table(report: dict[str, Any], console: Console) -> None:
    period, total, by = report["period"], report["total"], report["by"]
    console.print(
        f"[bold]Spend report {period['label']}[/bold] "
        f"({period_span(period['start'], period['end'])}; by {by}; trend vs {period['prior']})"
    )
    console.print(
        f"total {_usd(total['cost_usd'])} ({_pct(total['trend_pct'])}), "
        f"{total['calls']:,} calls, cache hit ratio "
        + ("-" if total["cache_hit_ratio"] is None else f"{total['cache_hit_ratio']:.1%}")
    )
    table = Table(title_justify="left", show_edge=False)
    for column, justify in (
        (by, "left"),
        ("calls", "right"),
        ("input", "right"),
        ("cached", "right"),
        ("output", "right"),
        ("cost", "right"),
        ("trend", "right"),
        ("share", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in report["rows"]:
        table.add_row(
            terminal_text(_name(row[by])),
            f"{row['calls']:,}",
            _tokens(row["input_tokens"]),
            _tokens(row["cache_read_tokens"]),
            _tokens(row["output_tokens"]),
            _usd(row["cost_usd"]) + ("*" if row["unpriced_calls"] else ""),
            _pct(row["trend_pct"]),
            f"{row['share_pct']:.1f}%",
        )
    console.print(table)
    if any(row["unpriced_calls"] for row in report["rows"]):
        console.print("* holds calls without a price, counted as $0 (see the note below)")
    caching = report["caching"]
    if caching is not None:
        console.print(
            f"caching: {_tokens(caching['cache_read_tokens'])} cached input tokens saved "
            f"{_usd(caching['saved_usd'])} against full input prices"
        )
    for unit in report["outcomes"]:
        console.print(
            f"cost per outcome: {_usd(unit['cost_per_outcome_usd'])} per "
            f"{terminal_text(unit['outcome'])} "
            f"({unit['count']:,} in the period)"
        )
    traces = report["traces"]
    if traces is not None:
        # Once store.trace_weeks dropped weeks the period reaches into, its traces are the
        # kept days' alone: said on the line, not only in a note far below it.
        kept = report.get("traces_from")
        since = f" from {kept[:10]} on" if kept else ""
        console.print(
            f"cost per trace ({traces['count']:,} traces{since}): p50 {_usd(traces['p50_usd'])}, "
            f"p95 {_usd(traces['p95_usd'])}, max {_usd(traces['max_usd'])}"
        )
    customers = report["customers"]
    if customers and customers["top"]:
        shown = ", ".join(
            f"{terminal_text(c['customer'] or '(no customer)')} {_usd(c['cost_usd'])}"
            for c in customers["top"][:5]
        )
        console.print(f"top customers (of {customers['count']:,}): {shown}")
    projection = report["projection"]
    console.print(
        f"projection: period end {_usd(projection['period_end_usd'])}, "
        f"year {projection['year']} end {_usd(projection['year_end_usd'])}, "
        f"{_usd(projection['monthly_rate_at_year_end_usd'])}/month by the year's end (as of "
        f"{projection['as_of'][:16].replace('T', ' ')})"
    )
    for line in projection["assumptions"]:
        console.print(f"  assumes {line}")
    alerts = report["alerts"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(alerts["by_kind"].items()))
    console.print(f"alerts: {alerts['count']}" + (f" ({kinds})" if kinds else ""))
    for alert in _most_severe(alerts["items"], SHOWN):
        scope = ",".join(f"{k}={v}" for k, v in alert["scope"].items()) or "global"
        # The reason often opens with the scope the line has just named: said once. Cut at
        # 64 characters it lost its figures ("... where 97.8 a…").
        reason = (alert["reason"] or "").removeprefix(f"{scope}: ")
        reason = reason if len(reason) <= 160 else reason[:159] + "…"
        kind = terminal_text(alert["kind"])
        if isinstance(alert.get("threshold"), int | float):
            kind += f" {alert['threshold']:.0%}"
        console.print(
            f"  {alert['detected_at'][:16].replace('T', ' ')} {kind} "
            f"{terminal_text(scope)} {terminal_text(alert['severity'])} "
            f"{terminal_text(alert['action'])}: {terminal_text(reason)}"
        )
    if len(alerts["items"]) > SHOWN:
        console.print(
            f"  … {len(alerts['items']) - SHOWN:,} more (the most severe are shown; "
            "--format json lists every one)"
        )
    actions = report["actions"]
    results = ", ".join(f"{k} {n}" for k, n in sorted(actions["by_result"].items()))
    console.print(f"actions: {actions['count']}" + (f" ({results})" if results else ""))
    for action in actions["items"][:SHOWN]:
        words = (action["action"], action["target"], action["result"])
        console.print(
            f"  {action['at'][:16].replace('T', ' ')} "
            + " ".join(terminal_text(w) for w in words if w)  # no target: no double space
        )
    if len(actions["items"]) > SHOWN:
        console.print(f"  … {len(actions['items']) - SHOWN:,} more (--format json lists every one)")
    for note in report["notes"]:
        console.print(f"note: {terminal_text(note)}")
