"""The Slack digest: a period's showback as summary blocks, with the chart in its thread.

``digest_message`` is pure (report dict in, Block Kit out); ``send_digest`` posts it with
the same ``SlackNotifier`` the action stage uses. The summary carries a dedupe key in its
metadata (``digest/<period>/<by>``): a re-run (the schedule after a restart, or a retry
after an unanswered call) finds the posted summary in the channel and does not post it
again, and the chart goes up only when the summary's thread has no file yet. Looking needs
the channel's id (history calls take no names): given in the config, or learned from an
earlier post and kept in ``<state-dir>/digest/channels.json``; without it the summary is
posted unchecked.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from spendbrake.actions import SlackNotifier, how_to_fix
from spendbrake.schemas import (
    Config,
    PriceTable,
    SlackConfig,
    mrkdwn,
    mrkdwn_code,
    mrkdwn_text,
    parse_ts,
)
from spendbrake.streamer import write_atomic

from ._report import ReportError, parse_period, report_from_store
from ._report_render import period_span

log = logging.getLogger(__name__)

#: Rows of the showback named in the summary; the rest is one "others" line.
TOP_ROWS = 6
#: Trends (alerts of severity info, never paged) named in the summary.
TOP_TRENDS = 5
#: How often the schedule looks for a due digest, and waits after Slack failed.
CHECK_S = 60.0
#: How soon the schedule asks again while the store cannot tell yet how far it has counted
#: (it is starting): a digest due at a start is not held back a whole ``CHECK_S``.
UNKNOWN_S = 1.0
RETRY_S = 300.0
#: How many periods back the schedule still sends a digest it missed (Slack or the worker
#: down across due times): five weeks, three months (``unsent_periods`` says why).
CATCH_UP = {"weekly": 5, "monthly": 3}


@dataclass(frozen=True, slots=True)
class DigestResult:
    """Where the digest is: its summary's ts, and whether each part was new."""

    ts: str
    posted: bool
    chart_uploaded: bool


def due_period(schedule: str, now: float, hour: int = 9) -> tuple[str, float] | None:
    """The latest period whose digest is due at ``now``, and when it fell due.

    ``weekly``: the previous ISO week, due Monday at ``hour`` UTC; ``monthly``: the previous
    month, due on the 1st at ``hour`` UTC; ``off``: None.

    >>> due_period("weekly", datetime(2026, 11, 24, 8, tzinfo=UTC).timestamp())
    ('2026-W47', 1795424400.0)
    >>> due_period("monthly", datetime(2026, 11, 1, 8, tzinfo=UTC).timestamp())[0]
    '2026-09'
    """
    if schedule == "off":
        return None
    today = datetime.fromtimestamp(now, UTC).date()
    if schedule == "weekly":
        monday = today - timedelta(days=today.weekday())
        due = _at(monday, hour)
        if due > now:
            monday -= timedelta(days=7)
            due = _at(monday, hour)
        year, week, _ = (monday - timedelta(days=7)).isocalendar()
        return f"{year:04d}-W{week:02d}", due
    if schedule == "monthly":
        first = today.replace(day=1)
        due = _at(first, hour)
        if due > now:
            first = (first - timedelta(days=1)).replace(day=1)
            due = _at(first, hour)
        last = first - timedelta(days=1)
        return f"{last.year:04d}-{last.month:02d}", due
    raise ValueError(f"unknown digest schedule {schedule!r}")


def due_periods(
    schedule: str, now: float, hour: int = 9, count: int = 1
) -> list[tuple[str, float]]:
    """The ``count`` latest periods due at ``now`` and when each fell due, oldest first.

    >>> dec2 = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    >>> [label for label, _ in due_periods("monthly", dec2, count=3)]
    ['2026-09', '2026-10', '2026-11']
    """
    out: list[tuple[str, float]] = []
    due = due_period(schedule, now, hour)
    while due is not None and len(out) < count:
        out.append(due)
        due = due_period(schedule, due[1] - 1, hour)  # the one due before it
    return out[::-1]


