"""``spendbrake resume`` when the gateway answers but Kafka does not: the unblock is done and
said, and so is the audit that could not be written (no traceback, exit status 1)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from spendbrake import _resume
from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake.cli import main
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.schemas import Config
from tests.kafka_helpers import read_topic_sync


def test_an_unreachable_kafka_is_said_after_the_unblock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resume, "AUDIT_TIMEOUT_S", 3.0)
    said: list[str] = []
    with FakeGateway(master_key="sk-master", strict_key_format=False) as gateway:
        paused = httpx.post(
            f"{gateway.url}/key/block",
            json={"key": "nightly-batch"},
            headers={"authorization": "Bearer sk-master"},
        )
        assert paused.status_code == 200 and gateway.is_blocked("nightly-batch")
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"},  # nothing listens
                "gateway": {"url": gateway.url, "master_key": "sk-master"},
            }
        )
        ok = asyncio.run(_resume.resume(config, [("key", "nightly-batch")], "oops", said.append))
        assert not gateway.is_blocked("nightly-batch")
    assert not ok
    assert said[0].startswith("key nightly-batch: ok")
    assert said[1].startswith("audit NOT written to spend.actions at 127.0.0.1:")


def test_the_confirmation_names_each_key_as_given_and_the_audit(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Key names and the gateway's answers are printed as text, never as rich markup: a key
    ``summarizer[prod]`` was confirmed as ``summarizer`` (a different key), and one holding
    ``[/x]`` ended the command with a traceback after the unblock, its audit never written."""
    actions = make_topic("actions", 1)
    keys = ["summarizer[prod]", "[/x]", "esc\x1b[2Jkey"]
    with FakeGateway(master_key="sk-master", strict_key_format=False) as gateway:
        for key in keys:
            httpx.post(
                f"{gateway.url}/key/block",
                json={"key": key},
                headers={"authorization": "Bearer sk-master"},
            ).raise_for_status()
        config = _config(tmp_path, broker, actions, gateway)
        result = CliRunner().invoke(
            main, ["resume", *keys, "--config", str(config), "--reason", "false alarm"]
        )
        assert not any(gateway.is_blocked(key) for key in keys)
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("key summarizer[prod]: ok"), lines
    assert lines[1].startswith("key [/x]: ok"), lines
    assert lines[2].startswith("key esc\\x1b[2Jkey: ok"), lines  # an escape shown, not run
    assert lines[3] == f"audited on {actions}: 3 record(s), source cli:{getpass.getuser()}"
    records = read_topic_sync(broker.bootstrap_servers, actions, expect=3, timeout_s=10)
    assert sorted(orjson.loads(value)["target"] for _, _, value in records) == sorted(keys)


def test_a_team_resume_says_the_keys_stay_paused(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """SpendBrake pauses keys, never teams: unblocking a team leaves the keys it paused
    blocked, and the operator who typed ``--team`` is told so rather than left believing
    the team's spend flows again."""
    actions = make_topic("actions", 1)
    with FakeGateway(master_key="sk-master", strict_key_format=False) as gateway:
        for path, body in (("/key/block", {"key": "nightly"}), ("/team/block", {"team_id": "t1"})):
            httpx.post(
                f"{gateway.url}{path}", json=body, headers={"authorization": "Bearer sk-master"}
            ).raise_for_status()
        config = _config(tmp_path, broker, actions, gateway)
        result = CliRunner().invoke(main, ["resume", "--team", "t1", "--config", str(config)])
        assert not gateway.blocked_teams and gateway.is_blocked("nightly")
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("team t1: ok"), lines
    assert lines[-1].startswith("note: SpendBrake pauses keys, never teams"), lines


def _config(tmp_path: Path, broker: EmbeddedBroker, actions: str, gateway: FakeGateway) -> Path:
    """A config file naming the broker, its actions topic and the fake gateway."""
    config = tmp_path / "spendbrake.yaml"
    config.write_text(
        f"kafka:\n  bootstrap_servers: {broker.bootstrap_servers}\n"
        f"  topics:\n    actions: {actions}\n"
        f"gateway:\n  url: {gateway.url}\n  master_key: sk-master\n"
    )
    return config
