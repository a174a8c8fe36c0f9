"""Alerts read as history, held for one summary message (``slack.history: summary``).

A new deployment reading the topic's retention, or an act stage back from a long outage,
reads days of alerts in minutes. Posted one by one (``slack.history: post``, each marked
``[history, N d old]``) they were 50-60 messages at once, each paging a phone about
something long over. Held instead, each is audited as skipped and counted here; once the
stage has read no history for a while, or held it for an hour, one message says what was
caught, when, where, and which pauses were not performed. The alerts themselves stay on
the alerts topic and in the store (``spendbrake report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spendbrake.schemas import Alert

from ._blocks import HISTORY_KIND, mask, scope_text

__all__ = ["HISTORY_HELD", "HISTORY_KIND", "HeldHistory"]

#: The audit detail of a message held for the summary.
HISTORY_HELD = "history: held for one summary message (slack.history: summary)"
#: Scopes named one by one in the summary; the rest are counted.
_SCOPES_SHOWN = 8
#: Scopes kept to count distinct ones (past it, counted as more).
_SCOPES_KEPT = 500
#: Keys listed as not paused; the rest are counted.
_KEYS_SHOWN = 10
_KEYS_KEPT = 500


@dataclass(slots=True)
class HeldHistory:
    """What the held alerts were: counts by kind, their detection times, their scopes
    (distinct, in order), and the keys whose pauses were skipped or refused."""

    #: Wall-clock epoch seconds of the first and the latest alert held.
    first_read: float
    last_read: float
    #: Event-time range of their detections (RFC 3339 text, as on the alerts).
    first_caught: str = ""
    last_caught: str = ""
    kinds: dict[str, int] = field(default_factory=dict)
    follow_ups: int = 0
    scopes: list[str] = field(default_factory=list)
    more_scopes: int = 0
    not_paused: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def add(
        self,
        alert: Alert,
        follow_up: bool,
        not_paused: list[str],
        refused: list[str],
        now: float,
    ) -> None:
        self.last_read = now
        caught = alert.detected_at
        if caught and (not self.first_caught or caught < self.first_caught):
            self.first_caught = caught
        if caught and caught > self.last_caught:
            self.last_caught = caught
        if follow_up:
            self.follow_ups += 1
        else:
            self.kinds[alert.kind] = self.kinds.get(alert.kind, 0) + 1
        scope = scope_text(alert.scope)
        if scope not in self.scopes:
            if len(self.scopes) < _SCOPES_KEPT:
                self.scopes.append(scope)
            else:
                self.more_scopes += 1
        for keys, into in ((not_paused, self.not_paused), (refused, self.refused)):
            into.extend(k for k in keys if k not in into and len(into) < _KEYS_KEPT)

    def alert(self) -> Alert:
        """The summary as an alert record of its own: what the Slack lane posts, once."""
        alerts = sum(self.kinds.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items()))
        scopes = len(self.scopes) + self.more_scopes
        named = "; ".join(self.scopes[:_SCOPES_SHOWN])
        if scopes > _SCOPES_SHOWN:
            named += f"; and {scopes - _SCOPES_SHOWN} more"
        follow = f" and {self.follow_ups} follow-up(s)" if self.follow_ups else ""
        reason = (
            f"SpendBrake read {alerts} alert(s){follow} caught longer than "
            "slack.history_after_s before it read them (a new deployment reading the topic's "
            f"history, or the act stage back from an outage): one message instead of "
            f"{alerts + self.follow_ups}. By kind: {kinds}. Scopes ({scopes}): {named}."
        )
        if self.not_paused:
            not_paused = _keys(self.not_paused)
            reason += f" NOT paused as history (pause by hand if still running): {not_paused}."
        if self.refused:
            reason += f" Pauses refused by the keys config: {_keys(self.refused)}."
        reason += (
            " Each is on the alerts topic and audited on the actions topic; "
            "`spendbrake report` lists them by period."
        )
        return Alert(
            kind=HISTORY_KIND,
            detector="act stage",
            window_start=self.first_caught,
            window_end=self.last_caught,
            severity="warning",
            id=f"history/{self.first_read:.3f}",
            seq=0,
            reason=reason,
        )


def _keys(keys: list[str]) -> str:
    shown = ", ".join(map(mask, keys[:_KEYS_SHOWN]))
    return shown + (f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else "")
