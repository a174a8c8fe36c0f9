"""Policies turn an alert into an action on keys: pure, so live, replay and tests agree.

The rule that matters most is enforced here, whatever the config says: a key whose
workload is ``critical`` is never a pause target. Policies are matched per key (first
match wins, on the key's attributes merged over the alert's scope), because one team
scope can hold a batch key that may be paused next to a critical one that may not.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas import Alert, KeyInfo, PolicyConfig

__all__ = ["apply_policies", "pausable"]


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
    for the keys the engine listed; other budget alerts stay alerts; an anomaly pauses the
    keys whose first matching policy says so. No key to act on means a plain alert.
    """
    if alert.action == "resume":
        alert.targets = sorted({k.api_key for k in alert.keys})
        return alert
    if alert.kind in ("budget", "projection") and alert.action == "alert":
        return alert  # a threshold crossed is news, not a reason to stop anything
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
