"""The action stage's plan, without I/O: what each alert asks for, in which order, once."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from spendbrake.actions import Outbox, dump_outbox, load_outbox, outcome_line
from spendbrake.schemas import (
    LITELLM_MASTER_KEY,
    ActionRecord,
    Alert,
    KeyRule,
    KeysConfig,
    format_ts,
    unpickle_state,
)

#: An outbox mid-retry pickled by commit 796aa9e (see the test that restores it).
OLD_PICKLE = Path(__file__).parent / "data" / "outbox_796aa9e.pkl"
#: An outbox file with two incidents written by the 2026-12-05 release (alerts as dicts).
OLD_FILE = Path(__file__).parent / "data" / "outbox_v1_dict_alerts.json"
#: An outbox file written by commit 91ee7cd, whose alerts were ``AlertRecord``s.
RECORD_FILE = Path(__file__).parent / "data" / "outbox_v1_91ee7cd.json"

#: The operator's word: the production key is critical, the other sk- keys are batch.
KEYS = KeysConfig(
    rules=[
        KeyRule(api_key="sk-prod", workload="critical"),
        KeyRule(api_key="sk-*", workload="batch"),
    ]
)


def alert(
    seq: int = 0,
    action: str = "pause",
    targets: tuple[str, ...] = ("sk-a", "sk-b"),
    id: str = "anomaly/api_key=sk-a/1",
    scope: dict | None = None,
    **extra: Any,
) -> Alert:
    return Alert(
        **{
            "id": id,
            "seq": seq,
            "kind": "anomaly",
            "severity": "critical",
            "reason": "spend 12x the expected",
            "scope": scope if scope is not None else {"team": "search"},
            "action": action,
            "targets": list(targets),
            "critical_keys": [],
            **extra,
        }
    )


def drain(box: Outbox, lane: str) -> list[str]:
    ops = []
    while (task := box.head(lane)) is not None:  # type: ignore[arg-type]
        ops.append(f"{task.op}:{task.target or ''}")
        box.finish(task, "ok", "done", 100.0, ts="1.1" if task.op == "post" else None)
    return ops


def test_a_pause_alert_plans_one_post_and_one_block_per_target() -> None:
    box = Outbox()
    assert box.accept(alert(), now=1.0, keys=KEYS)
    assert [t.op for t in box.lanes["slack"]] == ["post"]
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [
        ("block", "sk-a"),
        ("block", "sk-b"),
    ]


def test_a_redelivered_alert_plans_nothing() -> None:
    box = Outbox()
    assert box.accept(alert(), now=1.0, keys=KEYS)
    assert not box.accept(alert(), now=2.0, keys=KEYS)
    assert len(box.lanes["slack"]) == 1 and len(box.lanes["gateway"]) == 2


def test_an_escalation_before_the_pause_settled_does_not_pause_again() -> None:
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    box.accept(alert(seq=1, targets=("sk-a",)), now=2.0, keys=KEYS)  # the block is still queued
    assert drain(box, "gateway") == ["block:sk-a"]
    assert box.incidents["anomaly/api_key=sk-a/1"].paused == ["sk-a"]


def test_when_every_block_settles_the_thread_hears_it_once() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    assert drain(box, "slack") == ["post:"]
    assert drain(box, "gateway") == ["block:sk-a", "block:sk-b"]
    # One reply and one parent update for the pair, not one per key.
    assert drain(box, "slack") == ["reply:", "update:"]
    incident = box.incidents[alert().id]
    assert incident.paused == ["sk-a", "sk-b"] and incident.ts == "1.1"


def test_a_follow_up_goes_into_the_thread_and_blocks_only_new_keys() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    drain(box, "slack")
    drain(box, "gateway")
    drain(box, "slack")
    box.accept(alert(seq=1, targets=("sk-a", "sk-b", "sk-c")), now=2.0, keys=KEYS)
    assert [t.target for t in box.lanes["gateway"]] == ["sk-c"]
    assert [t.op for t in box.lanes["slack"]] == ["reply", "update"]


def test_a_critical_scope_is_alerted_and_never_blocked() -> None:
    box = Outbox()
    box.accept(alert(action="alert", targets=(), critical_keys=["sk-prod"]), now=1.0, keys=KEYS)
    assert not box.lanes["gateway"]
    assert [t.op for t in box.lanes["slack"]] == ["post"]


def test_an_anomaly_on_a_sum_says_why_it_paused_nothing() -> None:
    """A team's anomaly pauses no key (``apply_policies``); Slack says why, and that the
    looping key's own alert will, not that no policy matched."""
    box = Outbox()
    box.accept(alert(action="alert", targets=()), now=1.0, keys=KEYS)
    ((_, incident),) = box.incidents.items()
    line = outcome_line(incident, incident.alert, dry_run=False)
    assert line == "Alert only: a sum over keys pauses none; a looping key's own alert does"
    on_key = alert(action="alert", targets=(), id="anomaly/api_key=x/1", scope={"api_key": "x"})
    box.accept(on_key, now=2.0, keys=KEYS)
    incident = box.incidents["anomaly/api_key=x/1"]
    assert "no pause policy" in outcome_line(incident, incident.alert, dry_run=False)


def test_a_held_pause_says_when_it_would_pause() -> None:
    box = Outbox()
    held = {"sk-a": "2026-11-08T03:10:02.011000Z"}
    on_key = alert(action="alert", targets=(), id="anomaly/api_key=sk-a/1", held_keys=held)
    box.accept(on_key, now=1.0, keys=KEYS)
    incident = box.incidents["anomaly/api_key=sk-a/1"]
    line = outcome_line(incident, incident.alert, dry_run=False)
    assert line == "Pause held: sk-a paused if still anomalous at 03:10 UTC (policy confirm_s)"


def test_a_second_incident_on_the_scope_within_the_cooldown_joins_the_thread() -> None:
    box = Outbox(cooldown_s=3600)
    box.accept(alert(action="alert", targets=()), now=1.0, keys=KEYS)
    drain(box, "slack")
    box.accept(alert(action="alert", targets=(), id="wow/team=search/2"), now=60.0, keys=KEYS)
    task = box.head("slack")
    assert task is not None and task.op == "reply"
    assert box.thread_of(task) is box.incidents[alert().id]
    # After the cooldown a new incident gets its own message.
    box.finish(task, "ok", "done", 61.0)
    box.accept(alert(action="alert", targets=(), id="wow/team=search/3"), now=5000.0, keys=KEYS)
    assert box.head("slack").op == "post"  # type: ignore[union-attr]


def test_a_retry_keeps_the_lane_order_and_audits_each_attempt() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    head = box.head("gateway")
    assert head is not None
    head.attempts = 1
    box.retry(head, "http 500", 2.0, now=1.5)
    assert box.head("gateway") is head and head.next_at == 3.5
    assert box.audit[head.id].result == "retrying"
    box.finish(head, "ok", "blocked", now=4.0)
    assert box.audit[head.id].result == "ok" and box.audit[head.id].attempts == 1


def test_a_long_outage_audits_its_retries_sparsely_and_every_new_error() -> None:
    """An outage of a day retried every minute audited 1,440 records a waiting effect:
    the first three retries, then the 4th, 8th, 16th..., and any retry with a new error."""
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    head = box.head("gateway")
    assert head is not None
    audited = []
    for attempt in range(1, 21):
        head.attempts = attempt
        box.retry(head, "http 500" if attempt != 6 else "timeout", 60.0, now=float(attempt))
        audited.append(box.audit[head.id].attempts)
    assert sorted(set(audited)) == [1, 2, 3, 4, 6, 7, 8, 16], audited
    box.finish(head, "ok", "blocked", now=30.0)
    assert box.audit[head.id].result == "ok" and box.audit[head.id].attempts == 20


def test_a_permanent_failure_is_audited_and_the_lane_moves_on() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    first = box.head("gateway")
    box.finish(first, "failed", "404 Key not found.", now=2.0)  # type: ignore[arg-type]
    assert box.head("gateway").target == "sk-b"  # type: ignore[union-attr]
    assert box.incidents[alert().id].failed == ["sk-a"]