def unsent_periods(
    schedule: str, now: float, hour: int, by: str, sent: set[str]
) -> list[tuple[str, float]]:
    """The due periods the schedule sends at ``now``, oldest first: each of the last
    ``CATCH_UP[schedule]`` not in ``sent`` (keys ``<label>/<by>``) and later than the first
    period ``sent`` holds for this schedule and grouping; with none held, the latest alone.

    Why these: the record of what was sent is what tells a digest missed (Slack or the
    worker down across a due time: it still goes out, late) from one never meant to be
    sent. A new deployment, a state dir lost, or a schedule or grouping just changed starts
    with the latest period instead of posting a backlog nobody asked for. The bound caps
    what an old record brings back (the schedule off for a year, then on again): five
    weeks covers a month-long outage of a weekly digest, three months a quarter's of a
    monthly one, and older showbacks are better asked for with ``spendbrake digest``.
    """
    if schedule == "off":
        return []
    due = due_periods(schedule, now, hour, CATCH_UP[schedule])
    weekly = schedule == "weekly"
    held = [
        label
        for label, _, grouping in (key.rpartition("/") for key in sent)
        if grouping == by and ("-W" in label) == weekly
    ]
    if not held:
        return due[-1:]
    # Labels of one kind sort as their periods do (2026-W53 < 2027-W01, 2026-09 < 2026-10).
    first = min(held)
    return [(label, at) for label, at in due if label > first and f"{label}/{by}" not in sent]


def _at(day: date, hour: int) -> float:
    return float(calendar.timegm(day.timetuple()) + hour * 3600)


def dedupe_key(report: dict[str, Any]) -> str:
    return f"digest/{report['period']['label']}/{report['by']}"


