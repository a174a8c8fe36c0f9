"""Who may be paused is the operator's decision: the config's ``keys`` section, never an event."""

from __future__ import annotations

from typing import Any

import msgspec

from spendbrake.actions import apply_policies, pausable, screen_pauses
from spendbrake.schemas import (
    LITELLM_MASTER_KEY,
    Alert,
    Config,
    KeyInfo,
    KeyRule,
    KeysConfig,
    PolicyConfig,
    format_ts,
)

RULES = KeysConfig(
    rules=[
        KeyRule(api_key="support-bot-prod", workload="critical"),
        KeyRule(api_key="*-batch", workload="batch"),
        KeyRule(api_key="research-nightly-summarizer", workload="batch"),
        KeyRule(api_key="eval-*", workload="batch", pausable=False),
        KeyRule(api_key="search-*", workload="standard"),
    ]
)
POLICIES = Config().policies  # batch: pause, critical: alert


def anomaly(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "anomaly",
        "detector": "baseline",
        "scope": {"team": "research"},
        "window_start": format_ts(0.0),
        "window_end": format_ts(3600.0),
        "detected_at": format_ts(600.0),
        "observed_usd": 50.0,
        "expected_usd": 2.0,
        "severity": "critical",
        "reason": "runaway",
        "id": "anomaly/team=research/0",
        "seq": 0,
    }
    return Alert(**{**fields, **changes})


def test_an_event_saying_batch_does_not_make_a_critical_key_pausable() -> None:
    """Reproduction 1 of issue 17, at the policy step: the key directory keeps the first
    event's workload, which any LiteLLM caller sets per request."""
    said_batch = KeyInfo("support-bot-prod", team="support", workload="batch")
    alert = apply_policies(anomaly(scope={}), [said_batch], POLICIES, RULES)
    assert (alert.action, alert.targets) == ("alert", [])
    assert alert.protected_keys == {"support-bot-prod": "critical"}
    assert alert.critical_keys == ["support-bot-prod"]


def test_an_event_saying_critical_does_not_shield_a_batch_key() -> None:
    said_critical = KeyInfo("research-nightly-summarizer", team="research", workload="critical")
    on_key = anomaly(scope={"api_key": "research-nightly-summarizer"})
    alert = apply_policies(on_key, [said_critical], POLICIES, RULES)
    assert (alert.action, alert.targets) == ("pause", ["research-nightly-summarizer"])
    assert alert.critical_keys == []


def test_policies_match_the_configured_class_not_the_scope_tag() -> None:
    # A budget or a dimension set can scope on the events' workload tag; the policy still
    # sees each key's class from the config.
    # (A config that watches no key series, so a coarse anomaly may pause.)
    keys = [KeyInfo("growth-email-batch", workload="standard"), KeyInfo("search-agent")]
    tagged = anomaly(scope={"workload": "batch"})
    alert = apply_policies(tagged, keys, POLICIES, RULES, keys_watched=False)
    assert alert.targets == ["growth-email-batch"]
    only_standard = [PolicyConfig(match={"workload": "standard"}, action="pause")]
    alert = apply_policies(tagged, keys, only_standard, RULES, keys_watched=False)
    assert alert.targets == ["search-agent"]


def test_a_coarse_anomaly_pauses_no_key_when_keys_are_watched() -> None:
    """Seen in the evaluation (seed 1): batch keys looping together lifted the global sum,
    and its anomaly paused every batch key of the fleet, innocent ones too. A team's, a
    model's or the global sum says money goes somewhere in it, not which key."""
    keys = [KeyInfo("growth-email-batch"), KeyInfo("research-nightly-summarizer")]
    for scope in ({}, {"team": "research"}, {"model": "o3-pro"}):
        alert = apply_policies(anomaly(scope=scope), keys, POLICIES, RULES)
        assert (alert.action, alert.targets) == ("alert", []), scope
    # The key's own series names it: that alert pauses it.
    on_key = anomaly(scope={"api_key": "growth-email-batch"})
    alert = apply_policies(on_key, keys[:1], POLICIES, RULES)
    assert (alert.action, alert.targets) == ("pause", ["growth-email-batch"])
    # A budget's burn rate is a scope by design: its policy still pauses there.
    burn = anomaly(kind="burn_rate", scope={"team": "research"})
    alert = apply_policies(burn, keys, POLICIES, RULES)
    assert alert.targets == ["growth-email-batch", "research-nightly-summarizer"]


def test_keys_no_rule_names_are_alerted_only_whatever_the_policy() -> None:
    everything = [PolicyConfig(match={}, action="pause")]
    keys = [KeyInfo("stranger", workload="batch"), KeyInfo("eval-nightly", workload="batch")]
    alert = apply_policies(anomaly(), keys, everything, RULES)
    assert (alert.action, alert.targets) == ("alert", [])
    assert alert.protected_keys == {"eval-nightly": "alert-only", "stranger": "unlisted"}
    # With no keys section at all, nothing is ever paused.
    assert apply_policies(anomaly(), keys, everything, KeysConfig()).targets == []


