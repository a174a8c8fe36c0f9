"""Policies turn an alert into an action on keys: pure, so live, replay and tests agree.

The rule that matters most is enforced here, whatever the config says: a key whose
workload is ``critical`` is never a pause target. Policies are matched per key (first
match wins, on the key's attributes merged over the alert's scope), because one team
scope can hold a batch key that may be paused next to a critical one that may not.
"""

from __future__ import annotations

from collections.abc import Sequence

from spendbrake.schemas import Alert, KeyInfo, PolicyConfig

__all__ = ["PAUSE_KINDS", "apply_policies", "pausable"]

#: Alert kinds a ``pause`` policy acts on: evidence of a runaway, not of a trend. A 30 %
#: week-over-week rise or a dearer prompt is for people to look at, not to stop work for.
PAUSE_KINDS = ("anomaly", "burn_rate")


def pausable(key: KeyInfo) -> bool:
    """Critical keys are alerted, never stopped."""
    return key.workload != "critical"


def _first_match(attrs: dict[str, str | None], policies: Sequence[PolicyConfig]) -> str:
    for policy in policies:
        if all(attrs.get(name) == value for name, value in policy.match.items()):
            return policy.action
    return "alert"


def apply_policies(alert: Alert, policies: Sequence[PolicyConfig]) -> Alert:
    """Set ``action`` and ``targets`` from the policies (or keep a budget's pause/resume).

    A budget hard stop pauses every non-critical key in scope; a resume undoes the pause
    for the keys the engine listed; an anomaly or a burn-rate alert pauses the keys whose
    first matching policy says so; other kinds stay alerts. No key to act on means a plain alert.
    """
    if alert.action == "resume":
        alert.targets = sorted({k.api_key for k in alert.keys})
        return alert
    if alert.action == "alert" and alert.kind not in PAUSE_KINDS:
        return alert  # a threshold crossed or a weekly rise is news, not a runaway to stop
    if alert.action == "pause":
        targets = {k.api_key for k in alert.keys if pausable(k)}
    else:
        targets = {
            k.api_key
            for k in alert.keys
            if pausable(k) and _first_match({**alert.scope, **k.attrs()}, policies) == "pause"
        }
    alert.targets = sorted(targets)
    alert.action = "pause" if targets else "alert"
    return alert