def test_a_snoozed_scope_posts_no_new_message_but_still_pauses() -> None:
    box = Outbox()
    box.snooze({"team": "search"}, until=100.0)
    box.accept(alert(action="alert", targets=()), now=1.0, keys=KEYS)
    assert not box.lanes["slack"]
    box.accept(alert(id="x/2"), now=2.0, keys=KEYS)  # a pause is never silenced
    assert [t.op for t in box.lanes["slack"]] == ["post"]
    assert len(box.lanes["gateway"]) == 2


def test_a_trend_goes_to_the_digest_and_is_never_posted() -> None:
    """Severity info (a creep, a launch's step): audited as skipped, no Slack message; the
    digest lists it from the store."""
    box = Outbox()
    trend = alert(action="alert", targets=(), id="wow/api_key=sk-a/1", severity="info")
    assert box.accept(trend, now=1.0, keys=KEYS)
    assert not box.lanes["slack"] and not box.lanes["gateway"]
    record = box.audit["wow/api_key=sk-a/1#0/post"]
    assert record.result == "skipped" and "digest" in record.detail
    # A page on the same scope right after is a new message, not a reply to nothing.
    assert box.accept(alert(action="alert", targets=(), id="cost_per_call/x/2"), now=2.0, keys=KEYS)
    assert [t.op for t in box.lanes["slack"]] == ["post"]


def test_the_outbox_survives_its_file_round_trip_mid_task() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    box.offsets[3] = 12
    head = box.head("slack")
    head.first_attempt_at = 1.2  # type: ignore[union-attr]
    box.retry(box.head("gateway"), "http 503", 0.1, now=1.1)  # type: ignore[arg-type]
    again = load_outbox(dump_outbox(box))
    assert again == box and again.offsets == {3: 12}
    assert again.head("slack").first_attempt_at == 1.2  # type: ignore[union-attr]
    assert again.threads == box.threads and isinstance(again.threads["team=search"], tuple)
    assert not again.accept(alert(), now=3.0, keys=KEYS)
    assert [t.target for t in again.lanes["gateway"]] == ["sk-a", "sk-b"]
    assert drain(again, "gateway") == drain(box, "gateway")


def test_the_outbox_file_is_plain_versioned_json() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    data = orjson.loads(dump_outbox(box))
    assert data["version"] == 1
    assert [t["op"] for t in data["outbox"]["lanes"]["gateway"]] == ["block", "block"]


def test_an_old_pickle_and_its_file_hold_the_same_outbox() -> None:
    """The migration's core: an outbox pickled by an earlier release (its missing fields
    filled by ``__setstate__``) written to the file and read back is the same outbox."""
    box: Outbox = unpickle_state(OLD_PICKLE.read_bytes())
    again = load_outbox(dump_outbox(box))
    assert again == box
    assert [t.unsure for t in again.lanes["slack"]] == [t.unsure for t in box.lanes["slack"]]
    assert again.blocked == box.blocked != {}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"version": 1, "outbox": {"lan', "not an outbox file: Input data was truncated"),
        (b'{"version": 2, "outbox": {}}', "version 2; this release reads version 1"),
        (b'{"outbox": {}}', "not an outbox file: Object missing required field `version`"),
        (
            b'{"version": 1, "outbox": {"offsets": {"0": "x"}}}',
            "not an outbox file: Expected `int`, got `str` - at `$.outbox.offsets[...]`",
        ),
        (
            b'{"version": 1, "outbox": {"lanes": {"slack": [{"id": "t", "lane": "mail"}]}}}',
            "not an outbox file: Invalid enum value 'mail' at `[0].lane` - at `$.outbox.lanes[...]`",
        ),
    ],
)
def test_a_damaged_outbox_file_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_outbox(data)
    assert str(caught.value).startswith(reason), caught.value


def test_a_retry_after_of_infinity_still_saves() -> None:
    """A ``Retry-After`` of 400 digits reads as infinity; JSON has none: a day at most."""
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    task = box.head("gateway")
    assert task is not None
    box.retry(task, "http 429", float("inf"), now=1.0)
    assert load_outbox(dump_outbox(box)).head("gateway").next_at == 1.0 + 86400  # type: ignore[union-attr]


def test_an_operator_resume_unblocks_and_reports_in_the_thread() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    drain(box, "slack")
    drain(box, "gateway")
    drain(box, "slack")
    assert box.command("unblock", ["sk-a"], alert().id, "slack:U1", now=5.0).queued == ["sk-a"]
    assert drain(box, "gateway") == ["unblock:sk-a"]
    incident = box.incidents[alert().id]
    assert incident.resumed == ["sk-a"] and incident.paused == ["sk-b"]
    assert drain(box, "slack") == ["reply:", "update:"]


def test_a_budget_resume_alert_unblocks_what_it_lists() -> None:
    box = Outbox()
    box.accept(alert(targets=("sk-a",), id="budget/team=search/1"), now=1.0, keys=KEYS)
    drain(box, "gateway")
    box.accept(
        alert(action="resume", targets=("sk-a",), id="budget/team=search/resume"),
        now=2.0,
        keys=KEYS,
    )
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [("unblock", "sk-a")]


def test_a_critical_key_is_never_blocked_whatever_the_record_says() -> None:
    box = Outbox()
    box.accept(alert(targets=("sk-a", "sk-prod"), critical_keys=["sk-prod"]), now=1.0, keys=KEYS)
    assert [t.target for t in box.lanes["gateway"]] == ["sk-a"]
    # A record can add protection (the detect stage's view), never take it away.
    box.accept(alert(targets=("sk-b",), critical_keys=["sk-b"], id="x/2"), now=2.0, keys=KEYS)
    assert [t.target for t in box.lanes["gateway"]] == ["sk-a"]


def test_a_forged_pause_of_a_protected_key_is_refused_audited_and_told() -> None:
    """Reproduction 2 of issue 17, without I/O: a record on spend.alerts that names a
    critical key as a target and leaves critical_keys empty once blocked it."""
    box = Outbox()
    forged = alert(targets=("sk-prod",), critical_keys=[], id="anomaly/api_key=sk-prod/1")
    assert box.accept(forged, now=1.0, keys=KEYS)
    assert not box.lanes["gateway"]
    record = box.audit["anomaly/api_key=sk-prod/1#0/block/sk-prod"]
    assert (record.action, record.target, record.result) == ("block", "sk-prod", "refused")
    assert "critical" in record.detail
    incident = box.incidents[forged.id]
    assert incident.refused == ["sk-prod"]
    # Slack hears it, with no "Resume" button or undo line for a key that was never paused.
    post = box.head("slack")
    assert post is not None and post.op == "post"
    assert post.alert.action == "alert" and post.alert.targets == []
    assert "Pause REFUSED" in outcome_line(incident, post.alert, dry_run=False)


def test_keys_no_rule_names_and_the_master_key_are_never_blocked() -> None:
    box = Outbox()
    targets = ("sk-a", "team-key", LITELLM_MASTER_KEY)
    box.snooze({"team": "search"}, until=100.0)  # a refusal is still posted
    box.accept(alert(targets=targets), now=1.0, keys=KEYS)
    assert [t.target for t in box.lanes["gateway"]] == ["sk-a"]
    refused = {r.target: r.detail for r in box.audit.values() if r.result == "refused"}
    assert set(refused) == {"team-key", LITELLM_MASTER_KEY}
    assert "no keys rule names it" in refused["team-key"]
    assert "master key" in refused[LITELLM_MASTER_KEY]
    assert [t.op for t in box.lanes["slack"]] == ["post"]
    # A `*` rule does not make the master key pausable either.
    everyone = KeysConfig(rules=[KeyRule(api_key="*", workload="batch")])
    other = Outbox()
    other.accept(alert(targets=(LITELLM_MASTER_KEY,)), now=1.0, keys=everyone)
    assert not other.lanes["gateway"]


