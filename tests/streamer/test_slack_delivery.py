"""Slack delivery under rate limits and refusals: the action stage in this process, on the
embedded broker, with the real slack_sdk client against the fake Slack and httpx against
the fake LiteLLM.

A 429 proves nothing was posted (sent again, no lookup, after its Retry-After, most urgent
first); one incident whose messages keep failing holds only its own thread; a message
that may have gone out is looked for by channel id, also in a private channel; a refused
scope, channel or token keeps the messages until the app or the config is fixed (hot
reload); ``spendbrake resume`` is told in the incident's thread."""

from __future__ import annotations

import asyncio
import getpass
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake._config_loader import load_config
from spendbrake._reload import ConfigReloader
from spendbrake._resume import resume
from spendbrake.actions import build_payload, sign_request
from spendbrake.actions._interactive import (
    RESUME_ACTION_ID,
    SNOOZE_ACTION_ID,
    UNSNOOZE_ACTION_ID,
)
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.fakes.slack import FakeSlack
from spendbrake.stages import ActionStage, Worker, WorkerSettings
from tests.actions.test_slack_scopes import documented_scopes
from tests.kafka_helpers import read_topic
from tests.streamer.test_action_stage import MASTER, SIGNING, TOKEN, make_alert

#: The bot token scopes the README documents.
DOCUMENTED = documented_scopes()


class Harness:
    """One action stage with its topics, config file and state dir."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        topics: tuple[str, str],
        tmp: Path,
        slack: FakeSlack,
        gateway: FakeGateway,
    ) -> None:
        self.broker = broker
        self.slack = slack
        self.gateway = gateway
        self.alerts, self.actions = topics
        self.path = tmp / "spendbrake.yaml"
        self.state = tmp / "state"
        self.task: asyncio.Task[None] | None = None
        #: Serve the Slack buttons on this port (None: no buttons).
        self.buttons_port: int | None = None
        self.runbook_url: str | None = None
        self.allowed_users: list[str] | None = None
        #: More ``slack:`` settings, as YAML lines.
        self.slack_extra = ""

    def write(
        self, channel: str = "#ai-spend", retry_cap_s: float = 1.0, timeout_s: float = 1.0
    ) -> None:
        buttons = (
            f"  signing_secret: {SIGNING}\n  interactive_port: {self.buttons_port}\n"
            if self.buttons_port
            else ""
        )
        if self.runbook_url:
            buttons += f"  runbook_url: '{self.runbook_url}'\n"
        if self.allowed_users:
            buttons += f"  allowed_users: [{', '.join(self.allowed_users)}]\n"
        buttons += self.slack_extra
        self.path.write_text(
            f"kafka:\n  bootstrap_servers: {self.broker.bootstrap_servers}\n  topics:\n"
            f"    alerts: {self.alerts}\n    actions: {self.actions}\n"
            f"slack:\n  token: {TOKEN}\n  channel: '{channel}'\n  base_url: {self.slack.base_url}\n"
            f"  timeout_s: {timeout_s}\n  retry_cap_s: {retry_cap_s}\n{buttons}"
            f"gateway:\n  kind: litellm\n  url: {self.gateway.url}\n  master_key: {MASTER}\n"
            # The alerts are dated 2026-09: read today, their pauses would be history.
            "  timeout_s: 1.0\n  retry_cap_s: 1\n  pause_max_age_s: null\n"
            # The operator's word on who may be paused: the test keys are batch jobs.
            "keys:\n  rules:\n    - {api_key: support-prod, workload: critical}\n"
            '    - {api_key: "*", workload: batch}\n'
        )

    async def start(
        self, channel: str = "#ai-spend", retry_cap_s: float = 1.0, timeout_s: float = 1.0
    ) -> ActionStage:
        self.write(channel, retry_cap_s, timeout_s)
        self.worker = Worker(
            load_config(self.path, env={}), WorkerSettings(self.state, act_from="earliest"), ["act"]
        )
        self.stage = self.worker.act
        self.task = asyncio.create_task(self.worker.run())
        return self.stage

    async def stop(self) -> None:
        if self.task is not None:
            self.worker.stop()
            await asyncio.wait_for(self.task, 30)
            self.task = None

    async def publish(self, *alerts: dict[str, Any]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap_servers, enable_idempotence=False
        )
        await producer.start()
        try:
            for alert in alerts:
                key = f"{alert['id']}#{alert['seq']}".encode()
                await producer.send_and_wait(self.alerts, orjson.dumps(alert), key=key, partition=0)
        finally:
            await producer.stop()

    async def audit(self) -> dict[str, dict[str, Any]]:
        records = await read_topic(
            self.broker.bootstrap_servers, self.actions, expect=10**9, timeout_s=1.0
        )
        return {k.decode(): orjson.loads(v) for _, k, v in records if k and v}

    async def click(self, action_id: str, value: dict[str, Any], user: str) -> int:
        """A signed button click as Slack sends it, answered through the fake's
        response_url; the HTTP status."""
        body = build_payload(action_id, value, user, response_url=self.slack.response_url)
        headers = {
            **sign_request(SIGNING, body, int(time.time())),
            "content-type": "application/x-www-form-urlencoded",
        }
        url = f"http://127.0.0.1:{self.buttons_port}/slack/actions"
        async with httpx.AsyncClient(timeout=5.0) as client:
            return (await client.post(url, content=body, headers=headers)).status_code

    def sample(self, name: str, **labels: str) -> float:
        value = self.stage.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def alert_only(key: str, severity: str, team: str) -> dict[str, Any]:
    return make_alert(key, action="alert", team=team, severity=severity)


def keys_posted(slack: FakeSlack) -> Counter[str]:
    """Each message's dedupe key (from its metadata), counted: exactly once is all 1s."""
    return Counter(
        (m.get("metadata") or {}).get("event_payload", {}).get("dedupe_key") for m in slack.messages
    )


