"""The action stage as a real process: alert records on the embedded broker in, the real
slack_sdk client against a fake Slack server and httpx against a fake LiteLLM out.

Outages of both, and a SIGKILL mid-retry, end with every message posted once and every
pause performed once, in order; each effect is audited on the actions topic."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake.actions._interactive import (
    RESUME_ACTION_ID,
    SNOOZE_ACTION_ID,
    build_payload,
    sign_request,
)
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.fakes.slack import FakeSlack
from spendbrake.schemas import STOP_PAUSING, format_ts
from tests.kafka_helpers import read_topic
from tests.streamer.test_worker import scrape, scrape_when, start_worker, stop

MASTER = "sk-master-test"
TOKEN = "xoxb-test"


def make_alert(
    key: str, *, seq: int = 0, action: str = "pause", team: str = "research", **extra: Any
) -> dict[str, Any]:
    return {
        "kind": "anomaly",
        "detector": "baseline",
        "scope": {"api_key": key},
        "also": [{"team": team}],
        "window_start": "2026-09-10T00:00:00.000000Z",
        "window_end": "2026-09-10T01:00:00.000000Z",
        "detected_at": "2026-09-10T00:07:00.000000Z",
        "observed_usd": 412.5,
        "expected_usd": 10.25,
        "severity": "critical",
        "action": action,
        "targets": [key] if action == "pause" else [],
        "critical_keys": [key] if action == "alert" else [],
        "budget": None,
        "threshold": None,
        "id": f"anomaly/api_key={key}/1789000000",
        "seq": seq,
        "score": 1.0,
        "reason": f"{key}: $412.50 in the hour vs $10.25 expected (40x)",
        **extra,
    }


#: The stage's own word on who may be paused (it re-checks every pause record against it).
KEYS = (
    "keys:\n  rules:\n"
    "    - {api_key: support-bot-prod, workload: critical}\n"
    '    - {api_key: "research-*", workload: batch}\n'
    '    - {api_key: "*-batch", workload: batch}\n'
    '    - {api_key: "sk-*", workload: batch}\n'
)
SIGNING = "slack-signing-secret"
#: The first operation of each lane for an alert that asks for a pause.
LANE_OP = {"gateway": "block", "slack": "post"}
#: The issue asks for 60 s outages; 8 s exercise the same paths in a short suite
#: (SPENDBRAKE_OUTAGE_S=60 runs the long version).
OUTAGE_S = float(os.environ.get("SPENDBRAKE_OUTAGE_S", "8"))


class Setup:
    def __init__(
        self,
        broker: EmbeddedBroker,
        make_topic: Callable[..., str],
        tmp: Path,
        slack: FakeSlack,
        gateway: FakeGateway,
    ) -> None:
        self.broker = broker
        self.alerts = make_topic("alerts", 2)
        self.actions = make_topic("actions", 1)
        self.config = tmp / "config.yaml"
        self.buttons_port = free_port()
        self.config.write_text(
            "kafka:\n  topics:\n"
            f"    alerts: {self.alerts}\n    actions: {self.actions}\n"
            f"slack:\n  token: {TOKEN}\n  channel: '#ai-spend'\n  base_url: {slack.base_url}\n"
            "  timeout_s: 1.5\n  retry_cap_s: 2\n"
            f"  signing_secret: {SIGNING}\n  interactive_port: {self.buttons_port}\n"
            f"gateway:\n  kind: litellm\n  url: {gateway.url}\n  master_key: {MASTER}\n"
            # The alerts are dated 2026-09: read today, their pauses would be history.
            "  timeout_s: 1.0\n  retry_cap_s: 2\n  pause_max_age_s: null\n" + KEYS
        )
        self.state = tmp / "state"
        self.log = tmp / "worker.log"

    def start(self, metrics_port: int = 0, act_from: str = "earliest") -> subprocess.Popen[bytes]:
        return start_worker(
            self.broker,
            self.config,
            self.state,
            self.log,
            metrics_port,
            stages="act",
            extra=("--act-from", act_from),
        )

    def publish(self, *alerts: Any, together: bool = False) -> None:
        asyncio.run(_publish(self.broker.bootstrap_servers, self.alerts, list(alerts), together))

    def audit(self) -> dict[str, dict[str, Any]]:
        records = asyncio.run(
            read_topic(self.broker.bootstrap_servers, self.actions, expect=10**9, timeout_s=1.5)
        )
        return {key.decode(): orjson.loads(value) for _, key, value in records if key}

    def click(self, body: bytes, headers: dict[str, str]) -> int:
        url = f"http://127.0.0.1:{self.buttons_port}/slack/actions"
        content_type = {"content-type": "application/x-www-form-urlencoded"}
        return httpx.post(url, content=body, headers={**headers, **content_type}).status_code

    def resume(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "spendbrake.cli",
                "resume",
                *args,
                "--config",
                str(self.config),
                "--bootstrap",
                self.broker.bootstrap_servers,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


async def _publish(bootstrap: str, topic: str, alerts: list[Any], together: bool = False) -> None:
    """Each alert in a request of its own, or ``together``: one record batch, as the detect
    stage sends a burst of alerts."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=50 if together else 0
    )
    await producer.start()
    try:
        sent = []
        for alert in alerts:
            if isinstance(alert, bytes):  # a record that is not an alert at all
                key, value = b"junk", alert
            else:
                key = f"{alert['id']}#{alert.get('seq', 0)}".encode()
                value = orjson.dumps(alert)
            sending = await producer.send(topic, value, key=key, partition=0)
            if together:
                sent.append(sending)
            else:
                await sending
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSlack, FakeGateway]]:
    with (
        FakeSlack(token=TOKEN) as slack,
        FakeGateway(master_key=MASTER, strict_key_format=False) as gateway,
    ):
        yield slack, gateway