def test_a_budget_hard_stop_pauses_only_what_the_config_lets_be_paused() -> None:
    keys = [
        KeyInfo("research-nightly-summarizer"),
        KeyInfo("support-bot-prod", workload="batch"),
        KeyInfo("stranger", workload="batch"),
        KeyInfo(LITELLM_MASTER_KEY, workload="batch"),
    ]
    stop = msgspec.structs.replace(anomaly(), kind="budget", action="pause")
    alert = apply_policies(stop, keys, POLICIES, RULES)
    assert alert.targets == ["research-nightly-summarizer"]
    assert alert.protected_keys[LITELLM_MASTER_KEY] == "master-key"
    assert alert.critical_keys == ["support-bot-prod"]


def test_a_resume_names_the_keys_it_undoes_and_no_protected_ones() -> None:
    resume = msgspec.structs.replace(anomaly(), kind="budget", action="resume")
    keys = [KeyInfo("research-nightly-summarizer"), KeyInfo("growth-email-batch")]
    alert = apply_policies(resume, keys, POLICIES, RULES)
    assert (alert.action, alert.targets) == (
        "resume",
        ["growth-email-batch", "research-nightly-summarizer"],
    )
    assert (alert.critical_keys, alert.protected_keys) == ([], {})


def test_a_global_alert_lists_the_first_100_protected_keys_and_every_critical_one() -> None:
    rules = KeysConfig(rules=[KeyRule(api_key="crit-*", workload="critical")])
    keys = [KeyInfo(f"crit-{i:03d}") for i in range(150)]
    alert = apply_policies(anomaly(scope={}), keys, POLICIES, rules)
    assert list(alert.protected_keys) == [f"crit-{i:03d}" for i in range(100)]
    assert alert.critical_keys == [f"crit-{i:03d}" for i in range(150)]


def test_the_master_key_sentinel_is_never_a_target_even_under_a_catch_all() -> None:
    everyone = KeysConfig(rules=[KeyRule(api_key="*", workload="batch")])
    assert pausable("any-key", everyone) and not pausable(LITELLM_MASTER_KEY, everyone)
    allowed, refused = screen_pauses(["a", LITELLM_MASTER_KEY], everyone)
    assert allowed == ["a"] and [(t, c.protection) for t, c in refused] == [
        (LITELLM_MASTER_KEY, "master-key")
    ]


def test_first_matching_rule_wins_and_globs_match_the_whole_key() -> None:
    assert RULES.classify("growth-email-batch").workload == "batch"
    assert RULES.classify("growth-email-batch-2").workload is None  # the glob ends in -batch
    assert RULES.classify("Support-Bot-Prod").workload is None  # case matters, as in keys
    assert RULES.classify("eval-1").protection == "alert-only"
    assert RULES.classify("search-agent").rule == 4


def test_a_pause_policy_with_confirm_s_holds_its_keys_until_the_incident_has_lasted() -> None:
    """Prometheus' ``for``: the first alert of an incident names the key held and when it
    may be paused; a follow-up that long after the incident opened pauses it."""
    T = 1_790_812_800.0  # 2026-10-01: alert times are events' times, 2000-2100
    policies = [PolicyConfig(match={"workload": "batch"}, action="pause", confirm_s=900)]
    key = [KeyInfo("research-nightly-summarizer", team="research")]
    on_key = anomaly(
        scope={"api_key": "research-nightly-summarizer"},
        window_start=format_ts(T),
        window_end=format_ts(T + 3600.0),
        detected_at=format_ts(T + 600.0),
        opened_at=format_ts(T + 600.0),
    )
    first = apply_policies(on_key, key, policies, RULES)
    assert (first.action, first.targets) == ("alert", [])
    assert first.held_keys == {"research-nightly-summarizer": format_ts(T + 1500.0)}
    early = msgspec.structs.replace(on_key, seq=1, detected_at=format_ts(T + 1499.0))
    assert apply_policies(early, key, policies, RULES).targets == []
    lasted = msgspec.structs.replace(on_key, seq=2, detected_at=format_ts(T + 1500.0))
    paused = apply_policies(lasted, key, policies, RULES)
    assert (paused.action, paused.targets, paused.held_keys) == (
        "pause",
        ["research-nightly-summarizer"],
        {},
    )
    # Ages are the evidence's: an hour judged at its close, 10 minutes after its end, is as
    # old as its end (its first alert then holds too).
    closed = msgspec.structs.replace(
        on_key,
        window_end=format_ts(T + 600.0),
        detected_at=format_ts(T + 1200.0),
        opened_at=format_ts(T + 600.0),
    )
    assert apply_policies(closed, key, policies, RULES).targets == []
    # A burn rate already needs two windows over the pace: it never waits.
    burn = msgspec.structs.replace(on_key, kind="burn_rate")
    assert apply_policies(burn, key, policies, RULES).targets == ["research-nightly-summarizer"]
    # Without confirm_s (a policy's default: 0), the first alert pauses.
    at_once = [PolicyConfig(match={"workload": "batch"}, action="pause")]
    assert apply_policies(on_key, key, at_once, RULES).targets == ["research-nightly-summarizer"]
    # The default config's batch policy waits ten minutes.
    assert apply_policies(on_key, key, POLICIES, RULES).held_keys == {
        "research-nightly-summarizer": format_ts(T + 1200.0)
    }
