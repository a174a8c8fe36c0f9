"""Who a key is, by the operator's word: the ``keys:`` section and the one function that reads it.

Whether a key may be paused is the operator's decision, so it comes from the config, never
from an event. An event's ``workload`` is set by whoever sends it (through LiteLLM, any
caller, per request: ``request_tags: ["workload:batch"]``); it stays an attribution tag for
rollups and reports. Rules match the ``api_key`` only: the identity the gateway
authenticated (LiteLLM logs the key's hash, or its alias), exactly or as a glob
(``*``, ``?``, ``[...]``), first match wins. A key no rule names is alerted on, never paused,
and LiteLLM's master key (logged as a fixed sentinel, not a hash) is never a pause target.

>>> keys = KeysConfig(rules=[
...     KeyRule(api_key="support-bot-prod", workload="critical"),
...     KeyRule(api_key="*-batch", workload="batch"),
... ])
>>> keys.classify("growth-email-batch")
KeyClass(workload='batch', pausable=True, protection='', rule=1)
>>> keys.classify("support-bot-prod").protection
'critical'
>>> keys.classify("someone-else")
KeyClass(workload=None, pausable=False, protection='unlisted', rule=None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._errors import ValueAt

__all__ = ["LITELLM_MASTER_KEY", "PROTECTIONS", "KeyClass", "KeyRule", "KeysConfig", "hidden_rule"]

#: What LiteLLM logs as ``user_api_key_hash`` for calls made with its master key.
LITELLM_MASTER_KEY = "litellm_proxy_master_key"
#: Why a key may not be paused, as ``KeyClass.protection`` says it (bounded: a metric label).
PROTECTIONS = ("critical", "alert-only", "unlisted", "master-key")
_GLOB = "*?["


@dataclass(frozen=True, slots=True)
class KeyClass:
    """What the config says about one api key.

    ``workload`` is the class policies match on (None: no rule names the key);
    ``protection`` says why a pause is not allowed (one of ``PROTECTIONS``), empty when it
    is; ``rule`` is the index of the rule that matched.
    """

    workload: str | None
    pausable: bool
    protection: str
    rule: int | None


_UNLISTED = KeyClass(None, False, "unlisted", None)


class KeyRule(BaseModel):
    """One key, or a glob of keys, and its class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The ``api_key`` as events carry it (a LiteLLM key hash or alias), or a glob of them.
    api_key: Annotated[str, Field(min_length=1, max_length=200)]
    workload: Literal["critical", "standard", "batch"]
    #: May a ``pause`` policy or a budget's hard stop pause it? Default: unless critical.
    pausable: bool | None = None

    @model_validator(mode="after")
    def _never_pause_critical(self) -> KeyRule:
        if self.workload == "critical" and self.pausable:
            raise ValueAt(
                ("pausable",),
                "critical keys are never paused; drop pausable or use workload: standard",
            )
        if self.api_key == LITELLM_MASTER_KEY and self.may_pause:
            raise ValueAt(
                ("api_key",),
                f"{LITELLM_MASTER_KEY} is LiteLLM's master key, never paused; "
                "use workload: critical or pausable: false",
            )
        return self

    @property
    def may_pause(self) -> bool:
        return self.workload != "critical" if self.pausable is None else self.pausable

    def matches(self, api_key: str) -> bool:
        return fnmatchcase(api_key, self.api_key)


class KeysConfig(BaseModel):
    """The ``keys:`` section: each key's class, by the operator. First matching rule wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: list[KeyRule] = []

    @model_validator(mode="after")
    def _no_dead_rules(self) -> KeysConfig:
        hidden = hidden_rule([rule.api_key for rule in self.rules])
        if hidden is not None:
            raise hidden
        return self

    def classify(self, api_key: str) -> KeyClass:
        """The class of ``api_key``: its first matching rule, else alert only."""
        for i, rule in enumerate(self.rules):
            if rule.matches(api_key):
                if api_key == LITELLM_MASTER_KEY:
                    return KeyClass(rule.workload, False, "master-key", i)
                if rule.may_pause:
                    return KeyClass(rule.workload, True, "", i)
                protection = "critical" if rule.workload == "critical" else "alert-only"
                return KeyClass(rule.workload, False, protection, i)
        if api_key == LITELLM_MASTER_KEY:
            return KeyClass(None, False, "master-key", None)
        return _UNLISTED


def hidden_rule(api_keys: Sequence[str | None]) -> ValueAt | None:
    """The first rule an earlier one hides, by the rules' ``api_key`` in order (None: a rule
    without a usable one, skipped), as an error at ``rules[j].api_key``; None if there is none.

    A rule an earlier one hides would look like protection and be none: the operator lists
    the support bot as critical under a `*` that makes everything batch.
    """
    for j, later in enumerate(api_keys):
        for i, earlier in enumerate(api_keys[:j]):
            if earlier is not None and later is not None and _covers(earlier, later):
                return ValueAt(
                    ("rules", j, "api_key"),
                    f"never matches: rules[{i}] (api_key {earlier!r}) comes first "
                    "and matches every key this one does (the first match wins)",
                )
    return None


def _covers(earlier: str, later: str) -> bool:
    """True when every key the glob ``later`` matches, ``earlier`` matches too.

    Exact for a plain ``later``; for globs, when ``earlier`` is ``prefix*suffix`` (one star,
    no other wildcard) and ``later``'s fixed start and end extend those. Other overlaps of
    two globs go unnoticed (the first match still wins).
    """
    if earlier == later:
        return True
    if not any(c in later for c in _GLOB):
        return fnmatchcase(later, earlier)
    if earlier.count("*") != 1 or any(c in earlier for c in "?["):
        return False
    prefix, _, suffix = earlier.partition("*")
    cut = [i for i, c in enumerate(later) if c in _GLOB]
    head, tail = later[: cut[0]], later[cut[-1] + 1 :]
    return head.startswith(prefix) and tail.endswith(suffix)
