"""Block Kit for alerts: what an on-call reads at 3 a.m. Pure: dicts in, dicts out.

A message answers, in order: what happened and how bad, where (scope, with api keys
masked), how much against what was expected, why the detector thinks so, what was done,
and how to undo it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

__all__ = [
    "RESUME_ACTION_ID",
    "SNOOZE_ACTION_ID",
    "mask",
    "render_alert",
    "render_followup",
    "render_parent_update",
]

#: ``action_id`` of the buttons; ``_interactive`` dispatches on them.
RESUME_ACTION_ID = "spendbrake_resume"
SNOOZE_ACTION_ID = "spendbrake_snooze"
_TEXT_MAX = 2900  # section text limit is 3000
_VALUE_MAX = 2000  # button value limit
_SEVERITY = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def mask(key: str | None) -> str:
    """A key as people read it: names (aliases) in full, long tokens (hashes) shortened.

    Events never carry a raw key (the SDK and adapters redact them), so this is about
    readability, not secrecy.
    """
    if key is None:
        return "-"
    return key if len(key) <= 32 else f"{key[:6]}…{key[-4:]}"


def _scope(scope: dict[str, Any]) -> str:
    if not scope:
        return "all spend"
    return " · ".join(
        f"{name}={mask(value) if name == 'api_key' else value}" for name, value in scope.items()
    )


def _title(alert: dict[str, Any]) -> str:
    kind = alert.get("kind")
    if kind == "budget":
        threshold = alert.get("threshold") or 0
        return f"Budget {alert.get('budget')} at {threshold:.0%}"
    return {
        "anomaly": "Runaway spend",
        "projection": f"Budget {alert.get('budget')}: projected overrun",
        "burn_rate": f"Budget {alert.get('budget')}: burning fast",
        "wow": "Week-over-week rise",
        "cost_per_call": "Cost per call up",
        "unpriced_model": "Unpriced model",
        "series_cap": "Too many series",
    }.get(str(kind), str(kind))


def _money(alert: dict[str, Any]) -> str:
    observed = alert.get("observed_usd") or 0.0
    expected = alert.get("expected_usd")
    text = f"*${observed:,.2f}*"
    if expected:
        text += f" vs ${expected:,.2f} expected ({observed / expected:.1f}x)"
    start, end = alert.get("window_start", ""), alert.get("window_end", "")
    return text + f"  ·  {start[:16]}–{end[11:16]} UTC"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_TEXT_MAX]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:_TEXT_MAX]}]}


def _undo(alert: dict[str, Any]) -> str | None:
    targets = alert.get("targets") or []
    if alert.get("action") != "pause" or not targets:
        return None
    return "To undo: `spendbrake resume " + " ".join(targets) + "`"


def render_alert(
    alert: dict[str, Any], *, outcome: str | None = None, runbook_url: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The parent message of an incident: (fallback text, blocks)."""
    icon = _SEVERITY.get(str(alert.get("severity")), "")
    title = _title(alert)
    scope = _scope(alert.get("scope") or {})
    text = f"{icon} {title}: {scope}"
    blocks: list[dict[str, Any]] = [
        _section(f"{icon} *{title}* — `{scope}`"),
        _section(_money(alert)),
        _section(f"*Why:* {alert.get('reason', '')}"),
    ]
    also = alert.get("also") or []
    if also:
        blocks.append(_context("Also seen in: " + "; ".join(_scope(s) for s in also)))
    if outcome:
        blocks.append(_section(f"*Done:* {outcome}"))
    undo = _undo(alert)
    if undo:
        blocks.append(_context(undo))
    if runbook_url:
        url = runbook_url.format(kind=alert.get("kind", ""), scope=quote(scope))
        blocks.append(_context(f"<{url}|Runbook>"))
    blocks.append(
        _context(
            f"incident `{alert.get('id')}` · {alert.get('detector')} · "
            f"score {alert.get('score', 0):.2f}"
        )
    )
    if alert.get("action") == "pause" and alert.get("targets"):
        blocks.append(_buttons(alert))
    return text, blocks


def _buttons(alert: dict[str, Any]) -> dict[str, Any]:
    targets = list(alert.get("targets") or [])
    resume = orjson.dumps({"alert": alert.get("id"), "targets": targets})
    while len(resume) > _VALUE_MAX and targets:
        targets.pop()
        resume = orjson.dumps({"alert": alert.get("id"), "targets": targets})
    # A scope is a handful of short fields: far below the value limit.
    snooze = orjson.dumps({"alert": alert.get("id"), "scope": alert.get("scope") or {}})
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": RESUME_ACTION_ID,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Resume key"},
                "value": resume.decode(),
            },
            {
                "type": "button",
                "action_id": SNOOZE_ACTION_ID,
                "text": {"type": "plain_text", "text": "Snooze 1 h"},
                "value": snooze.decode(),
            },
        ],
    }


def render_followup(alert: dict[str, Any], outcome: str) -> tuple[str, list[dict[str, Any]]]:
    """A reply in the incident's thread: an escalation, or what the gateway did."""
    icon = _SEVERITY.get(str(alert.get("severity")), "")
    head = f"{icon} #{alert.get('seq', 0)} {_title(alert)} — `{_scope(alert.get('scope') or {})}`"
    text = f"{head}: {outcome}"
    blocks = [_section(head), _section(_money(alert)), _section(f"*Done:* {outcome}")]
    undo = _undo(alert)
    if undo:
        blocks.append(_context(undo))
    return text, blocks


def render_parent_update(
    alert: dict[str, Any], outcome: str, history: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """The parent message rewritten with the incident's latest state (``chat.update``)."""
    text, blocks = render_alert(alert, outcome=outcome)
    if len(history) > 1:
        blocks.insert(-1, _context("History: " + " → ".join(history[-5:])))
    return text, blocks[:50]