def text_of(message: dict[str, Any]) -> str:
    return orjson.dumps([message.get("text"), message.get("blocks")]).decode()


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSlack, FakeGateway]]:
    with (
        FakeSlack(token=TOKEN, scopes=DOCUMENTED) as slack,
        FakeGateway(master_key=MASTER, strict_key_format=False) as gateway,
    ):
        yield slack, gateway


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> tuple[str, str]:
    """Fresh alerts (two partitions) and actions topics."""
    return make_topic("alerts", 2), make_topic("actions", 1)


@pytest.fixture
async def harness(
    broker: EmbeddedBroker,
    topics: tuple[str, str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> AsyncIterator[Harness]:
    h = Harness(broker, topics, tmp_path, *fakes)
    try:
        yield h
    finally:
        await h.stop()


async def test_429s_and_503s_deliver_every_message_and_the_block_once_critical_first(
    harness: Harness,
) -> None:
    slack, gateway = harness.slack, harness.gateway
    slack.fail_with(429, retry_after=1, times=3)
    gateway.fail_with(503, times=5)
    batch, critical = "nightly-batch", "support-prod"
    pause = make_alert(batch)  # severity critical
    alerts = [
        alert_only("growth-digest", "warning", "growth"),
        alert_only("ops-report", "warning", "ops"),
        pause,
        alert_only(critical, "critical", "support"),
    ]
    await harness.publish(*alerts)  # one batch: the stage chooses the order
    stage = await harness.start()
    assert await until(lambda: gateway.is_blocked(batch))
    # Every parent, the pause's "Paused" reply in its thread, and the parent's updates.
    assert await until(
        lambda: len(slack.parents()) == 4 and stage.pending("gateway") + stage.pending("slack") == 0
    )
    parent = next(m for m in slack.parents() if batch in text_of(m))
    assert "Paused" in "".join(map(text_of, slack.thread(parent["ts"])))
    await asyncio.sleep(2.0)  # anything sent twice would arrive by now
    await harness.stop()

    ids = {a["id"].split("=")[1].split("/")[0]: a["id"] for a in alerts}
    expected = {f"{i}#0/post" for i in ids.values()} | {f"{pause['id']}#0/block-done/reply"}
    assert keys_posted(slack) == dict.fromkeys(expected, 1), keys_posted(slack)
    # The parent is edited in place, to say at last that it is paused (an edit saying the
    # gateway is failing comes at the third 503 in a row). An edit that would set what
    # the parent shows is skipped: none when the post went out after the pause landed.
    assert len(slack.updates) <= 2 and {u["ts"] for u in slack.updates} <= {parent["ts"]}
    assert "Paused" in text_of(parent)  # the fake keeps the latest content
    edits = list(map(text_of, slack.updates))
    assert all(a != b for a, b in itertools.pairwise(edits)), edits
    # A 429 proves nothing was posted: sent again without looking anything up.
    assert not [c for c in slack.calls if c.startswith("conversations.")], slack.calls
    assert [status for _, status, _ in slack.answers].count(429) == 3
    # Critical first: both critical alerts were tried before the two warnings (two at a
    # time: the last critical retry may finish after a warning's first try).
    audit = await harness.audit()
    first_try = {
        next(k for k in ids if k in r["alert"]): r["requested_at"]
        for r in audit.values()
        if r["action"] == "post"
    }
    assert max(first_try[batch], first_try[critical]) < min(
        first_try["growth-digest"], first_try["ops-report"]
    ), first_try
    # The block: five 503s, then applied once.
    blocks = [c for c in gateway.calls if c["path"].endswith("/key/block")]
    assert [c["status"] for c in blocks] == [503] * 5 + [200]
    assert gateway.block_count(batch).changed == 1
    skipped = {k: r["detail"] for k, r in audit.items() if r["result"] == "skipped"}
    assert set(skipped.values()) <= {"the parent already shows this"}, audit
    assert {r["result"] for r in audit.values()} <= {"ok", "skipped"}, audit


async def test_one_incident_that_keeps_failing_holds_only_its_own_thread(
    harness: Harness,
) -> None:
    slack = harness.slack
    # Every message about this key fails (a 5xx with no body: not posted).
    slack.fail_with(500, times=None, match="stuck-key")
    stuck = alert_only("stuck-key", "critical", "research")
    others = [alert_only(f"key-{i}", "warning", f"team-{i}") for i in range(3)]
    await harness.publish(stuck, *others)
    await harness.start()

    # The others go out while the stuck one, ahead of them, keeps being retried.
    def refused() -> int:
        return [status for _, status, _ in slack.answers].count(500)

    assert await until(lambda: len(slack.parents()) == 3 and refused() >= 2), slack.answers
    assert not any("stuck-key" in text_of(m) for m in slack.messages)
    slack.clear_faults()
    assert await until(lambda: len(slack.parents()) == 4)
    await asyncio.sleep(1.0)
    assert set(keys_posted(slack).values()) == {1} and len(slack.messages) == 4


async def test_an_unsure_post_in_a_private_channel_is_found_not_posted_again(
    broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path
) -> None:
    with (
        FakeSlack(token=TOKEN, private=True, scopes=DOCUMENTED) as slack,
        FakeGateway(master_key=MASTER) as gateway,
    ):
        h = Harness(broker, topics, tmp_path, slack, gateway)
        try:
            await h.publish(alert_only("first-key", "warning", "a"))
            await h.start()
            assert await until(lambda: len(slack.messages) == 1)  # learns the channel's id
            slack.hang(3.0)  # recorded, answered after the 1 s timeout: did it post?
            slack.fail_with(500, error="fatal_error", apply=True)  # and again, maybe
            await h.publish(alert_only("second-key", "critical", "b"))
            assert await until(lambda: "conversations.history" in slack.calls)
            await asyncio.sleep(1.5)
        finally:
            await h.stop()
        assert len(slack.messages) == 2 and set(keys_posted(slack).values()) == {1}
        assert not [e for _, _, e in slack.answers if e == "missing_scope"]
        assert h.sample("spendbrake_slack_unchecked_posts_total", reason="groups:history") == 0


async def test_without_the_history_scope_a_maybe_posted_alert_is_posted_again_not_lost(
    broker: EmbeddedBroker,
    topics: tuple[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The scopes documented before: no groups:history, so no look in a private channel.
    with (
        FakeSlack(token=TOKEN, private=True, scopes={"chat:write", "channels:history"}) as slack,
        FakeGateway(master_key=MASTER) as gateway,
    ):
        h = Harness(broker, topics, tmp_path, slack, gateway)
        try:
            await h.publish(alert_only("first-key", "warning", "a"))
            await h.start()
            assert await until(lambda: len(slack.messages) == 1)
            slack.hang(3.0)
            await h.publish(alert_only("second-key", "critical", "b"))
            assert await until(lambda: len(slack.messages) == 3)
            await asyncio.sleep(1.0)
            unchecked = h.sample("spendbrake_slack_unchecked_posts_total", reason="groups:history")
        finally:
            await h.stop()
    assert unchecked == 1
    assert keys_posted(slack).most_common(1)[0][1] == 2  # a visible duplicate, nothing lost
    assert "groups:history" in caplog.text


@pytest.fixture
async def unscoped(
    broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path
) -> AsyncIterator[Harness]:
    """A harness whose Slack app lacks ``chat:write``: every message is kept, none posted."""
    with (
        FakeSlack(token=TOKEN, scopes={"channels:history"}) as slack,
        FakeGateway(master_key=MASTER) as gateway,
    ):
        h = Harness(broker, topics, tmp_path, slack, gateway)
        try:
            yield h
        finally:
            await h.stop()


async def test_a_missing_scope_keeps_the_alerts_until_the_app_has_it(
    unscoped: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h, slack = unscoped, unscoped.slack
    await h.publish(*(alert_only(f"key-{i}", "critical", f"t{i}") for i in range(3)))
    await h.start()
    name = "spendbrake_slack_config_errors_total"
    labels = {"error": "missing_scope", "needed": "chat:write"}
    assert await until(lambda: h.sample(name, **labels) >= 2)  # probed, not spammed
    assert h.stage.pending("slack") == 3
    slack.grant("chat:write")  # the app reinstalled with the scope: no reload needed
    assert await until(lambda: len(slack.messages) == 3)
    await asyncio.sleep(1.0)
    audit = await h.audit()
    await h.stop()
    assert set(keys_posted(slack).values()) == {1}
    assert not [r for r in audit.values() if r["result"] == "failed"], audit
    lines = [r for r in caplog.records if "missing_scope chat:write" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR, caplog.text


async def test_a_stop_with_effects_pending_says_how_many_wait_for_the_next_start(
    unscoped: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM during a Slack outage: "worker stopped" said nothing of the messages kept."""
    caplog.set_level(logging.INFO, logger="spendbrake")
    h = unscoped
    await h.publish(*(alert_only(f"key-{i}", "critical", f"t{i}") for i in range(2)))
    await h.start()
    assert await until(lambda: h.stage.pending("slack") == 2)
    await h.stop()
    said = [r.getMessage() for r in caplog.records if "action stage stopped" in r.getMessage()]
    assert said == [
        "action stage stopped with 2 slack effect(s) pending (saved; done at the next start)"
    ], said


async def test_a_wrong_channel_keeps_the_alerts_until_a_config_reload_fixes_it(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    slack = harness.slack
    await harness.publish(alert_only("key-a", "critical", "a"), make_alert("batch-b"))
    # A long probe interval: what delivers below is the reload, not a probe.
    stage = await harness.start(channel="#wrong-channel", retry_cap_s=600)
    name = "spendbrake_slack_config_errors_total"
    labels = {"error": "channel_not_found", "needed": "#wrong-channel"}
    assert await until(lambda: harness.sample(name, **labels) >= 1)
    assert await until(lambda: harness.gateway.is_blocked("batch-b"))  # the gateway is not held
    assert slack.messages == [] and stage.pending("slack") >= 2
    assert "invite the bot to #wrong-channel" in caplog.text
    harness.write(channel="#ai-spend", retry_cap_s=600)
    reloader = ConfigReloader(harness.path, stage.config, [stage])
    reloader._digest = ""  # the running config came from the old text
    assert reloader.check().status == "applied"
    assert await until(lambda: len(slack.parents()) == 2 and not stage.pending("slack"))
    await asyncio.sleep(1.0)
    assert set(keys_posted(slack).values()) == {1} and len(slack.messages) == 3
    # The pause had landed: its parent, posted after, said so; no update to say it again.
    assert "Paused" in text_of(next(m for m in slack.parents() if "batch-b" in text_of(m)))
    assert not slack.updates


async def test_a_refusal_that_lands_after_the_reload_fixing_it_is_tried_again_at_once(
    harness: Harness,
) -> None:
    """A post refused under the old channel whose answer comes after the reload that fixed
    it (the call was in flight across the reload) is sent again now, under the new config:
    held, it would wait the probe interval (600 s here) for a fix already made. This is the
    race that made the test above flaky when the second post was still in flight."""
    slack = harness.slack
    await harness.publish(alert_only("key-a", "critical", "a"))
    slack.hang(2.0)  # the post is refused (wrong channel), and answered 2 s late
    stage = await harness.start(channel="#wrong-channel", retry_cap_s=600, timeout_s=10)
    assert await until(lambda: "chat.postMessage" in slack.calls)  # in flight
    harness.write(channel="#ai-spend", retry_cap_s=600, timeout_s=10)
    reloader = ConfigReloader(harness.path, stage.config, [stage])
    reloader._digest = ""  # the running config came from the old text
    assert reloader.check().status == "applied"
    assert await until(lambda: len(slack.messages) == 1)
    assert slack.answers[0] == ("chat.postMessage", 200, "channel_not_found")
    assert (
        harness.sample(
            "spendbrake_slack_config_errors_total",
            error="channel_not_found",
            needed="#wrong-channel",
        )
        == 0
    )  # the old config's refusal is not reported as the new one's


async def test_spendbrake_resume_is_told_in_the_incident_thread(harness: Harness) -> None:
    slack, gateway = harness.slack, harness.gateway
    key = "research-nightly"
    await harness.publish(make_alert(key))
    stage = await harness.start()
    assert await until(lambda: gateway.is_blocked(key) and len(slack.updates) == 1)
    parent = slack.parents()[0]
    said: list[str] = []
    assert await resume(stage.config, [("key", key)], "false alarm", said.append)
    assert not gateway.is_blocked(key)

    def resumed() -> list[dict[str, Any]]:
        return [m for m in slack.thread(parent["ts"]) if "Resumed" in text_of(m)]

    assert await until(lambda: len(resumed()) == 1 and len(slack.updates) == 2)
    await asyncio.sleep(1.0)
    assert len(resumed()) == 1
    # Who did it, for the people reading the thread (the audit has it too).
    assert f"Requested by {getpass.getuser()} (`spendbrake resume`)" in text_of(resumed()[0])
    assert "Resumed" in text_of(slack.updates[-1]) and slack.updates[-1]["ts"] == parent["ts"]
    assert gateway.unblock_count(key).total == 1  # the stage did not unblock it again


async def test_a_resume_made_while_the_stage_was_down_is_read_before_its_pause_goes_out(
    harness: Harness,
) -> None:
    """A pause waiting on a gateway outage when the stage stopped; an operator resumed the
    key from a terminal meanwhile. At the restart the pause went out 1.4 s before that
    resume was read: the key was blocked again, then undone. The resume is read first."""
    gateway = harness.gateway
    key = "research-nightly"
    gateway.down()
    await harness.publish(make_alert(key))
    stage = await harness.start()
    assert await until(lambda: (t := stage.outbox.head("gateway")) is not None and t.attempts >= 1)
    await harness.stop()
    gateway.up()
    assert await resume(stage.config, [("key", key)], "false alarm", lambda _: None)
    await asyncio.sleep(1.5)  # past the pause's retry time (retry_cap_s 1): due at the start
    stage = await harness.start()
    assert await until(lambda: not stage.outbox.lanes["gateway"])
    await asyncio.sleep(1.0)
    assert gateway.block_count(key).total == 0  # never blocked again
    assert not gateway.is_blocked(key)
    audit = await harness.audit()
    skipped = [r for r in audit.values() if r["action"] == "block" and r["target"] == key]
    assert [r["result"] for r in skipped] == ["skipped"], audit


async def test_an_update_that_would_set_what_the_parent_shows_is_not_sent(
    harness: Harness,
) -> None:
    """Alert #1 of an incident plans a parent update, and so does its pause once settled;
    both rendered at their send, they set the same: chat.update (Tier 3) went out twice,
    identical. Here both wait in the outbox across a restart (Slack answering 429, the
    pause landed): the first goes out, the second is skipped and audited so; an update
    that changes the parent (the resume) still goes."""
    slack, gateway = harness.slack, harness.gateway
    key = "research-nightly"
    slack.fail_with(429, retry_after=1, times=None)
    await harness.publish(make_alert(key), make_alert(key, seq=1))
    stage = await harness.start()
    assert await until(lambda: gateway.is_blocked(key) and not stage.outbox.lanes["gateway"])
    await harness.stop()  # nothing delivered to Slack: every message waits in the outbox
    assert not slack.messages and not slack.updates
    slack.clear_faults()
    stage = await harness.start()
    assert await until(lambda: len(slack.parents()) == 1 and not stage.outbox.lanes["slack"])
    assert slack.calls.count("chat.update") == 1, slack.updates
    (update,) = slack.updates
    assert "Paused" in text_of(update) and "History:" in text_of(update)
    audit = await harness.audit()
    skipped = [r for r in audit.values() if r["action"] == "update" and r["result"] == "skipped"]
    assert [r["detail"] for r in skipped] == ["the parent already shows this"], audit
    said: list[str] = []
    assert await resume(stage.config, [("key", key)], "false alarm", said.append)
    assert await until(lambda: len(slack.updates) == 2)
    assert "Resumed" in text_of(slack.updates[-1])


async def test_an_audit_record_replaced_while_being_sent_is_sent_too(harness: Harness) -> None:
    stage = await harness.start()
    assert await until(lambda: stage.consumer is not None and bool(stage.consumer.assignment()))
    stage.outbox.note("task-1", "post", "retrying", "ratelimited", time.time())
    assert await until(lambda: "task-1" in stage._audit_sends, 10)
    # The task settles while its "retrying" record is on the wire.
    stage.outbox.note("task-1", "post", "ok", "delivered", time.time())
    assert await until(lambda: not stage.outbox.audit, 10)
    assert (await harness.audit())["task-1"]["result"] == "ok"


async def test_an_outbox_saved_by_the_previous_release_is_delivered_once(
    harness: Harness,
) -> None:
    """The stage migrates ``tests/actions/data/outbox_796aa9e.pkl`` (see test_outbox.py)
    to ``outbox.json`` and performs every pending effect once: A's reply and update, B's
    and C's posts, C's block and the thread news about it."""
    slack, gateway = harness.slack, harness.gateway
    (harness.state / "actions").mkdir(parents=True)
    old = Path(__file__).parents[1] / "actions" / "data" / "outbox_796aa9e.pkl"
    (harness.state / "actions" / "outbox.pkl").write_bytes(old.read_bytes())
    # Incident A's parent, posted before the upgrade: the fake's first message has its ts.
    seeded = httpx.post(
        f"{slack.base_url}chat.postMessage",
        json={"channel": "#ai-spend", "text": "A (posted by the old release)"},
        headers={"authorization": f"Bearer {TOKEN}"},
    ).json()
    assert seeded["ts"] == "1700000001.000000"
    await harness.start()
    assert await until(lambda: gateway.is_blocked("sk-c"))
    assert await until(lambda: len(slack.parents()) == 3 and len(slack.updates) == 2)
    await asyncio.sleep(1.0)
    await harness.stop()
    replies = Counter(m["thread_ts"] for m in slack.messages if m.get("thread_ts"))
    c_parent = next(m for m in slack.parents() if "sk-c" in text_of(m))
    assert replies == {"1700000001.000000": 1, c_parent["ts"]: 1}, slack.messages
    assert sorted(u["ts"] for u in slack.updates) == sorted(["1700000001.000000", c_parent["ts"]])
    assert gateway.block_count("sk-c").changed == 1
    assert set(keys_posted(slack).values()) == {1}
    # Migrated once: the plain file is the state now, the pickle kept beside it.
    actions = harness.state / "actions"
    assert (actions / "outbox.pkl.migrated").read_bytes() == old.read_bytes()
    assert not (actions / "outbox.pkl").exists() and (actions / "outbox.json").exists()


async def test_a_click_while_the_gateway_is_down_is_kept_and_the_clicker_told_why(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway refuses connections when the on-call clicks "Resume": the resume waits
    in the lane, a second click says why nothing happened yet (and queues nothing), and
    the key is resumed once, when the gateway is back."""
    caplog.set_level(logging.INFO, logger="spendbrake")
    slack, gateway = harness.slack, harness.gateway
    key = "research-nightly"
    alert = make_alert(key)
    harness.buttons_port = free_port()
    await harness.publish(alert)
    stage = await harness.start()
    assert await until(lambda: gateway.is_blocked(key) and len(slack.updates) == 1)
    gateway.down()
    value = {"alert": alert["id"], "targets": [key]}
    assert await harness.click(RESUME_ACTION_ID, value, "U1") == 200
    assert await until(lambda: len(slack.responses) == 1, 10)
    assert slack.responses[0]["text"].startswith("Resuming 1 key (research-nightly)")

    def tried() -> bool:
        head = stage.outbox.head("gateway")
        return head is not None and head.attempts >= 1 and head.last_error is not None

    assert await until(tried, 10)
    assert await harness.click(RESUME_ACTION_ID, value, "U2") == 200
    assert await until(lambda: len(slack.responses) == 2, 10)
    second = slack.responses[1]["text"]
    assert second.startswith("Already being resumed (an earlier click): 1 key (research-nightly)")
    assert "The gateway is failing right now (unblock key: ConnectError" in second, second
    gateway.up()
    assert await until(lambda: not gateway.is_blocked(key), 30)
    await asyncio.sleep(1.0)
    assert gateway.unblock_count(key).total == 1
    # The log says who asked (it did not), and when the gateway did it.
    said = [r.getMessage() for r in caplog.records]
    asked = f"resume asked by slack:U1 on {alert['id']}: unblocking {key}"
    again = f"resume asked by slack:U2 on {alert['id']}: already underway {key}"
    assert asked in said and again in said, said
    assert f"gateway unblock key {key}: unblock key: ok" in said, said


async def test_a_snooze_is_told_to_the_whole_channel(harness: Harness) -> None:
    """One on-call silencing a scope for an hour must not surprise the others: the answer
    is posted in the channel (``in_channel``), with when it ends."""
    slack = harness.slack
    alert = make_alert("research-nightly")
    harness.buttons_port = free_port()
    await harness.publish(alert)
    await harness.start()
    assert await until(lambda: len(slack.parents()) == 1)
    value = {"alert": alert["id"], "scope": alert["scope"]}
    assert await harness.click(SNOOZE_ACTION_ID, value, "U7") == 200
    assert await until(lambda: len(slack.responses) == 1, 10)
    [told] = slack.responses
    assert told["response_type"] == "in_channel"
    assert told["text"].startswith("Snoozed for 1 h by <@U7>: no new alert messages")


async def test_a_snooze_can_be_undone_from_its_notice_and_says_what_it_held_back(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A snooze clicked in error (or a scope that matters again) kept every on-call blind
    for the hour: nothing could lift it. The channel's notice now carries "Undo snooze";
    anyone's click lifts it, says how many alert messages it held back, and the next alert
    on the scope posts."""
    caplog.set_level(logging.INFO, logger="spendbrake")
    slack = harness.slack
    key = "support-prod"

    def alert_at(n: int) -> dict[str, Any]:
        return {**make_alert(key, action="alert"), "id": f"anomaly/api_key={key}/{n}"}

    harness.buttons_port = free_port()
    await harness.publish(alert_at(1))
    await harness.start()
    assert await until(lambda: len(slack.messages) == 1)
    scope = {"api_key": key}
    assert await harness.click(SNOOZE_ACTION_ID, {"alert": alert_at(1)["id"], "scope": scope}, "U7")
    assert await until(lambda: len(slack.responses) == 1, 10)
    [notice] = slack.responses
    assert notice["response_type"] == "in_channel"
    [button] = _actions(notice)[0]["elements"]
    assert button["action_id"] == UNSNOOZE_ACTION_ID
    undo = orjson.loads(button["value"])
    assert undo == {"alert": alert_at(1)["id"], "scope": scope}

    await harness.publish(alert_at(2))  # held back by the snooze

    async def held() -> bool:
        audit = (await harness.audit()).values()
        return any(r["detail"] == "scope snoozed" for r in audit)

    deadline = time.monotonic() + 20
    while not await held():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert len(slack.messages) == 1
    assert await harness.click(UNSNOOZE_ACTION_ID, undo, "U8") == 200
    assert await until(lambda: len(slack.responses) == 2, 10)
    lifted = slack.responses[1]
    assert lifted["response_type"] == "in_channel"
    assert lifted["text"].startswith(
        "Snooze lifted by <@U8>: alert messages for this scope post again. 1 alert message(s) "
        "were held back meanwhile"
    ), lifted["text"]
    await harness.publish(alert_at(3))
    assert await until(lambda: len(slack.messages) == 2, 10)  # the scope speaks again
    # The log says who did each (it named neither).
    assert f"scope api_key={key} snoozed by slack:U7 for 1 h" in caplog.text
    assert f"snooze of scope api_key={key} lifted by slack:U8; 1 alert message" in caplog.text
    assert await harness.click(UNSNOOZE_ACTION_ID, undo, "U8") == 200
    assert await until(lambda: len(slack.responses) == 3, 10)
    assert slack.responses[2]["response_type"] == "ephemeral"
    assert slack.responses[2]["text"].startswith("Nothing to undo: this scope is not snoozed")
    audit = [r for r in (await harness.audit()).values() if r["action"] == "unsnooze"]
    assert [(r["result"], r["detail"], r["source"]) for r in audit] == [
        ("ok", "snooze lifted; 1 alert message(s) were held back", "slack:U8")
    ]


async def test_history_summary_holds_old_alerts_across_a_restart_and_tells_them_once(
    harness: Harness,
) -> None:
    """``slack.history: summary``: alerts caught days before the stage reads them (a new
    deployment on the topic's retention) are one message, not one each; what was held
    survives a restart, and is told when the first live alert comes."""
    slack = harness.slack
    harness.slack_extra = "  history: summary\n"
    old = [
        {**make_alert(f"team-{n}-key", action="alert"), "id": f"anomaly/api_key=team-{n}/1"}
        for n in range(3)
    ]
    await harness.publish(*old[:2])
    await harness.start()
    audit_held = "history: held for one summary message (slack.history: summary)"

    async def held(n: int) -> bool:
        return sum(r["detail"] == audit_held for r in (await harness.audit()).values()) == n

    deadline = time.monotonic() + 30
    while not await held(2):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    await harness.stop()
    await harness.publish(old[2])
    await harness.start()
    deadline = time.monotonic() + 30
    while not await held(3):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert slack.messages == []
    live = {
        **make_alert("live-key", action="alert"),
        "id": "anomaly/api_key=live-key/2",
        "detected_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
    }
    await harness.publish(live)
    assert await until(lambda: len(slack.messages) == 2, 20)
    # A critical live alert is more urgent than the summary: either may come first.
    [summary] = [m for m in slack.messages if "Caught up on history" in m["text"]]
    [posted] = [m for m in slack.messages if "Caught up on history" not in m["text"]]
    assert summary["text"].startswith(":warning: Caught up on history"), summary["text"]
    assert "read 3 alert(s) caught longer than slack.history_after_s" in text_of(summary)
    assert "By kind: anomaly 3. Scopes (3)" in text_of(summary)
    assert "live-key" in text_of(posted) and not posted["text"].startswith("[history")
    await asyncio.sleep(1.0)
    await harness.stop()
    await harness.start()  # nothing held is told twice
    await asyncio.sleep(2.0)
    assert len(slack.messages) == 2


def _actions(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in message.get("blocks") or [] if b["type"] == "actions"]


async def test_buttons_only_when_served_and_the_runbook_link_survives_the_update(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """With no button endpoint configured, a pause's message carried "Resume" and "Snooze"
    buttons that nothing answered (Slack shows the clicker an error); the parent update
    that follows the pause dropped the runbook link."""
    slack = harness.slack
    harness.runbook_url = "https://wiki.example/runbooks#{kind}"
    await harness.publish(make_alert("research-nightly"))
    await harness.start()
    assert await until(lambda: len(slack.updates) == 1)
    [parent] = slack.parents()
    for message in (parent, slack.updates[0]):
        assert _actions(message) == [], text_of(message)
        assert "spendbrake resume research-nightly" in text_of(message)
        assert "<https://wiki.example/runbooks#anomaly|Runbook>" in text_of(message)
        # Caught in 2026-09, posted now: marked as history, in the notification text first.
        assert message["text"].startswith("[history, "), message["text"]
        assert "From history" in text_of(message)
    # The operator is told, once, how to have such history summed up instead.
    hints = [r for r in caplog.records if "slack.history: summary" in r.getMessage()]
    assert len(hints) == 1, caplog.text


async def test_a_button_of_too_many_keys_to_list_resumes_every_key_the_incident_paused(
    harness: Harness,
) -> None:
    slack, gateway = harness.slack, harness.gateway
    keys = [f"research-nightly-{i}" for i in range(3)]
    alert = {**make_alert(keys[0]), "targets": keys}
    harness.buttons_port = free_port()
    await harness.publish(alert)
    await harness.start()
    assert await until(lambda: all(gateway.is_blocked(k) for k in keys) and slack.updates)
    assert _actions(slack.updates[-1])  # served: the buttons are there
    assert await harness.click(RESUME_ACTION_ID, {"alert": alert["id"], "all": True}, "U1") == 200
    assert await until(lambda: not any(gateway.is_blocked(k) for k in keys))
    assert await until(lambda: len(slack.responses) == 1, 10)
    assert slack.responses[0]["text"].startswith("Resuming 3 keys (research-nightly-0, ")


async def test_only_allowed_users_clicks_count_when_the_config_names_them(
    harness: Harness,
) -> None:
    """``slack.allowed_users``: another member's click is refused, audited, counted and told
    who may; an allowed on-call's resumes the key."""
    slack, gateway = harness.slack, harness.gateway
    key = "research-nightly"
    alert = make_alert(key)
    harness.buttons_port = free_port()
    harness.allowed_users = ["U0ONCALL"]
    await harness.publish(alert)
    await harness.start()
    assert await until(lambda: gateway.is_blocked(key) and len(slack.updates) == 1)
    value = {"alert": alert["id"], "targets": [key]}
    assert await harness.click(RESUME_ACTION_ID, value, "U0INTERN") == 200
    assert (
        await harness.click(SNOOZE_ACTION_ID, {**value, "scope": alert["scope"]}, "U0INTERN") == 200
    )
    assert await until(lambda: len(slack.responses) == 2, 10)
    assert all(
        r["text"].startswith("Not done: <@U0INTERN> is not in slack.allowed_users")
        for r in slack.responses
    )
    await asyncio.sleep(1.0)
    assert gateway.is_blocked(key)
    assert harness.sample("spendbrake_refused_total", op="unblock", reason="not-allowed") == 1
    assert await harness.click(RESUME_ACTION_ID, value, "U0ONCALL") == 200
    assert await until(lambda: not gateway.is_blocked(key))
    audit = [r for r in (await harness.audit()).values() if r["source"] == "slack:U0INTERN"]
    assert sorted((r["action"], r["result"], r["detail"]) for r in audit) == [
        ("snooze", "refused", "not in slack.allowed_users"),
        ("unblock", "refused", "not in slack.allowed_users"),
    ]


async def test_a_click_on_an_alert_posted_before_a_restart_resumes_its_key(
    harness: Harness,
) -> None:
    """The incident and its pause live in the saved outbox: the worker restarted between
    the alert and the click, and the button still works (once)."""
    slack, gateway = harness.slack, harness.gateway
    key = "research-nightly"
    alert = make_alert(key)
    harness.buttons_port = free_port()
    await harness.publish(alert)
    await harness.start()
    assert await until(lambda: gateway.is_blocked(key) and len(slack.updates) == 1)
    await harness.stop()
    stage = await harness.start()
    assert await until(lambda: stage._buttons is not None and stage._buttons._runner is not None)
    value = {"alert": alert["id"], "targets": [key]}
    assert await harness.click(RESUME_ACTION_ID, value, "U1") == 200
    assert await until(lambda: not gateway.is_blocked(key))
    assert await until(lambda: len(slack.responses) == 1, 10)
    assert slack.responses[0]["text"].startswith("Resuming 1 key (research-nightly)")
    assert gateway.unblock_count(key).total == 1