def digest_message(report: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks summarising ``report`` (from ``build_report``)."""
    period, total, by = report["period"], report["total"], report["by"]
    prior = period["prior"]
    if period.get("prior_days_counted") is not None:  # deployed during it: part of its spend
        prior += f", {period['prior_days_counted']:g} days of it counted"
    trend = _trend(total.get("trend_pct"), prior)
    headline = f"AI spend {period['label']}: {_usd(total['cost_usd'])}{trend}"
    fields = [
        f"*Spend*\n{_usd(total['cost_usd'])}{trend}",
        f"*Calls*\n{total['calls']:,}",
    ]
    caching = report.get("caching") or {}
    hit = total.get("cache_hit_ratio")
    if hit is not None:
        saved = caching.get("saved_usd")
        fields.append(
            f"*Cache hits*\n{hit:.0%} of input tokens" + (f", saved {_usd(saved)}" if saved else "")
        )
    projection = report.get("projection") or {}
    if projection.get("period_end_usd") is not None:
        # An ended period's "projection" is its total, already the first field.
        ended = projection.get("as_of") == period["end"]
        parts = [] if ended else [f"{_usd(projection['period_end_usd'])} by the period's end"]
        if projection.get("monthly_rate_at_year_end_usd") is not None:
            rate = _usd(projection["monthly_rate_at_year_end_usd"])
            parts.append(f"at current growth {rate}/month by the year's end")
        if parts:
            fields.append("*Projection*\n" + "; ".join(parts))
    title = f"AI spend, {period['label']} ({period_span(period['start'], period['end'])})"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "fields": [mrkdwn_text(f, 2000) for f in fields]},
    ]
    rows = report.get("rows") or []
    if rows:
        lines = [
            f"`{_name(r[by])}` {_usd(r['cost_usd'])} ({r['share_pct']:.0f}%"
            + (f", {_arrow(r['trend_pct'])}" if r.get("trend_pct") is not None else "")
            + ")"
            for r in rows[:TOP_ROWS]
        ]
        rest = rows[TOP_ROWS:]
        if rest:
            others = sum(r["cost_usd"] for r in rest)
            lines.append(f"{len(rest)} other(s) {_usd(others)}")
        blocks.append(_section(f"*By {by}*\n" + "\n".join(lines)))
    unit = [
        f"{_usd(o['cost_per_outcome_usd'])} per {mrkdwn(o['outcome'].replace('_', ' '))}"
        for o in (report.get("outcomes") or [])[:3]
    ]
    unit += _per_task(report.get("traces"), report.get("traces_from"))
    if unit:
        blocks.append(_section("*Unit economics*\n" + "\n".join(unit)))
    alerts, actions = report.get("alerts") or {}, report.get("actions") or {}
    if alerts.get("incidents") or actions.get("count"):
        # Incidents, not alert records (an escalation is the same incident), and trends
        # counted apart: they are listed below and were never paged.
        by_kind = alerts.get("incidents_by_kind") or {}
        kinds = mrkdwn(", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
        done = mrkdwn(
            ", ".join(f"{k} {n}" for k, n in sorted((actions.get("by_result") or {}).items()))
        )
        blocks.append(
            _section(
                f"*Incidents*\n{alerts.get('incidents', 0)} incident(s) alerted"
                + (f" ({kinds})" if kinds else "")
                + f"; {actions.get('count', 0)} action(s)"
                + (f" ({done})" if done else "")
            )
        )
    trends = alerts.get("trends") or []
    if trends:
        # Trends the detectors found but did not page (severity info): creeps, steps. Each
        # says the day it judged: "day $264 vs $175" is otherwise any day of the period.
        # Escaped: a reason quotes names from events and the config ("<!here> daily").
        lines = [f"• {_day_of(t)}{mrkdwn(t['reason'] or '')}"[:300] for t in trends[:TOP_TRENDS]]
        # The report lists 20 at most; trend_count is how many the period had.
        more = max(alerts.get("trend_count", 0), len(trends)) - TOP_TRENDS
        if more > 0:
            lines.append(f"{more} more: `spendbrake report` lists them")
        blocks.append(_section("*Trends (not paged)*\n" + "\n".join(lines)))
    blocks.append(
        {
            "type": "context",
            "elements": [
                mrkdwn_text(
                    f"`spendbrake report --period {period['label']} --by {by}` for the "
                    "full table; chart in the thread."
                )
            ],
        }
    )
    return headline, blocks


async def send_digest(
    slack: SlackConfig,
    report: dict[str, Any],
    chart: Path | None,
    *,
    channel: str | None = None,
    since: float | None,
    channel_ids: dict[str, str] | None = None,
) -> DigestResult:
    """Post the summary (unless one with the same key is in the channel since ``since``;
    None: post without looking) and upload ``chart`` to its thread (unless a file is
    there). ``channel_ids``: channel ids known by name, updated with what Slack answers.
    Raises ``DigestError``."""
    config = slack.model_copy(update={"channel": channel}) if channel else slack
    ids = channel_ids if channel_ids is not None else {}
    notifier = SlackNotifier(config, timeout_s=config.timeout_s, channel_id=ids.get(config.channel))
    try:
        text, blocks = digest_message(report)
        key = dedupe_key(report)
        ts = None
        if since is not None:
            found = await notifier.find(key, since)
            if not found.ok and found.failure == "config" and found.needed != "slack.token":
                log.warning(
                    "digest %s: cannot look for an earlier post (%s needed); posting it",
                    key,
                    found.needed,
                )
            elif not found.ok:
                raise DigestError(f"slack conversations.history failed: {found.error}")
            ts = found.ts
        posted = ts is None
        if ts is None:
            outcome = await notifier.post(text, blocks, dedupe_key=key)
            if not outcome.ok or outcome.ts is None:
                fix = (
                    f" ({how_to_fix(outcome.error, outcome.needed)})"
                    if outcome.failure == "config"
                    else ""
                )
                raise DigestError(
                    f"slack chat.postMessage to {config.channel} failed: {outcome.error}{fix}"
                )
            ts = outcome.ts
        uploaded = False
        if chart is not None:
            has_file = await notifier.thread_has_file(ts)
            if not has_file.ok:
                raise DigestError(f"slack conversations.replies failed: {has_file.error}")
            if has_file.ts is None:
                outcome = await notifier.upload(
                    chart, title=f"Spend by team, {report['period']['label']}", thread_ts=ts
                )
                if not outcome.ok:
                    raise DigestError(f"slack files_upload_v2 failed: {outcome.error}")
                uploaded = True
        return DigestResult(ts=ts, posted=posted, chart_uploaded=uploaded)
    finally:
        if notifier.channel_id:
            ids[config.channel] = notifier.channel_id
        await notifier.close()


def channel_ids_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / "digest" / "channels.json"


def load_channel_ids(path: Path) -> dict[str, str]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        ids = orjson.loads(path.read_bytes())
        if isinstance(ids, dict):
            return {str(k): str(v) for k, v in ids.items()}
    return {}


def save_channel_ids(path: Path, ids: dict[str, str]) -> None:
    if ids and ids != load_channel_ids(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, orjson.dumps(ids, option=orjson.OPT_SORT_KEYS))


class DigestError(Exception):
    """Slack refused or did not answer; the message says which call."""


def _event_time(ts: float) -> str:
    if math.isinf(ts):
        return "nothing yet" if ts < 0 else "now"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn_text(text)}


def _usd(value: float) -> str:
    """Dollars as the digest shows them: cents, two significant digits under ten cents (a
    task's p50 of $0.0010 read "$0.00"), millions past a million."""
    if abs(value) >= 1e6:
        return f"${value / 1e6:,.2f}M"
    if abs(value) >= 0.095 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.{1 - math.floor(math.log10(abs(value)))}f}"


def _per_task(traces: dict[str, Any] | None, kept_from: str | None) -> list[str]:
    """The cost per agent task line. A period reaching back before the trace partials kept
    (``store.trace_weeks`` dropped older weeks) says from when its tasks count: a month's
    "p50 over 6,933 tasks" from its last day alone reads as the whole month's."""
    since = (
        "" if kept_from is None else f"{datetime.fromtimestamp(parse_ts(kept_from), UTC):%a %m-%d}"
    )
    if not traces:
        return [f"per agent task: not kept before {since} (store.trace_weeks)"] if since else []
    count = traces["count"]
    tasks = f"{count:,} task{'s' if count != 1 else ''}" + (f" from {since} on" if since else "")
    return [
        f"{_usd(traces['p50_usd'])} per agent task (p50; p95 {_usd(traces['p95_usd'])}, {tasks})"
    ]


def _day_of(trend: dict[str, Any]) -> str:
    """``Tue 11-17: `` for a trend about one UTC day; the span for a longer one."""
    start, end = trend.get("window_start"), trend.get("window_end")
    if not start or not end:
        return ""
    first, stop = parse_ts(start), parse_ts(end)
    if stop - first == 86_400:
        return f"{datetime.fromtimestamp(first, UTC):%a %m-%d}: "
    return f"{_event_time(first)} to {_event_time(stop)}: "


def _arrow(pct: float) -> str:
    return f"{'▲' if pct > 0 else '▼' if pct < 0 else '='}{abs(pct):.0f}%"


def _trend(pct: float | None, prior: str) -> str:
    return "" if pct is None else f" ({_arrow(pct)} vs {prior})"


def _name(value: Any) -> str:
    """A row's name for a code span: the caller's text, escaped (``schemas.mrkdwn_code``)."""
    return "(none)" if value is None else mrkdwn_code(value)


class DigestScheduler:
    """Sends each due digest once (``digest.schedule``), from the store stage's process.

    Labels sent are kept in ``<state-dir>/digest/sent.json``; a crash between the post and
    that record is covered by ``send_digest`` finding its own message in the channel, as is
    a digest of the period posted by hand (``spendbrake digest``, the same dedupe key) any
    time after the period ended.
    ``file_lock`` is the store stage's: DuckDB refuses a read-only connection in a
    process that has the file open for writing. ``complete`` (the store stage's
    ``complete_until``) says up to which event time the file holds every input's spend: a
    period is sent once that is past its end plus ``lateness_s`` (its last windows final),
    so a worker back from downtime does not send last week's digest from the part of its
    backlog counted so far; while it cannot tell yet (None: the store is starting), the
    schedule asks again every ``UNKNOWN_S``.
    """

    def __init__(
        self,
        config: Config,
        store: Path,
        state_dir: Path,
        file_lock: asyncio.Lock | None = None,
        complete: Callable[[], Awaitable[float | None]] | None = None,
        lateness_s: float = 0.0,
    ) -> None:
        self.config = config
        self.store = store
        self.dir = Path(state_dir) / "digest"
        self.file_lock = file_lock or asyncio.Lock()
        self.complete = complete
        self.lateness_s = lateness_s
        #: The period last said to be waiting for the store (logged once).
        self._waiting: str | None = None
        #: The last tick found the store unable to tell how far it has counted (starting).
        self._unknown = False
        self.sent: set[str] = set()
        self._retry_at = 0.0
        self._stopping = asyncio.Event()
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.sent = set(orjson.loads((self.dir / "sent.json").read_bytes()))
        self.channel_ids = load_channel_ids(channel_ids_file(state_dir))

    def reconfigure(self, config: Config) -> list[str]:
        self.config = config
        self._retry_at = 0.0
        return []

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.tick(time.time())
            with contextlib.suppress(TimeoutError):
                wait_s = UNKNOWN_S if self._unknown else CHECK_S
                await asyncio.wait_for(self._stopping.wait(), wait_s)

    async def tick(self, now: float) -> list[DigestResult]:
        """Send each due digest not sent yet (``unsent_periods``), oldest first, recording
        each; what went out (or was found in the channel already). Slack failing ends the
        round (the rest wait, in order) and the next try is ``RETRY_S`` later; a period
        that cannot be reported is tried again then, the later ones go out meanwhile."""
        digest, slack = self.config.digest, self.config.slack
        if slack.token is None or now < self._retry_at:
            return []
        results: list[DigestResult] = []
        through: float | None = None
        self._unknown = False
        for label, _ in unsent_periods(digest.schedule, now, digest.hour_utc, digest.by, self.sent):
            if self._stopping.is_set():
                break
            if self.complete is not None:
                if through is None:
                    through = await self.complete()
                if through is None:
                    # The store is starting: no answer is not an answer of "behind".
                    self._unknown = True
                    break
                if through < parse_period(label).end + self.lateness_s:
                    if self._waiting != label:
                        self._waiting = label
                        log.info(
                            "digest %s waits for the store to catch up (spend counted to %s)",
                            label,
                            _event_time(through),
                        )
                    break  # oldest first: the later ones wait too
            try:
                result = await self._send(label, now)
            except ReportError as exc:
                log.warning("digest %s not sent: %s", label, exc)
                self._retry_at = now + RETRY_S
                continue
            except DigestError as exc:
                log.warning("digest %s: %s; retrying in %.0f s", label, exc, RETRY_S)
                self._retry_at = now + RETRY_S
                break
            self.sent.add(f"{label}/{digest.by}")
            write_atomic(self.dir / "sent.json", orjson.dumps(sorted(self.sent)))
            log.info(
                "digest %s sent to %s (ts %s)", label, digest.channel or slack.channel, result.ts
            )
            results.append(result)
        return results

    async def _send(self, label: str, now: float) -> DigestResult:
        """Report the period and post it. Raises ``ReportError`` or ``DigestError``."""
        digest, slack = self.config.digest, self.config.slack
        self.dir.mkdir(parents=True, exist_ok=True)
        chart = self.dir / f"spend-{label}.png"
        prices = PriceTable.default().with_overrides(self.config.pricing.models)
        period = parse_period(label)
        async with self.file_lock:
            report, _ = await asyncio.to_thread(
                report_from_store,
                self.store,
                period,
                digest.by,
                now=now,
                prices=prices,
                chart=chart,
            )
        try:
            return await send_digest(
                slack,
                report,
                chart,
                channel=digest.channel,
                # Any post of the whole period counts, one by hand included (the key is
                # the same): `spendbrake digest` run before the hour is not repeated.
                since=period.end,
                channel_ids=self.channel_ids,
            )
        finally:
            save_channel_ids(channel_ids_file(self.dir.parent), self.channel_ids)
