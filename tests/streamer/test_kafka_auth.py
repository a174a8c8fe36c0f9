"""Kafka SASL/SCRAM: every client SpendBrake builds authenticates, each as its principal.

The embedded broker sits behind a SCRAM front (tests/kafka_sasl.py) that closes any
connection asking for something before authenticating: a client built without the
``kafka`` security settings is refused, and the front's record shows it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake.schemas import KafkaConfig
from spendbrake.sdk import SpendProducer
from tests.kafka_sasl import ScramFront
from tests.streamer.test_worker import start_worker, stop

WORKER, WORKER_PASSWORD = "spendbrake-worker", "worker-pw-6b1f0e2a"
PRODUCER, PRODUCER_PASSWORD = "llm-gateway", "producer-pw-93d1c7"
T0 = 1_791_158_400 + 9 * 3600  # 2026-10-05T09:00:00Z


@pytest.fixture
def scram() -> Iterator[ScramFront]:
    port = free_port()
    users = {WORKER: WORKER_PASSWORD, PRODUCER: PRODUCER_PASSWORD}
    with (
        EmbeddedBroker(advertised_port=port) as broker,
        ScramFront(broker.port, users, port=port) as front,
    ):
        yield front


def _worker_kafka(front: ScramFront) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers=f"127.0.0.1:{front.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_username=WORKER,
        sasl_password=WORKER_PASSWORD,  # type: ignore[arg-type]
    )


async def _read(kafka: KafkaConfig, topic: str, expect: int, timeout_s: float) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, **kafka.client_args(), auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(orjson.loads(m.value) for m in batch if m.value)
    finally:
        await consumer.stop()
    return records


def test_the_worker_cli_and_sdk_authenticate_with_scram(
    scram: ScramFront, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = f"127.0.0.1:{scram.port}"
    config = tmp_path / "spendbrake.yaml"
    config.write_text(
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        "  security_protocol: SASL_PLAINTEXT\n"
        f"  sasl_username: {WORKER}\n"
        "  sasl_password: ${KAFKA_WORKER_PASSWORD}\n"
        "detectors: []\n"
        "budgets:\n  - {name: canary, scope: {team: search}, amount_usd: 1, period: day,"
        " alert_at: [1.0], hard_stop_at: null}\n"
        "gateway: {dry_run: true}\n"
    )
    monkeypatch.setenv("KAFKA_WORKER_PASSWORD", WORKER_PASSWORD)  # the worker's environment
    state, log = tmp_path / "state", tmp_path / "worker.log"
    worker = start_worker(bootstrap, config, state, log, stages="ingest,detect,act,store")
    kafka = _worker_kafka(scram)
    try:
        # An application publishes as its own principal, configured by environment only.
        monkeypatch.setenv("SPENDBRAKE_BOOTSTRAP", bootstrap)
        monkeypatch.setenv("SPENDBRAKE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("SPENDBRAKE_KAFKA_USERNAME", PRODUCER)
        monkeypatch.setenv("SPENDBRAKE_KAFKA_PASSWORD", PRODUCER_PASSWORD)
        with SpendProducer(spill_path=tmp_path / "spill.jsonl") as producer:
            for i in range(20):
                producer.emit(
                    {
                        "event_id": f"auth-{i}",
                        "ts": T0 + 60 * i,
                        "provider": "openai",
                        "model": "gpt-4o",
                        "input_tokens": 100,
                        "output_tokens": 10,
                        "cost_usd": 0.25,
                        "team": "search",
                        "api_key": "search-batch",
                    }
                )
            assert producer.flush(60), log.read_text()[-3000:]
        alerts = asyncio.run(_read(kafka, "spend.alerts", 1, 90))
        assert alerts and {a["budget"] for a in alerts} == {"canary"}, log.read_text()[-3000:]
        # The operator's CLI writes its audit record as the worker's principal.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDBRAKE_KAFKA")}
        resume = subprocess.run(
            [sys.executable, "-m", "spendbrake.cli", "resume", "search-batch", "--config", config],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert resume.returncode == 0, resume.stderr
        audit = asyncio.run(_read(kafka, "spend.actions", 1, 30))
        assert [(r["action"], r["result"]) for r in audit] == [("unblock", "dry_run")]
        time.sleep(2.0)  # the store stage has read the rollups by now
    finally:
        stop(worker)
    assert scram.refused == [], (scram.refused, log.read_text()[-3000:])
    assert scram.users == {WORKER, PRODUCER}
    sdk = {user for client, user in scram.principals if client == "spendbrake-sdk"}
    assert sdk == {PRODUCER}  # the application never holds the worker's password
    from spendbrake.streamer import connect_store

    con = connect_store(state / "store" / "spend.duckdb", read_only=True)
    try:
        assert con.execute("select count(*) from rollups").fetchone()[0] > 0
    finally:
        con.close()


def test_without_credentials_or_with_a_wrong_password_nothing_gets_in(
    scram: ScramFront, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{scram.port}"
    wrong = KafkaConfig(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_username=PRODUCER,
        sasl_password="guessed",  # type: ignore[arg-type]
    )
    for kafka in (KafkaConfig(bootstrap_servers=bootstrap), wrong):
        producer = SpendProducer(
            kafka=kafka, spill_path=tmp_path / f"{kafka.security_protocol}.jsonl"
        )
        try:
            producer.emit(
                {
                    "event_id": "x",
                    "ts": T0,
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "team": "search",
                }
            )
            assert not producer.flush(3)  # kept (spilled), not delivered
        finally:
            producer.close(0)
    assert scram.principals == []
    assert any("before authentication" in r for r in scram.refused), scram.refused
    assert any("password" in r for r in scram.refused), scram.refused
