"""A progress line per stage in the worker's log, read from the stages' own metrics.

Why: a worker started on a backlog (a new deployment, a stage back after an outage) read
millions of events for minutes and logged nothing past "partition adopted", so an operator
without Prometheus could not tell working from stuck, nor how far it had to go. Every
``every_s`` the worker logs, for each stage that moved or has work left, what it did since
the last line and what is left: the numbers Prometheus scrapes (``metrics.py``), so the log
and the dashboards never disagree. A stage that did nothing logs nothing (the store reads the
ingest's watermark marks, events or not, and says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from spendbrake.schemas import format_ts

__all__ = ["Progress", "read_totals", "registries_of"]

log = logging.getLogger(__name__)

#: Default seconds between progress lines (``spendbrake worker --progress-interval``).
EVERY_S = 60.0
#: Event time this far behind the wall clock is said: a backlog still being read.
BEHIND_S = 3600.0

#: Per stage: the metric sums a line is made of, by the name it is read under.
_READ: dict[str, dict[str, tuple[str, dict[str, tuple[str, ...]] | None]]] = {
    # name in the line: (sample name, the values its labels must be among; None: any)
    "ingest": {
        "read": ("spendbrake_records_total", None),
        "dead": ("spendbrake_dlq_records_total", None),
        "behind": ("spendbrake_consumer_lag", None),
    },
    "detect": {
        "alerts": ("spendbrake_alerts_total", None),
        "behind": ("spendbrake_detect_lag", None),
        "event_time": ("spendbrake_detect_event_time_seconds", None),
    },
    "store": {
        "read": ("spendbrake_store_records_total", None),
        "rows": ("spendbrake_store_rows_total", None),
        "skipped": ("spendbrake_store_skipped_total", None),
        "behind": ("spendbrake_store_lag", None),
    },
    "act": {
        "done": ("spendbrake_effects_total", {"result": ("ok", "dry_run")}),
        "gave_up": ("spendbrake_effects_total", {"result": ("failed",)}),
        "retried": ("spendbrake_effects_total", {"result": ("retrying", "waiting")}),
        "pending": ("spendbrake_effects_pending", None),
    },
}


def read_totals(stage: str, registry: CollectorRegistry) -> dict[str, float]:
    """The stage's figures for a progress line: each a sum of samples of its registry."""
    wanted = _READ.get(stage, {})
    totals = dict.fromkeys(wanted, 0.0)
    for family in registry.collect():
        for sample in family.samples:
            for name, (sample_name, labels) in wanted.items():
                if sample.name == sample_name and (
                    labels is None or all(sample.labels.get(k) in v for k, v in labels.items())
                ):
                    totals[name] += sample.value
    return totals


def _line(
    stage: str, now: dict[str, float], before: dict[str, float], span_s: float, wall_s: float
) -> str:
    """One stage's line; empty when it did nothing since ``before`` and has nothing left.
    ``wall_s``: the wall clock, which the detect stage's event time is told against."""
    moved = {name: now[name] - before.get(name, 0.0) for name in now}
    if stage in ("ingest", "store"):
        if not moved["read"] and not now["behind"] and not moved.get("rows"):
            return ""
        rate = moved["read"] / span_s
        parts = [f"{moved['read']:,.0f} records read ({rate:,.0f}/s)"]
        if moved.get("rows"):
            parts.append(f"{moved['rows']:,.0f} rows written")
        parts.append(
            f"{now['behind']:,.0f} behind{_to_go(now['behind'], rate)}"
            if now["behind"]
            else "caught up"
        )
        if moved.get("dead"):
            parts.append(f"{moved['dead']:,.0f} to the dead-letter topic")
        if moved.get("skipped"):
            parts.append(f"{moved['skipped']:,.0f} skipped (see the warnings)")
    elif stage == "detect":
        if not moved["event_time"] and not now["behind"] and not moved["alerts"]:
            return ""
        event_time = now["event_time"]
        when = _minute(event_time) if event_time else "none yet"
        late_s = wall_s - event_time if event_time else 0.0
        if late_s >= BEHIND_S:
            # Every rollup read, but days of events still to come from the ingest: "caught
            # up" read as done while a new deployment was a week into three of history.
            when += f" ({_span(late_s)} behind the clock)"
        parts = [f"event time {when}"]
        behind = now["behind"]
        done = "caught up" if late_s < BEHIND_S else "every rollup written so far read"
        parts.append(f"{behind:,.0f} rollup records behind" if behind else done)
        if moved["alerts"]:
            parts.append(f"{moved['alerts']:,.0f} alert record(s) written")
    elif stage == "act":
        if not (moved["done"] or moved["gave_up"] or moved["retried"] or now["pending"]):
            return ""
        parts = [f"{moved['done']:,.0f} effect(s) done"]
        if moved["gave_up"]:
            parts.append(f"{moved['gave_up']:,.0f} failed for good")
        if moved["retried"]:
            parts.append(f"{moved['retried']:,.0f} attempt(s) to retry")
        parts.append(f"{now['pending']:,.0f} waiting")
    else:
        return ""
    return f"{stage}: " + ", ".join(parts)


def _to_go(behind: float, rate: float) -> str:
    """``, about 7 min to go`` at the rate of the last span (nothing when it read none)."""
    if rate <= 0:
        return ""
    minutes = behind / rate / 60
    return f", about {minutes:,.0f} min to go" if minutes >= 1 else ", under a minute to go"


def _span(seconds: float) -> str:
    """``7 h`` or ``19 d``: how far event time is behind the clock."""
    hours = seconds / 3600
    return f"{hours:,.0f} h" if hours < 48 else f"{hours / 24:,.0f} d"


def _minute(ts: float) -> str:
    return format_ts(ts)[:16].replace("T", " ") + " UTC"


class Progress:
    """Logs the progress lines of ``registries`` (stage name: its metrics) until stopped."""

    def __init__(
        self,
        registries: Mapping[str, CollectorRegistry],
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registries = dict(registries)
        self.every_s = every_s
        self.clock = clock
        self.wall = wall
        self._last = {stage: read_totals(stage, r) for stage, r in self.registries.items()}
        self._last_at = clock()

    def lines(self) -> list[str]:
        """The lines due now (and take the figures as the base of the next ones)."""
        at = self.clock()
        span = max(at - self._last_at, 1e-9)
        out = []
        for stage, registry in self.registries.items():
            now = read_totals(stage, registry)
            if line := _line(stage, now, self._last[stage], span, self.wall()):
                out.append(line)
            self._last[stage] = now
        self._last_at = at
        return out

    async def run(self, stopping: asyncio.Event) -> None:
        if self.every_s <= 0 or not self.registries:
            return
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every_s)
            if stopping.is_set():
                return
            for line in self.lines():
                log.info("%s", line)


def registries_of(stages: Mapping[str, Any]) -> dict[str, CollectorRegistry]:
    """Each stage's metrics registry."""
    return {
        name: stage.metrics.registry
        for name, stage in stages.items()
        if getattr(stage, "metrics", None) is not None
    }
