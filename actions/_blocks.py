"""Block Kit for alerts: what an on-call reads at 3 a.m. Pure: dicts in, dicts out.

A message answers, in order: what happened and how bad, where (scope, with api keys
masked), how much against what was expected, why the detector thinks so, what was done,
and how to undo it.

Every value that can come from event data or an alert record (scope values, keys, model
names, reasons, ids) is escaped for mrkdwn (``schemas.mrkdwn``) where it is placed, so
none can mention, link or reorder text; the blocks' own markup is added around it.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from spendbrake.schemas import (
    Alert,
    InvalidEvent,
    mrkdwn,
    mrkdwn_code,
    mrkdwn_text,
    parse_ts,
    visible,
)

from ._policy import NOTICES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._outbox import ResumeAnswer

__all__ = [
    "HISTORY_KIND",
    "MAX_BUTTON_TARGETS",
    "RESUME_ACTION_ID",
    "SNOOZE_ACTION_ID",
    "UNSNOOZE_ACTION_ID",
    "mask",
    "mention",
    "render_alert",
    "render_followup",
    "render_parent_update",
    "render_resume_answer",
    "render_snoozed",
    "scope_text",
]

#: ``action_id`` of the buttons; ``_interactive`` dispatches on them.
RESUME_ACTION_ID = "spendbrake_resume"
SNOOZE_ACTION_ID = "spendbrake_snooze"
UNSNOOZE_ACTION_ID = "spendbrake_unsnooze"
#: The kind of the act stage's own summary of alerts held as history (``_history``).
HISTORY_KIND = "history"
_TEXT_MAX = 2900  # section text limit is 3000
#: A message about an alert caught longer ago than this is marked as history (the default
#: of ``slack.history_after_s``).
HISTORY_S = 3600.0
_VALUE_MAX = 2000  # button value limit
#: Keys a "Resume" button lists (the click parser's bound too); past it, or past the value
#: limit, the button says ``all`` and the click resumes every key paused for the incident.
MAX_BUTTON_TARGETS = 100
_SEVERITY = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
#: A Slack user id (U…, or W… in Enterprise Grid): only such an id becomes a mention.
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,20}")


def mask(key: str | None) -> str:
    """A key as people read it: names (aliases) in full, long tokens (hashes) shortened.

    Events never carry a raw key (the SDK and adapters redact them), so this is about
    readability, not secrecy.
    """
    if key is None:
        return "-"
    return key if len(key) <= 32 else f"{key[:6]}…{key[-4:]}"


def mention(user: str) -> str:
    """``<@U123>`` for a Slack user id; anything else (a name, a terminal user) as text."""
    return f"<@{user}>" if _USER_ID.fullmatch(user) else mrkdwn(user)


def requester(source: str) -> str | None:
    """Who asked for an effect, for Slack: a clicker's mention, a terminal user's name;
    None for SpendBrake's own (``policy``, a budget's)."""
    kind, _, who = source.partition(":")
    if kind == "slack" and who:
        return mention(who)
    if kind == "cli" and who:
        return f"{mrkdwn(who)} (`spendbrake resume`)"
    return None


def _count(n: int) -> str:
    return f"{n} key{'s' if n != 1 else ''}"


def _keys(keys: list[str], most: int = 10) -> str:
    shown = ", ".join(mrkdwn(mask(k)) for k in keys[:most])
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return f"{_count(len(keys))} ({shown}{more})"


def render_resume_answer(
    answer: ResumeAnswer, user: str, *, known: bool, gateway_problem: str | None = None
) -> str:
    """What the clicker of "Resume" reads (ephemeral): what was queued, what was not and
    why, and whether the gateway is failing right now. ``known``: the stage still knows the
    incident (after ``REMEMBER_S`` only its pauses are kept)."""
    parts = []
    if answer.queued:
        parts.append(
            f"Resuming {_keys(answer.queued)}, requested by {mention(user)}; the incident's "
            "thread says when the gateway has done it."
        )
    if answer.underway:
        parts.append(f"Already being resumed (an earlier click): {_keys(answer.underway)}.")
    if gateway_problem and (answer.queued or answer.underway):
        parts.append(
            f"The gateway is failing right now ({mrkdwn(gateway_problem)}): the resume is kept "
            "and retried until it answers."
        )
    if answer.done:
        parts.append(f"Already resumed: {_keys(answer.done)}.")
    if answer.refused:
        why = (
            "SpendBrake did not pause it for this incident"
            if known
            else "SpendBrake no longer knows this incident or its pauses"
        )
        parts.append(
            f"Not resumed: {_keys(answer.refused)}: {why}. An operator can run "
            "`spendbrake resume KEY` at a terminal."
        )
    return " ".join(parts) or "Nothing to resume."


def scope_text(scope: dict[str, Any]) -> str:
    """The scope as plain text; escaped by the caller for where it goes."""
    if not scope:
        return "all spend"
    return " · ".join(
        f"{name}={mask(value) if name == 'api_key' else value}" for name, value in scope.items()
    )


def _title(alert: Alert) -> str:
    """The headline, escaped for mrkdwn (a budget name is the operator's, but an alert
    record on the topic is only as trusted as whoever can write there)."""
    kind = alert.kind
    budget = mrkdwn(alert.budget)
    if kind == "budget" and alert.action == "resume":
        # A resume has no threshold: "at 0%" read as a budget with nothing spent. A reload
        # lifts a stop mid-period (``BudgetBook._lifted``): no new period there.
        if "/lifted/" in alert.id:
            return f"Budget {budget}: hard stop lifted by a config reload"
        return f"Budget {budget}: new period, its hard stop lifted"
    if kind == "budget":
        threshold = alert.threshold or 0
        return f"Budget {budget} at {threshold:.0%}"
    return {
        "anomaly": "Runaway spend",
        "projection": f"Budget {budget}: projected overrun",
        "burn_rate": f"Budget {budget}: burning fast",
        "wow": "Week-over-week rise",
        "cost_per_call": "Cost per call up",
        "unpriced_model": "Unpriced model",
        "series_cap": "Too many series",
        HISTORY_KIND: "Caught up on history",
    }.get(kind, mrkdwn(kind))


def _seen_s(alert: Alert) -> float | None:
    """Seconds of the alert's window seen when it was caught; None: the whole window (or
    its times are not known)."""
    try:
        start, end = parse_ts(alert.window_start), parse_ts(alert.window_end)
        caught = parse_ts(alert.detected_at)
    except (InvalidEvent, TypeError, ValueError):
        return None
    return caught - start if start < caught < end else None


def _against(alert: Alert, observed: float, expected: float) -> str:
    """What ``observed`` is measured against, in the words of the alert's kind.

    ``expected_usd`` means something else for each: a budget's threshold amount, a
    projection's total, a burn rate's even pace, an anomaly's whole usual hour. Shown the
    same way, a projection read "$372 vs $8,906 expected (0.0x)", and a loop caught five
    minutes into an hour "$7.80 vs $9.80 expected (0.8x)": a page that reads as no problem.
    """
    if alert.kind == "projection":
        return f" so far, projected ${expected:,.2f} by the period's end"
    if alert.kind == "budget" and alert.threshold:
        amount = expected / alert.threshold
        return f" of the ${amount:,.2f} budget ({observed / amount:.0%})"
    if alert.kind == "burn_rate":
        return f" vs ${expected:,.2f} at an even pace ({observed / expected:.1f}x)"
    seen_s = _seen_s(alert) if alert.kind == "anomaly" else None
    if seen_s is not None:
        # Caught early in its window: the spend so far against that share of the usual.
        window_s = parse_ts(alert.window_end) - parse_ts(alert.window_start)
        by_then = expected * seen_s / window_s
        return (
            f" in its first {max(1, round(seen_s / 60))} min, {observed / by_then:.1f}x the "
            f"${by_then:,.2f} expected by then (${expected:,.2f} in a usual window)"
        )
    return f" vs ${expected:,.2f} expected ({observed / expected:.1f}x)"


def _money(alert: Alert, since: str | None = None) -> str:
    """How much against what, in which window, and since when it was caught (``since``:
    the incident's first detection; an escalation's own time otherwise)."""
    parts = []
    if alert.observed_usd is not None and alert.kind not in NOTICES:
        # A notice carries no amount ("$0.00" read as nothing spent on an unpriced model).
        observed, expected = alert.observed_usd, alert.expected_usd
        parts.append(
            f"*${observed:,.2f}*" + (_against(alert, observed, expected) if expected else "")
        )
    start, end = alert.window_start, alert.window_end
    if start and end:  # a reload's lift has no window: "– UTC" said nothing
        # A window past its first day (a day's notice, a month's budget) ends on another
        # date: "2026-09-01T00:00–00:00" read as no time at all.
        until = end[11:16] if end[:10] == start[:10] else end[:16]
        parts.append(f"{mrkdwn(start[:16])}–{mrkdwn(until)} UTC")
    caught = since or alert.detected_at
    if caught:
        parts.append(f"caught {mrkdwn(caught[:16])} UTC")
    return "  ·  ".join(parts)


def age_label(age_s: float) -> str:
    """An age as people say it: hours under two days ("19 h"), days past ("3 d")."""
    hours = age_s / 3600
    return f"{hours:,.0f} h" if hours < 48 else f"{hours / 24:,.0f} d"


def _mark_history(
    alert: Alert,
    posted_at: float | None,
    history_after_s: float,
    text: str,
    blocks: list[dict[str, Any]],
) -> str:
    """Mark a message about an alert caught more than ``history_after_s`` before it is posted:
    a new deployment reading the topic's retention, or a stage back from an outage, posted
    weeks of alerts in minutes, each reading as happening now. The fallback text (what a
    phone's notification shows) starts with ``[history, 19 d old]`` and a line under the
    headline says when it was caught; returns the text."""
    if posted_at is None or not alert.detected_at:
        return text
    try:
        age_s = posted_at - parse_ts(alert.detected_at)
    except InvalidEvent:
        return text
    if age_s < history_after_s:
        return text
    age = age_label(age_s)
    blocks.insert(
        1,
        _context(
            f":rewind: *From history*: caught {mrkdwn(alert.detected_at[:16])} UTC, {age} "
            "before this message (SpendBrake catching up on a backlog); it may be long over"
        ),
    )
    return f"[history, {age} old] {text}"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn_text(text, _TEXT_MAX)}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn_text(text, _TEXT_MAX)]}


def _undo(alert: Alert, buttons: bool) -> str | None:
    """The command that resumes the paused keys, safe to paste into a shell.

    Each key is shell-quoted (a key is caller text: ``x; rm -rf ~`` stays one argument),
    ``--`` comes first when a key starts with ``-`` (not an option), and the line is
    escaped for the code span it is shown in. Only whole keys are listed: past what a
    block holds, the line says how many it leaves out (a command cut mid-key would resume
    a key of that prefix, or none, and leave the rest paused). So is a key the code span
    cannot show as it is (a backtick, a hidden character): a look-alike or a code in its
    place would make the pasted command name another key.
    """
    if alert.action != "pause" or not alert.targets:
        return None
    targets = [t for t in alert.targets if "`" not in t and visible(t) == t]
    command = "spendbrake resume" + (" --" if any(t.startswith("-") for t in targets) else "")
    shown = 0
    for target in targets:
        longer = f"{command} {shlex.quote(target)}"
        if len(mrkdwn_code(longer)) > _TEXT_MAX - 200 and shown:
            break
        command, shown = longer, shown + 1
    left = len(alert.targets) - shown
    if not shown:
        return f"To undo: resume the {left} key{'s' if left != 1 else ''} paused" + (
            " with the Resume button (names a command cannot hold)" if buttons else ""
        )
    text = "To undo: `" + mrkdwn_code(command) + "`"
    if left:
        text += f" and {left} more key{'s' if left != 1 else ''}, not shown" + (
            ": the Resume button resumes them all" if buttons else ""
        )
    return text


def render_alert(
    alert: Alert,
    *,
    outcome: str | None = None,
    runbook_url: str | None = None,
    buttons: bool = True,
    since: str | None = None,
    resumable: bool = True,
    posted_at: float | None = None,
    history_after_s: float = HISTORY_S,
) -> tuple[str, list[dict[str, Any]]]:
    """The parent message of an incident: (fallback text, blocks). ``buttons``: the
    "Resume" and "Snooze" buttons of a pause are served (``slack.interactive_port`` and
    ``slack.signing_secret``); a button nothing answers shows the clicker an error.
    ``since``: when the incident was first caught (its parent, updated for an
    escalation, still says so). ``resumable``: a key it paused is still paused; once all
    are resumed, the undo line and the Resume button go (Snooze stays). ``posted_at``
    (epoch seconds, the wall clock; None: not known): an alert caught more than
    ``history_after_s`` before it is marked as history."""
    icon = _SEVERITY.get(alert.severity, "")
    title = _title(alert)
    # The history summary is about many scopes, not "all spend".
    scope = scope_text(alert.scope) if alert.kind != HISTORY_KIND else "alerts read late"
    text = f"{icon} {title}: {mrkdwn(scope)}"
    blocks: list[dict[str, Any]] = [
        _section(f"{icon} *{title}* — `{mrkdwn_code(scope)}`"),
        _section(_money(alert, since)),
        _section(f"*Why:* {mrkdwn(alert.reason)}"),
    ]
    text = _mark_history(alert, posted_at, history_after_s, text, blocks)
    also = alert.also
    if also:
        blocks.append(_context("Also seen in: " + mrkdwn("; ".join(scope_text(s) for s in also))))
    if outcome:
        blocks.append(_section(f"*Done:* {mrkdwn(outcome)}"))
    undo = _undo(alert, buttons) if resumable else None
    if undo:
        blocks.append(_context(undo))
    if runbook_url:
        kind = quote(alert.kind, safe="")
        url = runbook_url.format(kind=kind, scope=quote(scope, safe=""))
        blocks.append(_context(f"<{url}|Runbook>"))
    blocks.append(
        _context(
            f"incident `{mrkdwn_code(alert.id)}` · {mrkdwn(alert.detector)} · "
            f"score {alert.score:.2f}"
        )
    )
    if buttons and alert.action == "pause" and alert.targets:
        blocks.append(_buttons(alert, resumable))
    return text, blocks


def _buttons(alert: Alert, resumable: bool = True) -> dict[str, Any]:
    """Each button's value within Slack's 2,000 characters and the click parser's bounds:
    too many keys to list resume ``all`` the incident paused (a value cut to fit resumed
    some and not the others; over 100 keys, the click was refused); a scope too long for
    the snooze's value is the incident's (``scope: null``)."""
    targets = list(alert.targets)
    resume = orjson.dumps({"alert": alert.id, "targets": targets})
    if len(targets) > MAX_BUTTON_TARGETS or len(resume) > _VALUE_MAX:
        resume = orjson.dumps({"alert": alert.id, "all": True})
    snooze = orjson.dumps({"alert": alert.id, "scope": alert.scope})
    if len(snooze) > _VALUE_MAX:  # five 512-character scope values (Slack refused the post)
        snooze = orjson.dumps({"alert": alert.id, "scope": None})
    label = "Resume key" if len(targets) == 1 else f"Resume {len(targets)} keys"
    # Resuming lets the spend run again: a stray tap on a phone at 3 a.m. asks first.
    confirm = {
        "title": {"type": "plain_text", "text": "Resume spend?"},
        "text": {
            "type": "plain_text",
            "text": (
                f"Unblock the {_count(len(targets))} SpendBrake paused for this incident? "
                "Their calls, and their spend, start again."
            ),
        },
        "confirm": {"type": "plain_text", "text": "Resume"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    resume_button = {
        "type": "button",
        "action_id": RESUME_ACTION_ID,
        "style": "primary",
        "text": {"type": "plain_text", "text": label},
        "value": resume.decode(),
        "confirm": confirm,
    }
    snooze_button = {
        "type": "button",
        "action_id": SNOOZE_ACTION_ID,
        "text": {"type": "plain_text", "text": "Snooze 1 h"},
        "value": snooze.decode(),
    }
    # Everything resumed: a Resume button left there only answers "nothing to resume".
    elements = [resume_button, snooze_button] if resumable else [snooze_button]
    return {"type": "actions", "elements": elements}


def render_snoozed(
    text: str, alert_id: str, scope: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """The channel's notice of a snooze, with the button that lifts it early: one on-call's
    snooze must not keep the others blind for the hour once the scope matters again. The
    button's value is the snooze's (a scope too long for it is the incident's)."""
    value = orjson.dumps({"alert": alert_id, "scope": dict(scope)})
    if len(value) > _VALUE_MAX:
        value = orjson.dumps({"alert": alert_id, "scope": None})
    button = {
        "type": "button",
        "action_id": UNSNOOZE_ACTION_ID,
        "text": {"type": "plain_text", "text": "Undo snooze"},
        "value": value.decode(),
    }
    return [_section(text), {"type": "actions", "elements": [button]}]


def render_followup(
    alert: Alert,
    outcome: str,
    *,
    by: str | None = None,
    resumable: bool = True,
    posted_at: float | None = None,
    history_after_s: float = HISTORY_S,
) -> tuple[str, list[dict[str, Any]]]:
    """A reply in the incident's thread: an escalation, or what the gateway did; ``by``
    (mrkdwn, from :func:`requester`) names who asked for it (a resume's clicker);
    ``resumable``, ``posted_at`` and ``history_after_s`` as for :func:`render_alert` (the
    reply saying its keys were resumed shows no undo line: it would say to resume them)."""
    icon = _SEVERITY.get(alert.severity, "")
    scope = mrkdwn_code(scope_text(alert.scope))
    head = f"{icon} #{mrkdwn(alert.seq)} {_title(alert)} — `{scope}`"
    text = f"{head}: {mrkdwn(outcome)}"
    blocks = [_section(head), _section(_money(alert)), _section(f"*Done:* {mrkdwn(outcome)}")]
    text = _mark_history(alert, posted_at, history_after_s, text, blocks)
    if by:
        blocks.append(_context(f"Requested by {by}"))
    undo = _undo(alert, buttons=False) if resumable else None
    if undo:
        blocks.append(_context(undo))
    return text, blocks


def render_parent_update(
    alert: Alert,
    outcome: str,
    history: list[str],
    *,
    runbook_url: str | None = None,
    buttons: bool = True,
    since: str | None = None,
    resumable: bool = True,
    posted_at: float | None = None,
    history_after_s: float = HISTORY_S,
) -> tuple[str, list[dict[str, Any]]]:
    """The parent message rewritten with the incident's latest state (``chat.update``):
    everything the first post had (its runbook link was dropped at the first update)."""
    text, blocks = render_alert(
        alert,
        outcome=outcome,
        runbook_url=runbook_url,
        buttons=buttons,
        since=since,
        resumable=resumable,
        posted_at=posted_at,
        history_after_s=history_after_s,
    )
    if len(history) > 1:
        blocks.insert(-1, _context("History: " + mrkdwn(" → ".join(history[-5:]))))
    return text, blocks[:50]