def test_a_resume_click_unblocks_only_keys_paused_for_its_incident() -> None:
    """Reproduction 3 of issue 17: a signed click once unblocked any key it named."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    drain(box, "gateway")
    incident = alert().id
    assert box.resumable(incident) == {"sk-a"}
    answer = box.command("unblock", ["sk-a", "sk-other"], incident, "slack:U9", now=5.0)
    assert (answer.queued, answer.refused) == (["sk-a"], ["sk-other"])
    assert [t.target for t in box.lanes["gateway"]] == ["sk-a"]
    refused = [r for r in box.audit.values() if r.result == "refused"]
    assert [(r.target, r.source, r.action) for r in refused] == [
        ("sk-other", "slack:U9", "unblock")
    ]
    assert "not paused by SpendBrake" in refused[0].detail
    # An incident this outbox never saw unblocks nothing.
    assert box.command("unblock", ["sk-a"], "anomaly/forged/1", "slack:U9", now=6.0).queued == []
    assert box.resumable("anomaly/forged/1") == set()


def test_an_incident_keeps_the_time_it_was_first_caught() -> None:
    box = Outbox()
    box.accept(alert(detected_at="2026-11-23T13:05:00Z"), now=1.0, keys=KEYS)
    box.accept(alert(seq=1, detected_at="2026-11-23T15:31:00Z"), now=2.0, keys=KEYS)
    incident = box.incidents["anomaly/api_key=sk-a/1"]
    assert incident.detected_at == "2026-11-23T13:05:00Z"
    assert incident.alert.detected_at == "2026-11-23T15:31:00Z"


def test_an_outbox_saved_before_detected_at_existed_still_loads() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    incident = box.incidents["anomaly/api_key=sk-a/1"]
    # The state an older version pickled: every slot but the new one.
    new = ("detected_at", "refused")
    state = {name: getattr(incident, name) for name in incident.__slots__ if name not in new}
    old = type(incident).__new__(type(incident))
    old.__setstate__((None, state))
    assert old.detected_at is None and old.refused == [] and old.alert == incident.alert
    assert pickle.loads(pickle.dumps(incident)) == incident


def test_each_thread_keeps_its_order_and_critical_threads_go_first() -> None:
    box = Outbox()
    box.accept(alert(action="alert", targets=(), id="warn/1", severity="warning"), 1.0, keys=KEYS)
    box.accept(alert(id="crit/2", scope={"team": "ads"}), now=1.0, keys=KEYS)
    box.accept(
        alert(seq=1, action="alert", targets=(), id="warn/1", severity="critical"), 2.0, keys=KEYS
    )
    # The warning's escalation is critical: its queue (post, then reply and update)
    # ranks as critical and, being older, goes first; its reply waits behind its post.
    first = box.ready("slack", now=5.0)
    assert first is not None and (first.incident, first.op) == ("warn/1", "post")
    second = box.ready("slack", now=5.0, busy={box.order_key(first)})
    assert second is not None and (second.incident, second.op) == ("crit/2", "post")
    assert box.ready("slack", now=5.0, busy={box.order_key(first), box.order_key(second)}) is None


def test_a_failing_head_holds_only_its_own_queue() -> None:
    box = Outbox()
    box.accept(alert(action="alert", targets=(), id="stuck/1"), now=1.0, keys=KEYS)
    box.accept(
        alert(action="alert", targets=(), id="fine/2", scope={"team": "ads"}), now=1.0, keys=KEYS
    )
    stuck = box.ready("slack", now=2.0)
    assert stuck is not None and stuck.incident == "stuck/1"
    box.retry(stuck, "http 500", 30.0, now=2.0)
    fine = box.ready("slack", now=3.0)
    assert fine is not None and fine.incident == "fine/2"
    box.finish(fine, "ok", "delivered", 3.0, ts="9.9")
    assert box.ready("slack", now=4.0) is None and box.next_due("slack") == 32.0
    assert box.ready("slack", now=33.0) is stuck


def test_gateway_calls_keep_the_order_of_their_alerts_through_a_retry() -> None:
    box = Outbox()
    box.accept(alert(targets=("sk-a", "sk-b")), now=1.0, keys=KEYS)
    box.command("unblock", ["sk-a"], alert().id, "slack:U1", now=2.0)
    block_a = box.ready("gateway", now=3.0)
    assert block_a is not None and (block_a.op, block_a.target) == ("block", "sk-a")
    box.retry(block_a, "http 503", 10.0, now=3.0)
    # The gateway's trouble is every call's: the next ones wait, in order.
    assert box.ready("gateway", now=4.0) is None and box.next_due("gateway") == 13.0
    done = []
    while (task := box.ready("gateway", now=14.0)) is not None:
        done.append((task.op, task.target))
        box.finish(task, "ok", "done", 14.0)
    assert done == [("block", "sk-a"), ("block", "sk-b"), ("unblock", "sk-a")]


def test_a_joined_incident_replies_after_the_thread_it_joins_is_posted() -> None:
    box = Outbox(cooldown_s=3600)
    box.accept(alert(action="alert", targets=()), now=1.0, keys=KEYS)
    box.accept(alert(action="alert", targets=(), id="wow/team=search/2"), now=2.0, keys=KEYS)
    post, reply = box.lanes["slack"]
    assert box.order_key(post) == box.order_key(reply)
    assert box.ready("slack", now=3.0) is post
    assert box.ready("slack", now=3.0, busy={box.order_key(post)}) is None


def test_a_resume_from_the_cli_is_told_in_each_thread_that_paused_the_key_once() -> None:
    box = Outbox()
    box.accept(alert(), now=1.0, keys=KEYS)
    drain(box, "slack")
    drain(box, "gateway")
    drain(box, "slack")
    assert box.resumed_elsewhere("resume/cli/key/sk-a@5.000", "sk-a", "cli:ops", 5.0) == 1
    assert not box.resumed_elsewhere("resume/cli/key/sk-a@5.000", "sk-a", "cli:ops", 6.0)
    assert box.resumed_elsewhere("resume/cli/key/sk-x@7.000", "sk-x", "cli:ops", 7.0) == 0
    incident = box.incidents[alert().id]
    assert incident.resumed == ["sk-a"] and incident.paused == ["sk-b"]
    assert [(t.op, t.source) for t in box.lanes["slack"]] == [
        ("reply", "cli:ops"),
        ("update", "cli:ops"),
    ]
    assert not box.lanes["gateway"]  # the CLI unblocked it already


def test_an_outbox_pickled_by_the_previous_release_restores_and_runs() -> None:
    """``data/outbox_796aa9e.pkl``: an outbox mid-retry pickled by commit 796aa9e (one
    global lane per side, no ``unsure``/``queue``/``channel`` fields): incident A posted
    and paused with its "Paused" reply failing (2 attempts) and its update queued; B
    (warning) and C (critical, its block failing once) not posted yet."""
    box: Outbox = unpickle_state(OLD_PICKLE.read_bytes())
    assert box.channel_ids == {} and box.actions_offsets == {} and box.offsets == {0: 3, 1: 0}
    reply, update, growth, critical = box.lanes["slack"]
    # A repeat of a post the old release had tried is looked for first, as it was then.
    assert reply.unsure and reply.attempts == 2 and not growth.unsure
    assert reply.blocked_on is None and box.incidents[reply.incident].channel is None
    assert box.incidents[reply.incident].ts == "1700000001.000000"
    # Its alerts were dicts then: typed once restored.
    assert all(isinstance(t.alert, Alert) for lane in box.lanes.values() for t in lane)
    assert all(isinstance(i.alert, Alert) for i in box.incidents.values())
    # Scheduled by the new rules: the critical threads (A's, then C's) before B's warning.
    now = 2000.0
    order = []
    while (task := box.ready("slack", now)) is not None:
        order.append(task.id)
        box.finish(task, "ok", "delivered", now, ts="1.1", channel="C0SPEND")
    assert order == [reply.id, update.id, critical.id, growth.id], order
    block = box.ready("gateway", now)
    assert block is not None and (block.target, block.attempts) == ("sk-c", 1)
    assert load_outbox(dump_outbox(box)).channel_ids == {}


def test_an_outbox_file_of_91ee7cd_loads_and_saves_byte_for_byte() -> None:
    """Its alert was the ``AlertRecord`` type, the same fields in the same order as the one
    alert type: the file reads as it was and is written back unchanged, but for the fields
    added since (``opened_at``, ``held_keys``, 2026-12-06; ``more_targets``, ``part``,
    ``pause_max_age_s``, an incident's ``late``, ``snooze_held``, the history summary's
    fields, 2026-12-07; an incident's ``shown``, ``historic``, a task's ``keys``, 2026-12-08), written with their
    defaults."""
    data = RECORD_FILE.read_bytes()
    box = load_outbox(data)
    (incident,) = box.incidents.values()
    assert incident.alert.critical_keys == ["support-bot-prod"]
    assert incident.refused == ["support-bot-prod"]  # the stage's own config refused it
    added = b'"opened_at":"","held_keys":{},"more_targets":0,"part":0,"budget":'
    expected = data.replace(b'"budget":', added).replace(
        b'"cooldown_s":3600.0,', b'"cooldown_s":3600.0,"pause_max_age_s":null,'
    )
    expected = (
        expected.replace(
            b'"refused":["support-bot-prod"],', b'"refused":["support-bot-prod"],"late":[],'
        )
        .replace(b'"snoozed":{},', b'"snoozed":{},"snooze_held":{},')
        .replace(b'"cancelled":false}', b'"cancelled":false,"keys":null}')
        .replace(
            b'"channel":null}},"threads"',
            b'"channel":null,"shown":null,"historic":false}},"threads"',
        )
        .replace(
            b'"pause_max_age_s":null,',
            b'"pause_max_age_s":null,"history":"post","history_after_s":null,"held":null,',
        )
    )
    assert dump_outbox(box) == expected


def test_an_outbox_file_of_the_previous_release_loads_with_typed_alerts() -> None:
    """``data/outbox_v1_dict_alerts.json``: written by the 2026-12-05 release, whose alerts
    and audit records were dicts: a detector's pause (one of its two keys critical, so
    refused) and an operator alert (no ``detected_at``, an extra ``message``). The same
    version-1 file reads, every alert and audit record typed, and plans on."""
    box = load_outbox(OLD_FILE.read_bytes())
    pause, unpriced = box.incidents.values()
    assert isinstance(pause.alert, Alert) and isinstance(unpriced.alert, Alert)
    assert (
        pause.alert.targets == ["sk-batch"] and pause.detected_at == "2026-10-01T02:06:00.000000Z"
    )
    assert unpriced.alert.kind == "unpriced_model" and unpriced.detected_at is None
    assert [t.op for t in box.lanes["slack"]] == ["post", "post"]
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [("block", "sk-batch")]
    assert all(isinstance(t.alert, Alert) for lane in box.lanes.values() for t in lane)
    assert outcome_line(unpriced, unpriced.alert, dry_run=False).startswith("Nothing to pause")
    # The refusal of its critical key, not yet acknowledged by the broker, is typed too.
    (refused,) = box.audit.values()
    assert isinstance(refused, ActionRecord)
    assert (refused.target, refused.result, refused.at) == ("sk-prod", "refused", 1.0)
    assert load_outbox(dump_outbox(box)) == box
    assert box.accept(alert(seq=1, id=pause.id), now=3.0, keys=KEYS)


def test_a_resume_record_only_unblocks_keys_spendbrake_paused() -> None:
    """A forged (or stale) resume record must not unblock a key SpendBrake never paused, such
    as one an operator blocked by hand; a budget's resume of its own pause, under another
    incident id (the next period's), still goes through."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",), id="budget/daily/1"), now=1.0, keys=KEYS)
    drain(box, "gateway")
    assert box.blocked == {"sk-a": "budget/daily/1"}
    resume = alert(action="resume", targets=("sk-a", "sk-hand"), id="budget/daily/2")
    assert box.accept(resume, now=2.0, keys=KEYS)
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [("unblock", "sk-a")]
    refused = [r for r in box.audit.values() if r.result == "refused"]
    assert [(r.target, r.detail) for r in refused] == [("sk-hand", "not paused by SpendBrake")]
    drain(box, "gateway")
    assert box.blocked == {}


def test_a_resume_overtakes_a_pause_still_queued_and_undoes_one_in_flight() -> None:
    """An operator resumes a key (``spendbrake resume``) while its pause is still being
    retried: a pause not yet sent is skipped; one already in flight that lands anyway is
    undone at once, so the key does not end up paused again."""
    box = Outbox()
    box.accept(alert(targets=("sk-a", "sk-b")), now=1.0, keys=KEYS)
    in_flight, queued = list(box.lanes["gateway"])
    assert box.resumed_elsewhere("resume/manual/1", "sk-a", "cli:ops", now=2.0) == 0
    assert box.resumed_elsewhere("resume/manual/2", "sk-b", "cli:ops", now=2.0) == 0
    assert in_flight.cancelled and queued.cancelled
    box.finish(in_flight, "ok", "blocked", now=3.0)  # it was already at the gateway
    box.finish(queued, "skipped", "resumed before it went out", now=3.0)
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [("unblock", "sk-a")]
    drain(box, "gateway")
    assert box.blocked == {}


def test_a_pause_skipped_after_a_timed_out_call_is_undone_too() -> None:
    """The pause's first call timed out (the gateway may apply it late); the operator resumed
    the key before the retry, which is skipped. The late block is undone all the same."""
    box = Outbox()
    box.accept(alert(targets=("sk-a", "sk-b")), now=1.0, keys=KEYS)
    timed_out, never_sent = list(box.lanes["gateway"])
    timed_out.attempts, never_sent.attempts = 2, 1  # the skip is counted as an attempt
    timed_out.unsure = True  # its timed-out call may have landed (``GatewayOutcome.unsure``)
    box.resumed_elsewhere("resume/manual/1", "sk-a", "cli:ops", now=2.0)
    box.resumed_elsewhere("resume/manual/2", "sk-b", "cli:ops", now=2.0)
    box.finish(timed_out, "skipped", "resumed before it went out again", now=3.0)
    box.finish(never_sent, "skipped", "resumed before it went out", now=3.0)
    assert [(t.op, t.target) for t in box.lanes["gateway"]] == [("unblock", "sk-a")]
    drain(box, "gateway")
    assert box.blocked == {}


def test_an_outbox_saved_before_blocked_was_kept_knows_its_pauses() -> None:
    box = Outbox()
    box.accept(alert(targets=("sk-a", "sk-b")), now=1.0, keys=KEYS)
    drain(box, "gateway")
    state = box.__getstate__()  # type: ignore[attr-defined]
    saved = dict(state[1] if isinstance(state, tuple) else state)
    del saved["blocked"]
    old = Outbox.__new__(Outbox)
    old.__setstate__((None, saved))
    assert old.blocked == {"sk-a": "anomaly/api_key=sk-a/1", "sk-b": "anomaly/api_key=sk-a/1"}


def test_an_alert_in_several_records_pauses_every_key_and_posts_once() -> None:
    """A hard stop on more keys than one record holds comes as its first part and
    continuations (``alert_records``): each key is paused, the thread hears of it once."""
    from spendbrake.schemas import alert_records

    box = Outbox()
    keys = [f"sk-{i:05d}" for i in range(2_500)]
    stop = alert(id="budget/search/1", action="pause", targets=keys, kind="budget")
    records = alert_records(stop)
    assert len(records) == 3
    assert all(box.accept(r, now=1.0, keys=KEYS) for r in records)
    assert not box.accept(records[1], now=2.0, keys=KEYS)  # a re-delivered continuation
    blocks = [t.target for t in box.lanes["gateway"] if t.op == "block"]
    assert blocks == keys
    assert [t.op for t in box.lanes["slack"]] == ["post"]
    (incident,) = box.incidents.values()
    assert incident.alert == records[0] and len(incident.history) == 1
    assert incident.open_calls == {stop.ref(): 2_500}


def test_an_alert_whose_first_part_settles_before_the_next_arrives_says_so_once() -> None:
    """The gateway may finish part 0's pauses before the continuation is read: the thread
    hears "paused" once, when every part's keys are settled, under one task id."""
    from spendbrake.schemas import alert_records

    box = Outbox()
    keys = [f"sk-{i:05d}" for i in range(1_500)] + ["sk-crit"]
    stop = alert(
        id="budget/search/1",
        action="pause",
        targets=keys,
        kind="budget",
        critical_keys=["sk-crit"],
    )
    first, rest = alert_records(stop)
    box.accept(first, now=1.0, keys=KEYS)
    drain(box, "slack")  # the parent goes out first, saying "Pausing ..."
    drain(box, "gateway")
    assert not [t for t in box.lanes["slack"] if "-done" in t.id]  # part 1's keys still to come
    box.accept(rest, now=2.0, keys=KEYS)
    drain(box, "gateway")
    done = [t.id for t in box.lanes["slack"] if "-done" in t.id]
    assert done == [f"{stop.ref()}/block-done/reply", f"{stop.ref()}/block-done/update"]
    (incident,) = box.incidents.values()
    assert len(incident.paused) == 1_500 and incident.open_calls == {}


def test_pauses_done_before_their_alert_is_posted_are_told_by_that_post_alone() -> None:
    """A backlog: the gateway lane pauses an escalation's keys before the Slack lane reaches
    the escalation's reply. That reply, rendered when sent, already says "Paused 2 key(s)";
    a "done" reply after it said the same words again (two identical messages in the
    thread). The parent is still refreshed."""
    box = Outbox()
    box.accept(alert(action="alert", targets=()), now=1.0, keys=KEYS)
    drain(box, "slack")  # the first alert's parent post
    box.accept(alert(seq=1), now=2.0, keys=KEYS)  # the escalation pauses sk-a and sk-b
    assert drain(box, "gateway") == ["block:sk-a", "block:sk-b"]
    ref = alert(seq=1).ref()
    assert [t.id for t in box.lanes["slack"]] == [
        f"{ref}/reply",
        f"{ref}/update",
        f"{ref}/block-done/update",
    ]
    (incident,) = box.incidents.values()
    (reply,) = [t for t in box.lanes["slack"] if t.op == "reply"]
    assert outcome_line(incident, reply.alert, dry_run=False) == "Paused 2 key(s): sk-a, sk-b"


def test_a_continuation_that_calls_no_key_settles_its_alert() -> None:
    """The last part names only critical keys (never paused): once part 0's pauses are
    done, reading it is what settles the alert."""
    from spendbrake.schemas import MAX_TARGETS, alert_records

    box = Outbox()
    crit = ["sk-crit-1", "sk-crit-2"]
    keys = [f"sk-{i:05d}" for i in range(MAX_TARGETS)] + crit
    stop = alert(id="budget/search/1", targets=keys, kind="budget", critical_keys=crit)
    first, rest = alert_records(stop)
    box.accept(first, now=1.0, keys=KEYS)
    drain(box, "slack")
    drain(box, "gateway")
    assert not [t for t in box.lanes["slack"] if "-done" in t.id]
    box.accept(rest, now=2.0, keys=KEYS)
    assert [t.id for t in box.lanes["slack"] if "-done" in t.id] == [
        f"{stop.ref()}/block-done/reply",
        f"{stop.ref()}/block-done/update",
    ]


def test_a_second_resume_click_queues_nothing_and_each_click_is_told_why() -> None:
    """Two on-calls click "Resume" at once, then a third later: one unblock, one "Resumed
    sk-a" (it was listed twice), and the later clicks hear the key is resumed, not that
    SpendBrake never paused it."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    drain(box, "gateway")
    incident = alert().id
    first = box.command("unblock", ["sk-a"], incident, "slack:U1", now=5.0)
    second = box.command("unblock", ["sk-a"], incident, "slack:U2", now=5.5)
    assert (first.queued, second.queued, second.underway) == (["sk-a"], [], ["sk-a"])
    assert drain(box, "gateway") == ["unblock:sk-a"]
    assert box.incidents[incident].resumed == ["sk-a"]
    third = box.command("unblock", ["sk-a"], incident, "slack:U3", now=7.0)
    assert (third.queued, third.done, third.refused) == ([], ["sk-a"], [])
    said = {r.source: (r.result, r.detail) for r in box.audit.values() if r.action == "unblock"}
    assert said["slack:U2"] == ("skipped", "already being resumed (an earlier request)")
    assert said["slack:U3"] == ("skipped", "already resumed")


def test_a_resume_after_a_failed_pause_clears_it_from_the_incident() -> None:
    """A pause that failed for good (it may have landed) and was then resumed is not shown
    as FAILED any more, and another click does not unblock it again."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    block = box.head("gateway")
    assert block is not None
    box.finish(block, "failed", "HTTP 500", 2.0)
    incident = alert().id
    assert box.command("unblock", ["sk-a"], incident, "slack:U1", now=3.0).queued == ["sk-a"]
    drain(box, "gateway")
    assert box.incidents[incident].failed == []
    assert "FAILED" not in outcome_line(box.incidents[incident], alert(targets=("sk-a",)), False)
    assert box.command("unblock", ["sk-a"], incident, "slack:U1", now=4.0).done == ["sk-a"]


def test_a_resume_click_on_an_incident_past_its_memory_still_resumes_its_keys() -> None:
    """A month's budget stop: its incident is forgotten after REMEMBER_S, the pause is not
    (``Outbox.blocked``); the message's button still resumes the key, once."""
    from spendbrake.actions._outbox import REMEMBER_S

    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    drain(box, "gateway")
    drain(box, "slack")
    later = 2.0 + REMEMBER_S
    box.prune(later)
    incident = alert().id
    assert incident not in box.incidents and box.blocked == {"sk-a": incident}
    assert box.command("unblock", ["sk-a"], incident, "slack:U1", now=later).queued == ["sk-a"]
    assert drain(box, "gateway") == ["unblock:sk-a"]
    assert box.blocked == {}
    assert box.command("unblock", ["sk-a"], incident, "slack:U1", now=later + 1).refused == ["sk-a"]


def test_the_done_line_of_a_hard_stop_on_a_thousand_keys_fits_its_block() -> None:
    """Every key was listed: Slack's block cut the line mid-name at 3,000 characters, and
    what came after the list (a refusal, the critical keys) was lost."""
    keys = tuple(f"sk-batch-{i:04d}" for i in range(1000))
    box = Outbox()
    box.accept(alert(targets=keys), now=1.0, keys=KEYS)
    drain(box, "gateway")
    incident = box.incidents[alert().id]
    line = outcome_line(incident, alert(targets=keys, critical_keys=["sk-prod"]), False)
    assert line.startswith("Paused 1000 key(s): sk-batch-0000, ") and len(line) < 600
    assert "and 990 more" in line and line.endswith("critical, alerted only: sk-prod")


def test_a_budget_resume_leaves_a_key_an_anomaly_still_holds_paused() -> None:
    """A looping key paused by its anomaly, then by the team's hard stop: the budget's
    period ends and it resumes the keys it stopped, but not the loop, whose anomaly's pause
    still holds (and whose incident would not pause it again: it counts it paused)."""
    box = Outbox()
    loop = alert(id="anomaly/api_key=sk-loop/1", targets=("sk-loop",))
    stop = alert(id="budget/search/1", kind="budget", budget="search", targets=("sk-loop", "sk-x"))
    resume = _next_period_resume(box, [loop, stop], ("sk-loop", "sk-x"))
    assert drain(box, "gateway") == ["unblock:sk-x"]
    assert box.blocked == {"sk-loop": "budget/search/1"}
    kept = box.audit[f"{resume.ref()}/unblock/sk-loop"]
    assert (kept.result, kept.detail) == ("skipped", f"still paused for {loop.id}")


def test_a_budget_resume_lets_go_of_its_own_stops_not_another_budgets() -> None:
    box = Outbox()
    team = alert(id="budget/search/1", kind="budget", budget="search", targets=("sk-a", "sk-b"))
    org = alert(id="budget/org/1", kind="budget", budget="org", targets=("sk-b",))
    _next_period_resume(box, [team, org], ("sk-a", "sk-b"))
    assert drain(box, "gateway") == ["unblock:sk-a"]  # sk-b: the org's stop still holds it


def test_a_budget_resume_lets_go_of_its_stop_after_a_burn_rate_alert_of_it() -> None:
    """The stop's incident then had a burn-rate alert as its latest record: its kind made
    the budget's own stop "another incident", and the resume left every key paused."""
    box = Outbox()
    stop = alert(id="budget/search/1", kind="budget", budget="search", targets=("sk-a", "sk-b"))
    burn = alert(id="budget/search/1", seq=1, kind="burn_rate", budget="search", action="alert",
                 targets=())  # fmt: skip
    _next_period_resume(box, [stop, burn], ("sk-a", "sk-b"))
    assert drain(box, "gateway") == ["unblock:sk-a", "unblock:sk-b"]


def _next_period_resume(box: Outbox, pauses: list[Alert], targets: tuple[str, ...]) -> Alert:
    """Each of ``pauses`` done, then the "search" budget's next period resuming ``targets``:
    an incident of its own (``budget/<name>/<period start>``)."""
    for record in pauses:
        box.accept(record, now=1.0, keys=KEYS)
        drain(box, "gateway")
    resume = alert(
        id="budget/search/2", kind="budget", budget="search", action="resume", targets=targets
    )
    box.accept(resume, now=2.0, keys=KEYS)
    return resume


def test_a_stop_that_fires_again_after_a_reload_lifted_it_pauses_again() -> None:
    """A budget raised above its spend by a reload resumes its stop's keys in an incident of
    its own (``budget/<name>/lifted/<t>``); lowered again, the stop fires again in its first
    incident, which still listed the keys paused: it skipped them, Slack said "Paused 2
    key(s)", and the gateway blocked nothing. A resume now settles the key in every
    incident that listed it paused, each thread and parent told."""
    box = Outbox()
    stop = alert(id="budget/ops/1", kind="budget", budget="ops", targets=("sk-a", "sk-b"))
    box.accept(stop, now=1.0, keys=KEYS)
    assert drain(box, "gateway") == ["block:sk-a", "block:sk-b"]
    drain(box, "slack")
    lift = alert(
        id="budget/ops/lifted/5",
        kind="budget",
        budget="ops",
        action="resume",
        targets=("sk-a", "sk-b"),
        severity="info",
    )
    box.accept(lift, now=2.0, keys=KEYS)
    assert drain(box, "gateway") == ["unblock:sk-a", "unblock:sk-b"]
    first = box.incidents[stop.id]
    assert (first.paused, first.resumed) == ([], ["sk-a", "sk-b"])
    told = [(t.incident, t.op, t.target) for t in box.lanes["slack"]]
    for key in ("sk-a", "sk-b"):
        assert (stop.id, "reply", key) in told and (stop.id, "update", key) in told
    drain(box, "slack")
    again = alert(seq=1, id=stop.id, kind="budget", budget="ops", targets=("sk-a", "sk-b"))
    box.accept(again, now=3.0, keys=KEYS)
    assert drain(box, "gateway") == ["block:sk-a", "block:sk-b"]
    assert (first.paused, first.resumed) == (["sk-a", "sk-b"], [])


def test_a_budget_threshold_of_info_severity_is_posted_and_its_escalations_thread() -> None:
    """The example's ``alert_at: [0.5, ...]``: the 50 % alert is ``info``, which was the
    digest's alone (off in the example), so it was told nowhere; and with no parent
    message, the 80 % and 100 % alerts each became a message of their own, and every
    update of the parent (a failing gateway's "pause by hand") went nowhere."""
    box = Outbox()
    fifty = alert(
        id="budget/ops/1",
        kind="budget",
        budget="ops",
        action="alert",
        targets=(),
        severity="info",
        threshold=0.5,
    )
    box.accept(fifty, now=1.0, keys=KEYS)
    assert [(t.op, t.incident) for t in box.lanes["slack"]] == [("post", fifty.id)]
    # A trend stays the digest's; an escalation of its incident is the incident's first
    # message, the parent of what follows.
    box = Outbox()
    trend = alert(
        id="trend/team=search/1", kind="trend", action="alert", targets=(), severity="info"
    )
    box.accept(trend, now=1.0, keys=KEYS)
    assert not box.lanes["slack"]
    worse = alert(seq=1, id=trend.id, kind="trend", action="alert", targets=(), severity="warning")
    box.accept(worse, now=2.0, keys=KEYS)
    assert [t.op for t in box.lanes["slack"]] == ["post"]
    drain(box, "slack")
    worst = alert(seq=2, id=trend.id, kind="trend", action="alert", targets=(), severity="critical")
    box.accept(worst, now=3.0, keys=KEYS)
    assert [t.op for t in box.lanes["slack"]] == ["reply", "update"]


def test_a_stop_on_a_budget_of_a_model_says_why_no_key_was_paused() -> None:
    box = Outbox()
    stop = alert(id="budget/gpt/1", kind="budget", targets=(), scope={"model": "gpt-4o"})
    box.accept(stop, now=1.0, keys=KEYS)
    incident = box.incidents[stop.id]
    line = outcome_line(incident, incident.alert, dry_run=False)
    assert line == "Alert only: keys are not known by model"


def test_a_notice_about_the_config_says_there_is_nothing_to_pause() -> None:
    """An unpriced model's notice said "Alert only: no pause policy matches this scope", as
    if a pause policy for the model were missing."""
    from spendbrake.streamer._processor import unpriced_model_alert

    box = Outbox()
    notice = unpriced_model_alert("openai", "gpt-9", 1790812800, daily=True)
    box.accept(notice, now=1.0, keys=KEYS)
    incident = box.incidents[notice.id]
    line = outcome_line(incident, incident.alert, dry_run=False)
    assert line == "Nothing to pause: a notice about SpendBrake's own config"


def test_a_budget_threshold_says_a_budget_pauses_at_its_hard_stop() -> None:
    """An 80 % alert (or a projected overrun, a burn rate) on a team with a critical key said "Alert only: critical keys are never
    paused (...)", one without "no pause policy matches this scope": both read as a pause
    refused or missing, where a budget pauses nothing before its hard stop."""
    box = Outbox()
    cases = [("budget", []), ("budget", ["support-bot"]), ("projection", []), ("burn_rate", [])]
    for n, (kind, critical) in enumerate(cases):
        threshold = alert(
            id=f"budget/support/{n}",
            kind=kind,
            action="alert",
            targets=(),
            scope={"team": "support"},
            critical_keys=critical,
        )
        box.accept(threshold, now=1.0, keys=KEYS)
        incident = box.incidents[threshold.id]
        line = outcome_line(incident, incident.alert, dry_run=False)
        assert line == "Alert only: a budget pauses keys at its hard stop, not before", line


def test_an_older_record_resent_late_leaves_the_incident_at_its_newer_state() -> None:
    """The detect stage sends again, at its checkpoint, a record whose first send failed,
    after a newer one of the same incident went through: the incident took the older
    record as its state, and its parent message went back to the warning it had escalated
    from. Its targets still count (paused once); its line joins the history."""
    box = Outbox()
    critical = alert(seq=1, action="pause", targets=("sk-a",), severity="critical")
    warning = alert(seq=0, action="alert", targets=(), severity="warning")
    assert box.accept(critical, now=1.0, keys=KEYS)
    assert box.accept(warning, now=2.0, keys=KEYS)
    incident = box.incidents[critical.id]
    assert (incident.alert.seq, incident.alert.severity) == (1, "critical")
    assert [h.split(" ")[0] for h in incident.history] == ["#1", "#0"]
    assert drain(box, "gateway") == ["block:sk-a"]


def test_a_pause_read_long_after_its_anomaly_is_history_and_not_performed() -> None:
    """A new deployment reading the topic's retention, or a stage back from a long outage,
    read runaways of days ago and paused their keys now; a pause read more than
    ``pause_max_age_s`` after its detection is audited as skipped and Slack says so."""
    detected = 1_796_000_000.0
    when = {"detected_at": format_ts(detected)}
    box = Outbox(pause_max_age_s=6 * 3600)
    assert box.accept(alert(**when), now=detected + 7 * 3600, keys=KEYS)
    assert list(box.lanes["gateway"]) == []
    incident = box.incidents["anomaly/api_key=sk-a/1"]
    assert incident.late == ["sk-a", "sk-b"] and incident.alert.action == "alert"
    skipped = [r for r in box.audit.values() if r.result == "skipped"]
    assert sorted(r.target for r in skipped) == ["sk-a", "sk-b"]
    assert "7.0 h after it was detected" in skipped[0].detail
    assert "NOT paused: sk-a, sk-b" in outcome_line(incident, incident.alert, dry_run=False)
    assert box.history_skip(alert(**when), detected + 7 * 3600) == "7 h old"  # the log's words

    # Read within the bound: paused. A budget's hard stop read late: paused (its period,
    # not its age, says whether it holds). Without a bound: always paused.
    fresh = Outbox(pause_max_age_s=6 * 3600)
    fresh.accept(alert(**when), now=detected + 5 * 3600, keys=KEYS)
    budget = alert(id="budget/s/1", kind="budget", **when)
    fresh.accept(budget, now=detected + 30 * 86400, keys=KEYS)
    unbounded = Outbox()
    unbounded.accept(alert(id="anomaly/x/1", **when), now=detected + 30 * 86400, keys=KEYS)
    for box in (fresh, unbounded):
        assert all(t.op == "block" for t in box.lanes["gateway"]) and box.lanes["gateway"]
    assert {t.incident for t in fresh.lanes["gateway"]} == {"anomaly/api_key=sk-a/1", "budget/s/1"}


def test_a_hard_stop_read_after_its_period_ended_pauses_nothing_and_its_resume_is_quiet() -> None:
    """A new deployment reading days of history read each past day's hard stop and, a moment
    later, the next day's resume: it paused the keys now and unpaused them again, with two
    Slack messages a day. A stop read after its period ended is history: audited as
    skipped, Slack says so; its resume has nothing to undo and posts nothing."""
    day = 1_796_000_000.0 - 1_796_000_000.0 % 86400
    period = {"window_start": format_ts(day), "window_end": format_ts(day + 86400)}
    stop = alert(id=f"budget/daily/{int(day)}", kind="budget", budget="daily", **period)
    resume = alert(
        action="resume", id=f"budget/daily/{int(day + 86400)}", kind="budget", budget="daily"
    )
    box = Outbox(slack_enabled=True, pause_max_age_s=6 * 3600)
    assert box.accept(stop, now=day + 3 * 86400, keys=KEYS)
    assert list(box.lanes["gateway"]) == []
    incident = box.incidents[stop.id]
    assert incident.late == ["sk-a", "sk-b"]
    said = outcome_line(incident, incident.alert, dry_run=False)
    assert said.startswith("NOT paused: sk-a, sk-b: the budget's period had ended"), said
    # auto_resume: false would have kept them paused: Slack says they were not.
    assert "left running" in said and "auto_resume: false would have kept them paused" in said
    assert box.history_skip(stop, day + 3 * 86400) == "its period had ended"  # the log's words
    assert drain(box, "slack") == ["post:"]
    assert box.accept(resume, now=day + 3 * 86400 + 1, keys=KEYS)
    assert list(box.lanes["gateway"]) == [] and list(box.lanes["slack"]) == []
    assert not [r for r in box.audit.values() if r.result == "refused"]

    # Read while its period runs: paused, and resumed by the next period's record.
    live = Outbox(slack_enabled=True, pause_max_age_s=6 * 3600)
    live.accept(stop, now=day + 80000, keys=KEYS)
    assert drain(live, "gateway") == ["block:sk-a", "block:sk-b"]
    live.accept(resume, now=day + 86400 + 60, keys=KEYS)
    assert drain(live, "gateway") == ["unblock:sk-a", "unblock:sk-b"]
    # Without a bound (the demo's null), as before: paused whenever it is read.
    unbounded = Outbox()
    unbounded.accept(stop, now=day + 3 * 86400, keys=KEYS)
    assert drain(unbounded, "gateway") == ["block:sk-a", "block:sk-b"]


def test_a_burn_rate_pause_read_long_after_its_detection_is_history_too() -> None:
    """A pause policy acts on a budget's burn rate as on an anomaly: a new deployment read a
    month's burns of weeks ago and paused the keys now. Read past ``pause_max_age_s``, it
    is skipped like an anomaly's."""
    detected = 1_796_000_000.0
    burn = alert(id="budget/monthly/1", kind="burn_rate", detected_at=format_ts(detected))
    box = Outbox(pause_max_age_s=6 * 3600)
    assert box.accept(burn, now=detected + 20 * 86400, keys=KEYS)
    assert list(box.lanes["gateway"]) == []
    assert box.incidents[burn.id].late == ["sk-a", "sk-b"]
    fresh = Outbox(pause_max_age_s=6 * 3600)
    fresh.accept(burn, now=detected + 600, keys=KEYS)
    assert drain(fresh, "gateway") == ["block:sk-a", "block:sk-b"]


def test_history_held_for_one_summary_message_and_told_before_live_alerts() -> None:
    """``slack.history: summary``: a new deployment reading weeks of alerts posted one
    message each. Alerts caught long before they are read are audited as skipped and told
    in one summary once the reading goes quiet, or before the first live alert; a budget
    threshold of a running period and a pause performed now still post."""
    day = 86400.0
    now = 1_796_000_000.0  # 2026-11-30
    box = Outbox(history="summary", history_after_s=3600.0, pause_max_age_s=6 * 3600.0)
    old = {"action": "alert", "targets": (), "detected_at": format_ts(now - 5 * day)}
    for n in range(3):
        scope = {"api_key": f"sk-k{n}"}
        assert box.accept(alert(id=f"anomaly/{n}", scope=scope, **old), now=now, keys=KEYS)
    # A pause read as history is not performed: listed in the summary, not posted alone.
    late = alert(id="anomaly/late", targets=("sk-loop",), detected_at=format_ts(now - 2 * day))
    assert box.accept(late, now=now + 1, keys=KEYS)
    # A follow-up of a held incident is held too.
    assert box.accept(alert(id="anomaly/0", seq=1, **old), now=now + 2, keys=KEYS)
    # A budget threshold of a month still running is true now: posted (marked as history).
    budget = alert(
        id="budget/monthly/80",
        kind="budget",
        budget="monthly",
        threshold=0.8,
        window_end=format_ts(now + 10 * day),
        **old,
    )
    assert box.accept(budget, now=now + 3, keys=KEYS)
    assert [t.alert.id for t in box.lanes["slack"]] == ["budget/monthly/80"]
    assert not box.lanes["gateway"]
    held = [r for r in box.audit.values() if r.detail.startswith("history: held")]
    assert len(held) == 5
    assert not box.flush_history(now + 200)  # still reading history
    assert box.flush_history(now + 3 + 300)  # quiet for five minutes: one summary
    summary = box.lanes["slack"][-1].alert
    assert summary.kind == "history" and summary.severity == "warning"
    assert "read 4 alert(s) and 1 follow-up(s) caught longer than" in summary.reason
    assert "By kind: anomaly 4. Scopes (4): api_key=sk-k0" in summary.reason, summary.reason
    assert "NOT paused as history (pause by hand if still running): sk-l" in summary.reason
    assert box.held is None and not box.flush_history(now + day)
    # Held again, then a live alert: the summary goes first, then the live alert's post.
    assert box.accept(alert(id="anomaly/9", **old), now=now + 400, keys=KEYS)
    live = alert(id="anomaly/live", action="alert", targets=(), detected_at=format_ts(now + 500))
    assert box.accept(live, now=now + 501, keys=KEYS)
    assert [t.alert.kind for t in box.lanes["slack"]][-2:] == ["history", "anomaly"]
    assert box.lanes["slack"][-1].alert.id == "anomaly/live"
    # The held summary survives a restart (the outbox file), and "post" posts each as before.
    box.accept(alert(id="anomaly/10", **old), now=now + 600, keys=KEYS)
    assert load_outbox(dump_outbox(box)).held == box.held
    posting = Outbox(history="post", history_after_s=3600.0)
    assert posting.accept(alert(id="anomaly/0", **old), now=now, keys=KEYS)
    assert [t.op for t in posting.lanes["slack"]] == ["post"]


def test_history_follow_ups_of_an_incident_with_no_message_are_held_too() -> None:
    """A new deployment's daily budget: a past day's hard stop read as history (held), the
    next day's first record the resume of that stop (nothing to resume: skipped, no
    message), then that day's burn-rate alert, a follow-up of it. It was posted, one
    message per past day, since its incident had no message to thread under."""
    day = 86400.0
    now = 1_796_000_000.0
    box = Outbox(history="summary", history_after_s=3600.0, pause_max_age_s=6 * 3600.0)
    d1, d2 = now - 5 * day, now - 4 * day

    def budget(period: float, seq: int, **fields: Any) -> Alert:
        return alert(
            id=f"budget/daily/{int(period)}",
            seq=seq,
            kind="budget",
            budget="daily",
            window_end=format_ts(period + day),
            detected_at=format_ts(period + 3 * 3600),
            targets=("sk-batch",),
            **fields,
        )

    assert box.accept(budget(d1, 0, threshold=1.5), now=now, keys=KEYS)  # the stop: history
    assert box.accept(budget(d2, 0, action="resume"), now=now, keys=KEYS)
    burn = budget(d2, 1, threshold=14.4)
    assert box.accept(msgspec.structs.replace(burn, kind="burn_rate"), now=now, keys=KEYS)
    assert not box.lanes["slack"] and not box.lanes["gateway"]
    assert box.flush_history(now, force=True)
    summary = box.lanes["slack"][-1].alert.reason
    assert "read 1 alert(s) and 1 follow-up(s)" in summary, summary


def test_a_resumed_pause_is_not_shown_as_pausing_again() -> None:
    """Walk 2026-12-07: after a "Resume key" click on a paused key, the thread and parent
    said "Pausing KEY …; Resumed KEY", as if the pause were still underway."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    drain(box, "slack")
    drain(box, "gateway")
    incident = alert().id
    assert box.command("unblock", ["sk-a"], incident, "slack:U1", now=5.0).queued == ["sk-a"]
    drain(box, "gateway")
    line = outcome_line(box.incidents[incident], box.incidents[incident].alert, False)
    assert line == "Resumed sk-a"
    # The incident's next hour pauses it again: "Pausing" while the block is underway,
    # then "Paused", never "Resumed" for a key paused now.
    box.accept(alert(seq=1, targets=("sk-a",)), now=3600.0, keys=KEYS)
    line = outcome_line(box.incidents[incident], box.incidents[incident].alert, False)
    assert line == "Pausing sk-a …"
    drain(box, "gateway")
    line = outcome_line(box.incidents[incident], box.incidents[incident].alert, False)
    assert line == "Paused 1 key(s): sk-a"


def test_a_pause_again_queued_by_the_previous_release_lands_as_paused_only() -> None:
    """Walk 2026-12-07: an outbox saved mid-re-pause by the previous release still lists
    the key as resumed; once the block lands the Done line said "Paused 1 key(s): sk-a;
    Resumed sk-a"."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    drain(box, "gateway")
    incident = alert().id
    box.command("unblock", ["sk-a"], incident, "slack:U1", now=5.0)
    drain(box, "gateway")
    box.accept(alert(seq=1, targets=("sk-a",)), now=3600.0, keys=KEYS)
    box.incidents[incident].resumed.append("sk-a")  # as the previous release left it
    restored = load_outbox(dump_outbox(box))
    drain(restored, "gateway")
    line = outcome_line(restored.incidents[incident], restored.incidents[incident].alert, False)
    assert line == "Paused 1 key(s): sk-a"


def test_a_live_record_of_an_incident_told_as_history_is_a_message_of_its_own() -> None:
    """A new deployment catching up (``history: post``): a month's budget crossed 80 % two
    weeks ago, its hard stop today. The stop was a reply under "[history, 14 d old]", which
    notifies no one; a live anomaly on the same scope went into that thread too."""
    day = 86400.0
    now = 1_796_000_000.0
    box = Outbox(history="post", history_after_s=3600.0)

    def budget(seq: int, caught: float, **fields: Any) -> Alert:
        return alert(
            id="budget/monthly/1", seq=seq, kind="budget", budget="monthly",
            window_end=format_ts(now + 10 * day), detected_at=format_ts(caught), **fields,
        )  # fmt: skip

    old = budget(0, now - 14 * day, action="alert", targets=(), threshold=0.8)
    assert box.accept(old, now=now, keys=KEYS)
    assert box.accept(budget(1, now - 13 * day, action="alert", targets=()), now=now, keys=KEYS)
    assert [t.op for t in box.lanes["slack"]] == ["post", "reply", "update"]
    while (task := box.ready("slack", now)) is not None:
        box.finish(task, "ok", "delivered", now, ts="1.1", channel="C0SPEND")
    assert box.accept(budget(2, now - 60, threshold=1.2), now=now + 5, keys=KEYS)
    [stop] = box.lanes["slack"]
    assert stop.op == "post" and stop.alert.seq == 2
    box.finish(stop, "ok", "delivered", now + 6, ts="2.2", channel="C0SPEND")
    # Later records thread under the live message; a live anomaly on the same scope
    # within the cooldown too.
    assert box.accept(budget(3, now - 30, action="alert", targets=()), now=now + 7, keys=KEYS)
    reply = box.ready("slack", now + 7)
    assert reply is not None and reply.op == "reply"
    assert box.thread_of(reply).ts == "2.2"  # type: ignore[union-attr]
    # A history anomaly's scope: a live one on it within the cooldown is a message too.
    scope = {"api_key": "sk-x"}
    history = alert(id="anomaly/x/1", scope=scope, action="alert", targets=(),
                    detected_at=format_ts(now - 5 * day))  # fmt: skip
    live = alert(id="anomaly/x/2", scope=scope, action="alert", targets=(),
                 detected_at=format_ts(now))  # fmt: skip
    assert box.accept(history, now=now, keys=KEYS) and box.accept(live, now=now + 8, keys=KEYS)
    ops = [(t.incident, t.op) for t in box.lanes["slack"] if t.incident.startswith("anomaly/x")]
    assert ops == [("anomaly/x/1", "post"), ("anomaly/x/2", "post")]


def test_a_record_s_message_tells_its_own_outcome_not_the_incident_s_later_one() -> None:
    """Posts behind planning (a backlog, Slack 429s): a budget's 80 % reply, sent after its
    hard stop had paused a key, said "Paused 1 key(s)"; read after the period, its 100 %
    reply said "NOT paused: ... when this hard stop was read". The parent (updated) keeps
    the incident's whole state."""
    box = Outbox()

    def budget(seq: int, **fields: Any) -> Alert:
        fields.setdefault("action", "alert")
        fields.setdefault("targets", ())
        return alert(id="budget/b/1", seq=seq, kind="budget", budget="b", **fields)

    for record in (budget(0, threshold=0.8), budget(1, threshold=1.0)):
        assert box.accept(record, now=1.0, keys=KEYS)
    assert box.accept(budget(2, threshold=1.2, action="pause", targets=("sk-a",)), 1.0, KEYS)
    block = box.ready("gateway", 2.0)
    assert block is not None
    box.finish(block, "ok", "blocked", 2.0)
    incident = box.incidents["budget/b/1"]
    told = {
        (t.alert.seq, t.op): outcome_line(incident, t.alert, False, None, t.keys)
        for t in box.lanes["slack"]
    }
    only = "Alert only: a budget pauses keys at its hard stop, not before"
    assert told[(0, "post")] == told[(1, "reply")] == only, told
    assert told[(2, "reply")] == told[(2, "update")] == "Paused 1 key(s): sk-a"
    # Read after its period: the stop's keys NOT paused, said by the stop alone.
    late = Outbox(pause_max_age_s=3600.0)
    day, now = 86400.0, 1_796_000_000.0
    old = {"detected_at": format_ts(now - 9 * day), "window_end": format_ts(now - 8 * day)}
    for record in (budget(0, threshold=1.0, **old), budget(1, threshold=1.2, action="pause",
                                                        targets=("sk-a",), **old)):  # fmt: skip
        assert late.accept(record, now=now, keys=KEYS)
    incident = late.incidents["budget/b/1"]
    told = {
        (t.alert.seq, t.op): outcome_line(incident, t.alert, False, None, t.keys)
        for t in late.lanes["slack"]
    }
    assert told[(0, "post")] == only, told
    assert told[(1, "reply")].startswith("NOT paused: sk-a: the budget's period had ended")


def test_a_pause_refused_after_an_attempt_that_may_have_landed_is_undone() -> None:
    """The gateway applied a block but answered after the timeout, twice; a reload then made
    the key critical, and the third attempt was refused: audited "refused", the key left
    blocked. An earlier attempt may have landed: it is undone."""
    box = Outbox()
    box.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    block = box.ready("gateway", 2.0)
    assert block is not None
    for attempt in (1, 2):
        block.attempts = attempt
        block.unsure = True  # as the stage sets it from the gateway's outcome
        box.retry(block, "block key: no answer within 2s; it may have been applied", 0.0, 2.0)
    block.attempts = 3
    box.finish(block, "refused", "critical in the keys config", 3.0)
    undo = box.ready("gateway", 3.0)
    assert undo is not None and (undo.op, undo.target) == ("unblock", "sk-a")
    assert undo.source == "refused after an attempt that may have landed"
    box.finish(undo, "ok", "unblocked", 4.0)
    assert box.blocked == {} and box.incidents[undo.incident].resumed == ["sk-a"]
    # Refused after attempts that proved nothing was sent (connection refused): nothing to
    # undo, no call to the gateway.
    fresh = Outbox()
    fresh.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    first = fresh.ready("gateway", 2.0)
    assert first is not None
    first.attempts = 3
    fresh.finish(first, "refused", "critical in the keys config", 2.0)
    assert fresh.ready("gateway", 3.0) is None and fresh.blocked == {}
