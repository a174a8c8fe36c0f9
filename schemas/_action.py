"""The action record: what the act stage and ``spendbrake resume`` write to ``spend.actions``.

One JSON object per effect's latest state (a Slack post, a gateway block, a refusal, a
snooze), keyed by ``id``: a later state of the same effect overwrites. The act stage keeps
records not yet acknowledged by the broker in its outbox file, times as epoch seconds;
``to_wire`` renders them RFC 3339 for the topic.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from ._errors import InvalidEvent
from ._time import format_ts, parse_ts

__all__ = ["ActionRecord", "decode_action"]


class ActionRecord(msgspec.Struct, kw_only=True):
    """One effect's latest state: what (``action``), why (the alert, its kind, scope and
    reason), on what (``target``), who asked (``source``), how it went, and when."""

    id: str
    #: post, reply, update, block, unblock, snooze, unsnooze, interactive, accept.
    action: str
    lane: str | None = None
    #: The alert's ``id#seq`` (None: no alert asked for it, as a snooze).
    alert: str | None = None
    incident: str | None = None
    kind: str | None = None
    scope: dict[str, str | None] | None = None
    target: str | None = None
    reason: str | None = None
    source: str = "policy"
    #: ok, failed, retrying, dry_run, skipped, refused, rejected.
    result: str
    detail: str
    attempts: int = 0
    #: Epoch seconds of the first attempt (None: never attempted).
    requested_at: float | None = None
    #: Epoch seconds of this state.
    at: float

    def to_wire(self) -> dict[str, Any]:
        """The record as the actions topic carries it: times in RFC 3339."""
        return {
            "id": self.id,
            "action": self.action,
            "lane": self.lane,
            "alert": self.alert,
            "incident": self.incident,
            "kind": self.kind,
            "scope": self.scope,
            "target": self.target,
            "reason": self.reason,
            "source": self.source,
            "result": self.result,
            "detail": self.detail,
            "attempts": self.attempts,
            "requested_at": None if self.requested_at is None else format_ts(self.requested_at),
            "at": format_ts(self.at),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_wire())


def decode_action(value: bytes) -> ActionRecord:
    """An actions-topic value as a typed record; ``ValueError`` naming the field if it is
    not one (times must be RFC 3339, as ``to_wire`` writes them)."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not an action record: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"not an action record: expected an object, got {type(data).__name__}")
    for name in ("requested_at", "at"):
        if isinstance(data.get(name), str):
            try:
                data[name] = parse_ts(data[name])
            except InvalidEvent as exc:  # its field is the event's "ts"
                raise ValueError(f"not an action record: {name}: {exc.reason}") from None
    try:
        return msgspec.convert(data, ActionRecord)
    except msgspec.ValidationError as exc:  # "... - at `$.attempts`"
        raise ValueError(f"not an action record: {exc}") from None
