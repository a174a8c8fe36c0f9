"""The action stage as a real process: alert records on the embedded broker in, the real
slack_sdk client against a fake Slack server and httpx against a fake LiteLLM out.

Outages of both, and a SIGKILL mid-retry, end with every message posted once and every
pause performed once, in order; each effect is audited on the actions topic."""

from __future__ import annotations

import asyncio
import os
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
from spendbrake.actions._interactive import RESUME_ACTION_ID, build_payload, sign_request

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.fakes.slack import FakeSlack
from tests.kafka_helpers import read_topic
from tests.streamer.test_worker import scrape, start_worker, stop

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
            "  timeout_s: 1.0\n  retry_cap_s: 2\n"
        )
        self.state = tmp / "state"
        self.log = tmp / "worker.log"

    def start(self, metrics_port: int = 0) -> subprocess.Popen[bytes]:
        return start_worker(
            self.broker, self.config, self.state, self.log, metrics_port, stages="act"
        )

    def publish(self, *alerts: Any) -> None:
        asyncio.run(_publish(self.broker.bootstrap_servers, self.alerts, list(alerts)))

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


async def _publish(bootstrap: str, topic: str, alerts: list[Any]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for alert in alerts:
            if isinstance(alert, bytes):  # a record that is not an alert at all
                await producer.send_and_wait(topic, alert, key=b"junk", partition=0)
                continue
            key = f"{alert['id']}#{alert.get('seq', 0)}".encode()
            await producer.send_and_wait(topic, orjson.dumps(alert), key=key, partition=0)
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
        body = build_payload(RESUME_ACTION_ID, {"alert": alert["id"], "targets": [key]}, "U42")
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
        time.sleep(1.5)
    finally:
        stop(worker)
    audit = setup.audit().values()
    rejected = [r for r in audit if r["result"] == "rejected"]
    assert len(rejected) == 2 and all("401" in r["detail"] for r in rejected), rejected
    unblocked = [r for r in audit if r["action"] == "unblock"]
    assert [(r["source"], r["result"]) for r in unblocked] == [("slack:U42", "ok")]


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
        # What an operator's alert rule on the act stage sees meanwhile.
        during = scrape(port)
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
        assert during[f'spendbrake_effects_pending{{lane="{lane}"}}'] >= 3, during
        assert during[f'spendbrake_effects_oldest_pending_seconds{{lane="{lane}"}}'] > 1, during
        assert during[f'spendbrake_effects_total{{lane="{lane}",op="{LANE_OP[lane]}",result="retrying"}}'] >= 1  # fmt: skip
        assert after[f'spendbrake_effects_pending{{lane="{lane}"}}'] == 0, after
        assert after[f'spendbrake_effects_oldest_pending_seconds{{lane="{lane}"}}'] == 0, after
    assert after['spendbrake_effects_total{lane="gateway",op="block",result="ok"}'] == 3, after
    assert after['spendbrake_effects_total{lane="slack",op="post",result="ok"}'] == 3, after
    # Every pause performed once (a retry of an applied block changes nothing). Each key
    # is its own queue now, retried side by side (order per key: tests/actions/test_outbox.py).
    for key in keys:
        assert gateway.block_count(key).changed == 1
    # Every alert posted once: one parent per incident despite 500s, a 429 and a hang.
    parents = slack.parents()
    assert len(parents) == 3, _texts(slack.messages)
    assert sorted(k[-1] for p in parents for k in keys if k in _texts([p])) == ["0", "1", "2"]
    audit = setup.audit()
    blocks = [r for r in audit.values() if r["action"] == "block"]
    assert sorted(r["target"] for r in blocks) == keys
    assert all(r["result"] == "ok" for r in blocks), blocks
    # Every pause was retried through the outage, none waiting behind another.
    assert all(r["attempts"] >= 2 for r in blocks), blocks


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


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDBRAKE_BOOTSTRAP", raising=False)
    os.environ.pop("SPENDBRAKE_CONFIG", None)
