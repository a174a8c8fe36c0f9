"""``spendbrake resume`` when the gateway answers but Kafka does not: the unblock is done and
said, and so is the audit that could not be written (no traceback, exit status 1)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from spendbrake import _resume
from spendbrake._broker import free_port
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.schemas import Config


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