def _texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(orjson.dumps(m).decode() for m in messages)


def _buttons(message: dict[str, Any]) -> list[str]:
    blocks = (
        orjson.loads(message["blocks"]) if isinstance(message["blocks"], str) else message["blocks"]
    )
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_pause_blocks_the_batch_key_alerts_the_critical_one_and_resume_unblocks(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    batch, critical = "research-nightly-summarizer", "support-bot-prod"
    worker = setup.start()
    try:
        setup.publish(make_alert(batch), make_alert(critical, action="alert", team="support"))
        assert gateway.wait_for(lambda: gateway.is_blocked(batch), 60), setup.log.read_text()[
            -3000:
        ]
        # The block settles into the thread (a reply) and the parent (chat.update).
        assert slack.wait_for(lambda: len(slack.parents()) == 2 and slack.updates, 30)
        time.sleep(2.0)  # anything else would have been sent by now
    finally:
        stop(worker)
    assert not gateway.is_blocked(critical)
    assert [c["body"] for c in gateway.calls] == [{"key": batch}]  # one call, the batch key
    parents = slack.parents()
    assert len(parents) == 2, _texts(slack.messages)
    batch_parent = next(p for p in parents if batch[-4:] in _texts([p]))
    thread = slack.thread(batch_parent["ts"])
    assert thread and "Paused" in _texts(thread), _texts(slack.messages)
    assert "spendbrake resume" in _texts([batch_parent])
    critical_parent = next(p for p in parents if p is not batch_parent)
    assert "never paused" in _texts([critical_parent])
    audit = setup.audit()
    block = next(r for r in audit.values() if r["action"] == "block")
    assert (block["target"], block["result"], block["attempts"]) == (batch, "ok", 1)
    assert block["alert"] == f"{make_alert(batch)['id']}#0"
    assert {r["action"] for r in audit.values()} >= {"post", "block", "reply", "update"}

    # The on-call's undo: the CLI unblocks at the gateway and audits it.
    done = setup.resume(batch, "--reason", "false alarm")
    assert done.returncode == 0, done.stderr
    assert not gateway.is_blocked(batch)
    resumed = [r for r in setup.audit().values() if r["action"] == "unblock"]
    assert len(resumed) == 1 and resumed[0]["result"] == "ok"
    assert resumed[0]["source"].startswith("cli:") and resumed[0]["reason"] == "false alarm"
    # An operator's decision at the terminal: audited as manual, not as an incident's resume.
    assert (resumed[0]["kind"], resumed[0]["incident"]) == ("manual", "manual")


def test_slack_buttons_resume_through_the_stage_and_forgeries_are_refused(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    key = "growth-email-batch"
    alert = make_alert(key)
    worker = setup.start()
    try:
        setup.publish(alert)
        assert gateway.wait_for(lambda: gateway.is_blocked(key), 60), setup.log.read_text()[-3000:]
        body = build_payload(
            RESUME_ACTION_ID,
            {"alert": alert["id"], "targets": [key]},
            "U42",
            response_url=slack.response_url,
        )
        now = int(time.time())
        forged = sign_request("not-the-secret", body, now)
        stale = sign_request(SIGNING, body, now - 600)
        assert setup.click(body, forged) == 401
        assert setup.click(body, stale) == 401
        assert gateway.is_blocked(key)
        assert setup.click(body, sign_request(SIGNING, body, now)) == 200
        # Slack re-delivers a click it got no quick answer for: acted on once.
        assert setup.click(body, sign_request(SIGNING, body, now + 1)) == 200
        assert gateway.wait_for(lambda: not gateway.is_blocked(key), 30)
        assert slack.wait_for(lambda: "Resumed" in _texts(slack.messages), 30)
        # The clicker hears back (Slack shows nothing from the HTTP answer to a click), and
        # the thread names who asked.
        assert slack.wait_for(lambda: len(slack.responses) == 1, 10), slack.responses
        told = slack.responses[0]
        assert (told["response_type"], told["replace_original"]) == ("ephemeral", False)
        assert told["text"].startswith("Resuming 1 key (growth-email-batch), requested by <@U42>")
        resumed = next(m for m in slack.messages if "Resumed" in _texts([m]) and m["thread_ts"])
        assert "Requested by <@U42>" in _texts([resumed])
        # Walk 2026-12-07: the reply once ended "To undo: `spendbrake resume KEY`", the
        # very thing just done, and its Done line said "Pausing KEY …; Resumed KEY".
        assert "spendbrake resume" not in _texts([resumed])
        assert "Pausing" not in _texts([resumed])
        # The parent, updated: nothing left to resume, so its Resume button and undo line
        # are gone (a click only answered "already resumed"); Snooze stays.
        assert slack.wait_for(lambda: "Resumed" in _texts(slack.updates[-1:]), 30)
        assert _buttons(slack.updates[-1]) == [SNOOZE_ACTION_ID], slack.updates[-1]
        assert "spendbrake resume" not in _texts(slack.updates[-1:])
        assert RESUME_ACTION_ID in _buttons(slack.updates[0])  # while it was paused
        # A second on-call clicks after it is done: told so, nothing sent to the gateway.
        again = build_payload(
            RESUME_ACTION_ID,
            {"alert": alert["id"], "targets": [key]},
            "U44",
            response_url=slack.response_url,
        )
        assert setup.click(again, sign_request(SIGNING, again, int(time.time()))) == 200
        assert slack.wait_for(lambda: len(slack.responses) == 2, 10)
        assert slack.responses[1]["text"] == "Already resumed: 1 key (growth-email-batch)."
        # Reproduction 3 of issue 17: a signed click on this incident's button naming a key
        # an operator blocked by hand (SpendBrake never paused it) once unblocked it.
        by_hand = "research-quarantined"
        httpx.post(
            f"{gateway.url}/key/block",
            json={"key": by_hand},
            headers={"Authorization": f"Bearer {MASTER}"},
        ).raise_for_status()
        foreign = build_payload(
            RESUME_ACTION_ID,
            {"alert": alert["id"], "targets": [by_hand]},
            "U43",
            response_url=slack.response_url,
        )
        assert setup.click(foreign, sign_request(SIGNING, foreign, int(time.time()))) == 200
        assert slack.wait_for(lambda: len(slack.responses) == 3, 10)
        assert slack.responses[2]["text"].startswith(
            "Not resumed: 1 key (research-quarantined): SpendBrake did not pause it for this "
            "incident."
        )
        time.sleep(1.5)
    finally:
        stop(worker)
    assert gateway.is_blocked(by_hand)
    assert [c["body"] for c in gateway.calls if c["body"].get("key") == by_hand] == [
        {"key": by_hand}  # the operator's own block; no unblock ever went out
    ]
    audit = setup.audit().values()
    rejected = [r for r in audit if r["result"] == "rejected"]
    assert len(rejected) == 2 and all("401" in r["detail"] for r in rejected), rejected
    unblocked = [r for r in audit if r["action"] == "unblock"]
    assert sorted((r["source"], r["target"], r["result"]) for r in unblocked) == [
        ("slack:U42", key, "ok"),
        ("slack:U43", by_hand, "refused"),
        ("slack:U44", key, "skipped"),
    ]
    assert gateway.unblock_count(key).total == 1
    refused = next(r for r in unblocked if r["result"] == "refused")
    assert "not paused by SpendBrake" in refused["detail"]


def test_a_forged_pause_of_a_protected_key_is_refused_and_a_reload_applies_at_once(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """Reproduction 2 of issue 17: whoever can write to spend.alerts once blocked any key,
    the critical support bot included, by leaving it out of ``critical_keys``. The stage
    now checks every pause against its own keys config."""
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    critical, stranger, batch = "support-bot-prod", "stranger-key", "research-nightly-summarizer"
    port = free_port()
    worker = setup.start(port)
    try:
        forged = make_alert(critical, critical_keys=[], team="support")
        setup.publish(forged, make_alert(stranger), make_alert(batch))
        # The lane is in order: once the batch key is blocked, the others were decided.
        assert gateway.wait_for(lambda: gateway.is_blocked(batch), 60), setup.log.read_text()[
            -3000:
        ]
        assert slack.wait_for(lambda: "Pause REFUSED" in _texts(slack.messages), 30)
        refused_metrics = scrape(port)
        # A reload that lists the stranger as batch lets its next pause through at once.
        text = setup.config.read_text()
        setup.config.write_text(
            text.replace(
                "keys:\n  rules:\n",
                "keys:\n  rules:\n    - {api_key: stranger-key, workload: batch}\n",
            )
        )
        deadline = time.monotonic() + 30
        while "config reloaded" not in setup.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        setup.publish(make_alert(stranger, id="anomaly/api_key=stranger-key/2"))
        assert gateway.wait_for(lambda: gateway.is_blocked(stranger), 30), setup.log.read_text()[
            -3000:
        ]
        time.sleep(1.5)
    finally:
        stop(worker)
    assert not gateway.is_blocked(critical)
    assert [c["body"]["key"] for c in gateway.calls] == [batch, stranger]
    audit = setup.audit().values()
    refused = {r["target"]: r for r in audit if r["result"] == "refused"}
    assert set(refused) == {critical, stranger}, audit
    assert refused[critical]["action"] == "block" and "critical" in refused[critical]["detail"]
    assert refused[critical]["alert"] == f"{forged['id']}#0"
    assert "no keys rule names it" in refused[stranger]["detail"]
    assert refused_metrics['spendbrake_refused_total{op="block",reason="critical"}'] == 1
    assert refused_metrics['spendbrake_refused_total{op="block",reason="unlisted"}'] == 1
    # The critical key's message says the pause was refused and offers no Resume for it.
    parent = next(p for p in slack.parents() if "REFUSED" in _texts([p]))
    assert "spendbrake resume" not in _texts([parent])


def test_a_queued_pause_of_a_key_a_reload_protects_is_never_sent(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """Who may be paused changes with the config at once: a pause still retrying through
    a gateway outage is checked again at each attempt."""
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    key = "research-nightly-summarizer"
    gateway.down()
    worker = setup.start()
    try:
        setup.publish(make_alert(key))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            r["action"] == "block" and r["result"] == "retrying" for r in setup.audit().values()
        ):
            time.sleep(0.5)
        text = setup.config.read_text()
        setup.config.write_text(
            text.replace(
                "keys:\n  rules:\n",
                f"keys:\n  rules:\n    - {{api_key: {key}, workload: critical}}\n",
            )
        )
        while "config reloaded" not in setup.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        gateway.up()
        refused: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not refused:
            refused = [r for r in setup.audit().values() if r["result"] == "refused"]
            time.sleep(0.5)
    finally:
        stop(worker)
    assert not gateway.is_blocked(key) and not gateway.calls
    assert [(r["action"], r["target"]) for r in refused] == [("block", key)], setup.audit()
    assert "critical" in refused[0]["detail"] and refused[0]["attempts"] >= 2


def _retrying(metrics: dict[str, float], lane: str) -> bool:
    """The lane holds all three effects, the oldest waiting over a second, and retried."""
    retrying = f'spendbrake_effects_total{{lane="{lane}",op="{LANE_OP[lane]}",result="retrying"}}'
    return (
        metrics.get(f'spendbrake_effects_pending{{lane="{lane}"}}', 0) >= 3
        and metrics.get(f'spendbrake_effects_oldest_pending_seconds{{lane="{lane}"}}', 0) > 1
        and metrics.get(retrying, 0) >= 1
    )


def test_outages_and_a_kill_mid_retry_end_in_exactly_once_in_order(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    keys = [f"research-batch-{i}" for i in range(3)]
    gateway.down()
    slack.fail_with(status=500, times=None)
    port = free_port()
    worker = setup.start(port)
    try:
        setup.publish(*(make_alert(k) for k in keys))
        # Both sides fail for a while; then the stage is killed in the middle of retrying.
        time.sleep(OUTAGE_S)
        # What an operator's alert rule on the act stage sees meanwhile (a loaded machine
        # may start the worker, or retry, after the outage's nominal length).
        during = scrape_when(port, lambda m: all(_retrying(m, lane) for lane in LANE_OP))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # Slack comes back answering 429 once (Retry-After), then hangs once past the
        # client's timeout after recording the message: an unknown outcome to resolve.
        slack.clear_faults()
        slack.fail_with(status=429, retry_after=1, times=1)
        slack.hang(3.0, times=1)
        gateway.up()
        gateway.hang(2.0, times=1)  # applied, but the answer comes after our timeout
        worker = setup.start(port)

        blocked = gateway.wait_for(lambda: all(gateway.is_blocked(k) for k in keys), 90)
        assert blocked, setup.log.read_text()[-4000:]
        # Each incident's parent is updated once its pause settled.
        assert slack.wait_for(lambda: len(slack.updates) >= 3, 60), _texts(slack.messages)
        time.sleep(3.0)
        after = scrape(port)
    finally:
        stop(worker)
    for lane in ("gateway", "slack"):
        assert _retrying(during, lane), during
        assert after[f'spendbrake_effects_pending{{lane="{lane}"}}'] == 0, after
        assert after[f'spendbrake_effects_oldest_pending_seconds{{lane="{lane}"}}'] == 0, after
    assert after['spendbrake_effects_total{lane="gateway",op="block",result="ok"}'] == 3, after
    assert after['spendbrake_effects_total{lane="slack",op="post",result="ok"}'] == 3, after
    # Every pause performed once (a retry of an applied block changes nothing), in order.
    for key in keys:
        assert gateway.block_count(key).changed == 1
    order = [c["body"]["key"] for c in gateway.calls if c["status"] == 200]
    assert [k for i, k in enumerate(order) if k not in order[:i]] == keys
    # Every alert posted once: one parent per incident despite 500s, a 429 and a hang.
    parents = slack.parents()
    assert len(parents) == 3, _texts(slack.messages)
    assert sorted(k[-1] for p in parents for k in keys if k in _texts([p])) == ["0", "1", "2"]
    audit = setup.audit()
    blocks = [r for r in audit.values() if r["action"] == "block"]
    assert sorted(r["target"] for r in blocks) == keys
    assert all(r["result"] == "ok" for r in blocks), blocks
    # The first pause was retried through the outage; the others queued behind it, in order.
    first = next(r for r in blocks if r["target"] == keys[0])
    assert first["attempts"] >= 2, first


def test_a_pause_stuck_behind_a_gateway_outage_says_so_in_its_message(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """Through a gateway outage (hours, at worst) the parent read "Pausing KEY …" as if it
    were being handled, and the on-call did not pause it by hand. After a few failed calls
    its Done line says the gateway is failing; once the pause lands, it says "Paused"."""
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    key = "research-batch-stuck"
    gateway.down()
    worker = setup.start()
    try:
        setup.publish(make_alert(key))
        told = slack.wait_for(lambda: "the gateway is failing" in _texts(slack.updates), 60)
        assert told, _texts(slack.messages) + setup.log.read_text()[-3000:]
        gateway.up()
        assert gateway.wait_for(lambda: gateway.is_blocked(key), 60), setup.log.read_text()[-3000:]
        assert slack.wait_for(lambda: "Paused" in _texts(slack.updates[-1:]), 60), _texts(
            slack.updates
        )
    finally:
        stop(worker)
    stuck = next(u for u in slack.updates if "the gateway is failing" in _texts([u]))
    assert f"Pausing {key}" in _texts([stuck]) and "pause by hand" in _texts([stuck]), stuck
    assert "the gateway is failing" not in _texts(slack.updates[-1:]), slack.updates[-1]
    assert len(slack.parents()) == 1 and gateway.block_count(key).changed == 1


def test_an_unknown_key_is_audited_as_failed_not_retried_forever(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    with (
        FakeSlack(token=TOKEN) as slack,
        FakeGateway(master_key=MASTER, keys={"sk-known"}, strict_key_format=False) as gateway,
    ):
        setup = Setup(broker, make_topic, tmp_path, slack, gateway)
        worker = setup.start()
        try:
            # Junk on the alerts topic is audited and skipped; it never stops the stage.
            missing_seq = {k: v for k, v in make_alert("sk-x").items() if k != "seq"}
            # A string for a list: once taken for three targets "s", "k", "y" to pause.
            wrong_type = {**make_alert("sk-y"), "targets": "sk-y"}
            # Unrenderable: a Slack message that failed at every attempt, at every restart.
            no_window = make_alert("sk-z", window_start=None)
            junk = (b"not json", missing_seq, wrong_type, no_window)
            setup.publish(*junk, make_alert("sk-unknown"))
            deadline = time.monotonic() + 60
            failed: list[dict[str, Any]] = []
            while time.monotonic() < deadline and len(failed) < len(junk) + 1:
                failed = [r for r in setup.audit().values() if r["result"] == "failed"]
            time.sleep(2.0)
        finally:
            stop(worker)
        skipped = [r for r in failed if r["action"] == "accept"]
        assert len(skipped) == len(junk), setup.audit()
        assert any("$.targets" in r["detail"] for r in skipped), skipped
        failed = [r for r in failed if r["action"] != "accept"]
        assert len(failed) == 1 and failed[0]["target"] == "sk-unknown", setup.audit()
        assert "404" in failed[0]["detail"]
        assert len(gateway.calls) == 1  # a permanent answer is not retried
        # The thread says the pause did not happen.
        assert "FAILED" in _texts(slack.messages)


def test_a_gateway_answering_500_keeps_its_pauses_and_applies_them_once_it_works(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """A database-less LiteLLM proxy answers /key/block 500 for ever, and one whose
    database blinked answers the same: the first pause is tried a few times, then the lane
    is held and probed once per ``retry_cap_s`` (said once in the log); nothing is given up,
    and once the gateway works both pauses land, in order, each once."""
    from spendbrake.actions._gateway import CONFIG_ERROR_AFTER
    from tests.actions.test_gateway import NO_DATABASE

    slack, gateway = fakes
    gateway.fail_with(500, times=None, body=NO_DATABASE)
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    keys = ["nightly-a-batch", "nightly-b-batch"]  # pausable by the KEYS rules
    worker = setup.start()
    try:
        setup.publish(*(make_alert(k) for k in keys))
        held = "pause(s) and resume(s) are kept"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and held not in setup.log.read_text():
            time.sleep(0.2)
        time.sleep(5)  # two probe intervals (retry_cap_s: 2)
        calls_while_down = len(gateway.calls)
        gateway.clear_faults()
        for key in keys:
            assert gateway.wait_for(lambda k=key: gateway.is_blocked(k), 30), setup.log.read_text()[
                -3000:
            ]
        time.sleep(1.5)
        audit = setup.audit().values()
    finally:
        stop(worker)
    log = setup.log.read_text()
    assert log.count("answers 500 to every call") == 1 and log.count(held) == 1, log[-3000:]
    # The first pause's tries, then one probe per interval, not one call per pause.
    assert CONFIG_ERROR_AFTER < calls_while_down <= CONFIG_ERROR_AFTER + 4, gateway.calls
    blocks = [r for r in audit if r["action"] == "block"]
    assert sorted(r["target"] for r in blocks if r["result"] == "ok") == keys, blocks
    assert not [r for r in blocks if r["result"] == "failed"], blocks
    assert "FAILED" not in _texts(slack.messages)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDBRAKE_BOOTSTRAP", raising=False)
    os.environ.pop("SPENDBRAKE_CONFIG", None)


def test_without_its_state_the_stage_refuses_alerts_it_may_have_acted_on(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """A state directory lost with its container: the alerts topic still holds what the
    stage acted on. Started as it is, it refuses with one line (acting again would post
    every alert and re-pause keys an operator resumed); ``--act-from latest`` acts on new
    alerts only, and from then on its state is saved, so a restart needs no flag. The old
    alerts went out as one record batch, whose end Tansu's ListOffsets puts after its first
    record: ``latest`` used to act on the rest of them."""
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    olds, new = [f"nightly-old{i}-batch" for i in range(3)], "nightly-new-batch"
    setup.publish(*(make_alert(old) for old in olds), together=True)
    refused = setup.start(act_from="saved")
    assert refused.wait(60) == 1
    last = setup.log.read_text().strip().splitlines()[-1]
    assert "outbox.json: unreadable state (missing, and" in last and "--act-from latest" in last
    worker = setup.start(act_from="latest")
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and not (setup.state / "actions" / "outbox.json").exists()
        ):
            time.sleep(0.2)
        setup.publish(make_alert(new))
        assert gateway.wait_for(lambda: gateway.is_blocked(new), 60), setup.log.read_text()[-3000:]
    finally:
        stop(worker)
    again = setup.start(act_from="saved")
    try:
        time.sleep(3)
        assert again.poll() is None, setup.log.read_text()[-3000:]  # its saved state: no refusal
    finally:
        stop(again)
    assert not [old for old in olds if gateway.is_blocked(old)], gateway.calls
    assert len(slack.parents()) == 1, slack.messages


def test_a_pause_read_as_history_is_logged_and_posted_as_skipped_not_as_a_pause(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakeGateway],
) -> None:
    """A runaway of weeks ago read now (a new deployment reading the topic's retention) is
    not paused (``gateway.pause_max_age_s``), but the stage's log line said "(pause k)", and
    an operator reading the log took the key for paused. It says what was done: skipped."""
    slack, gateway = fakes
    setup = Setup(broker, make_topic, tmp_path, slack, gateway)
    config = setup.config.read_text()
    setup.config.write_text(config.replace("pause_max_age_s: null", "pause_max_age_s: 21600"))
    old, new = "research-loop-oldx", "research-loop-newx"
    now = time.time()
    fresh = {
        "window_start": format_ts(now - now % 3600),
        "window_end": format_ts(now - now % 3600 + 3600),
        "detected_at": format_ts(now),
        "id": f"anomaly/api_key={new}/{int(now)}",
    }
    # A budget's hard stop of a past period (auto_resume: false would have kept it).
    stopped = "research-stop-budx"
    stop_alert = make_alert(
        stopped,
        kind="budget",
        detector="budget",
        budget="daily",
        threshold=1.0,
        id="budget/daily/1789000000",
        reason=f"daily spent $1,020.00 of its $1,000.00 daily budget: hard stop at 100%{STOP_PAUSING}",
    )
    worker = setup.start()
    try:
        setup.publish(make_alert(old), stop_alert, make_alert(new, **fresh))
        assert gateway.wait_for(lambda: gateway.is_blocked(new), 60), setup.log.read_text()[-3000:]
        assert slack.wait_for(lambda: len(slack.parents()) == 3, 30)
    finally:
        stop(worker)
    assert not gateway.is_blocked(old) and not gateway.is_blocked(stopped)
    lines = setup.log.read_text().splitlines()
    old_line = next(line for line in lines if f"alert {make_alert(old)['id']}#0 (" in line)
    assert re.search(rf"\(pause {old} skipped: \d+ d old, history, NOT paused\)", old_line), (
        old_line
    )
    new_line = next(line for line in lines if f"alert {fresh['id']}#0 (" in line)
    assert f"(pause {new}), detected 20" in new_line, new_line  # a backlog's time is said
    old_parent = next(p for p in slack.parents() if old[-4:] in _texts([p]))
    assert "NOT paused" in _texts([old_parent])
    stop_line = next(line for line in lines if "alert budget/daily/1789000000#0 (" in line)
    assert f"(pause {stopped} skipped: its period had ended, history, NOT paused)" in stop_line, (
        stop_line
    )
    stop_parent = next(p for p in slack.parents() if stopped[-4:] in _texts([p]))
    assert "NOT paused" in _texts([stop_parent]) and "left running" in _texts([stop_parent])
    # Its "Why:" line claimed the pause the "Done:" line says was not made.
    assert "pausing" not in _texts([stop_parent]).lower(), _texts([stop_parent])
