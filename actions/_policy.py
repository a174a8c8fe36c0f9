"""Policies turn an alert into an action on keys: pure, so live, replay and tests agree.

Who may be paused is the operator's decision: the ``keys`` section of the config classes
each key (``schemas.KeysConfig``), and only a key it lets be paused is ever a pause target.
A key no rule names, a ``critical`` one, one marked ``pausable: false`` and LiteLLM's master
key are alerted on, whatever a policy or the events say. The events' own ``workload`` is
the caller's word and stays an attribution tag. Policies are matched per key (first match
wins, on the key's attributes merged over the alert's scope, with ``workload`` the key's
class from the config), because one team scope can hold a batch key that may be paused
next to a critical one that may not.

The action stage checks every pause again against the config it loaded itself
(``screen_pauses``): an alert record names its targets, but does not decide them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import msgspec

from spendbrake.schemas import (
    Alert,
    Config,
    KeyClass,
    KeyInfo,
    KeysConfig,
    PolicyConfig,
    format_ts,
    parse_ts,
)

__all__ = ["PAUSE_KINDS", "apply_policies", "decide", "pausable", "refusal", "screen_pauses"]

#: Alert kinds a ``pause`` policy acts on: evidence of a runaway, not of a trend. A 30 %
#: week-over-week rise or a dearer prompt is for people to look at, not to stop work for.
PAUSE_KINDS = ("anomaly", "burn_rate")
#: A global-scope alert can hold every key: the record names this many protected ones.
MAX_PROTECTED_LISTED = 100

_WHY = {
    "critical": "critical in the keys config: alerted, never paused",
    "alert-only": "pausable: false in the keys config",
    "unlisted": "no keys rule names it (keys no rule names are alerted, never paused)",
    "master-key": "LiteLLM's master key is never paused",
}


def pausable(api_key: str, keys: KeysConfig) -> bool:
    """May ``api_key`` be paused? The config's answer, never an event's."""
    return keys.classify(api_key).pausable


def refusal(cls: KeyClass) -> str:
    """Why a key of this class may not be paused, in a line for the audit and Slack."""
    return _WHY.get(cls.protection, cls.protection)


#: Alert kinds that tell the operator about the engine itself (a model with no price, a
#: dimension set past its series cap): no amount to show, nothing a pause could fix.
NOTICES = frozenset({"unpriced_model", "series_cap"})


def on_a_sum(alert: Alert) -> bool:
    """An anomaly on a sum over keys (a team, a model, the global total): it does not say
    which key loops, so it pauses none when keys are watched (``apply_policies``)."""
    return alert.kind == "anomaly" and "api_key" not in alert.scope


def screen_pauses(
    targets: Iterable[str], keys: KeysConfig
) -> tuple[list[str], list[tuple[str, KeyClass]]]:
    """Split pause targets into (allowed, refused with their class), in the given order."""
    allowed: list[str] = []
    refused: list[tuple[str, KeyClass]] = []
    for target in targets:
        cls = keys.classify(target)
        if cls.pausable:
            allowed.append(target)
        else:
            refused.append((target, cls))
    return allowed, refused


def _first_match(
    attrs: dict[str, str | None], policies: Sequence[PolicyConfig]
) -> PolicyConfig | None:
    for policy in policies:
        if all(attrs.get(name) == value for name, value in policy.match.items()):
            return policy
    return None


def _age(alert: Alert) -> float:
    """How long its incident has been anomalous, in event time of the evidence: from what
    its first alert judged to what this one judges (an hour closed after the lateness judged
    that hour, not the minutes since; an alert that does not say when its incident opened
    counts as old enough: it pauses as before ``confirm_s``)."""
    if not alert.opened_at:
        return math.inf
    evidence = min(parse_ts(alert.detected_at), parse_ts(alert.window_end))
    return evidence - parse_ts(alert.opened_at)


def apply_policies(
    alert: Alert,
    known: Sequence[KeyInfo],
    policies: Sequence[PolicyConfig],
    keys: KeysConfig,
    *,
    keys_watched: bool = True,
) -> Alert:
    """``alert`` with ``action``, ``targets``, ``critical_keys`` and ``protected_keys`` set
    from the keys section and the policies, for the keys ``known`` in its scope (the ones
    ``SpendWatch.advance`` hands beside it).

    A budget hard stop pauses every key in scope the keys section lets be paused; a resume
    undoes the pause for the keys the engine listed; an anomaly or a burn-rate alert pauses
    the pausable keys whose first matching policy says so; other kinds stay alerts. No key
    to act on means a plain alert.

    An anomaly pauses only a key its scope names, when the watch has series of keys
    (``keys_watched``): a team's, a model's or the global sum over its baseline says money
    is going somewhere in it, not which key; pausing every batch key under it stops
    innocent ones. The culprit key's own series names it minutes later (the incident is
    re-stated at the key, and that alert pauses it). A burn-rate alert is a budget's
    scope by design and pauses as its policy says.

    A pause policy with ``confirm_s`` holds its keys on an anomaly whose incident opened
    less than that long before (``held_keys``, with when they may be paused); the
    incident's follow-up past that age (``IncidentBook.confirm_after``) pauses them.

    ``protected_keys`` names each key in scope that may not be paused, and why (Slack says
    so); ``critical_keys`` the critical ones among them.
    """
    if alert.action == "resume":
        return msgspec.structs.replace(alert, targets=sorted({k.api_key for k in known}))
    classes = {k.api_key: keys.classify(k.api_key) for k in known}
    protected = [(key, cls.protection) for key, cls in sorted(classes.items()) if not cls.pausable]
    named: dict[str, Any] = {
        "critical_keys": [key for key, why in protected if why == "critical"],
        "protected_keys": dict(protected[:MAX_PROTECTED_LISTED]),
    }
    if alert.action == "alert" and alert.kind not in PAUSE_KINDS:
        # A threshold crossed or a weekly rise is news, not a runaway to stop.
        return msgspec.structs.replace(alert, **named)
    if alert.action == "pause":
        targets = {key for key, cls in classes.items() if cls.pausable}
    elif keys_watched and on_a_sum(alert):
        targets = set()
    else:
        targets = set()
        held: dict[str, str] = {}
        age = _age(alert) if alert.kind == "anomaly" else math.inf
        for k in known:
            cls = classes[k.api_key]
            if not cls.pausable:
                continue
            policy = _first_match({**alert.scope, **k.attrs(), "workload": cls.workload}, policies)
            if policy is None or policy.action != "pause":
                continue
            if age < policy.confirm_s:
                held[k.api_key] = format_ts(parse_ts(alert.opened_at) + policy.confirm_s)
            else:
                targets.add(k.api_key)
        if held:
            named["held_keys"] = dict(sorted(held.items()))
    return msgspec.structs.replace(
        alert, targets=sorted(targets), action="pause" if targets else "alert", **named
    )


class AlertSource(Protocol):
    """What the policy step reads of the detect stage's watch (``detectors.SpendWatch``)."""

    def advance(self, max_hours: int | None = None) -> list[tuple[Alert, list[KeyInfo]]]: ...

    def hold(self, alert: Alert) -> None: ...

    @property
    def behind(self) -> bool: ...


def decide(watch: AlertSource, config: Config, max_hours: int | None = None) -> Iterator[Alert]:
    """The policy step, as the detect stage and replay run it: each alert ``watch.advance``
    raises, with ``config``'s policies applied; one that holds a pause (``confirm_s``) is
    handed back (``watch.hold``), so its incident is stated again once it has lasted.

    Hours are closed one per ``advance``, up to ``max_hours`` (None: every hour the
    watermark has passed), so that a hold is in place before the next hour is judged. A
    backlog's day closed in one call judged the loop's later hours before the hold of its
    first alert: the incident was never stated again, and the batch key never paused.
    """
    closed = 0
    while True:
        for raised, known in watch.advance(max_hours=1):
            alert = apply_policies(
                raised, known, config.policies, config.keys, keys_watched=config.watches_keys
            )
            if alert.held_keys:
                watch.hold(alert)
            yield alert
        closed += 1
        if not watch.behind or (max_hours is not None and closed >= max_hours):
            return
