"""``Worker``: which stages run, and one failing stops the others (in-process, real broker)."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import Config, StateUnreadable
from spendbrake.stages import STAGES, Worker, WorkerSettings, parse_stages


def test_stages_are_named_from_the_one_list() -> None:
    assert parse_stages(" store, ingest ,act") == ["ingest", "act", "store"]
    for text in ("", "ingest,inject", ","):
        with pytest.raises(ValueError, match="comma-separated subset of ingest,detect,act,store"):
            parse_stages(text)
    with pytest.raises(ValueError, match=r"'ingest,dtect' \(did you mean 'detect'\?\)"):
        parse_stages("ingest,dtect")


def test_the_store_brings_the_digest_schedule_and_every_part_takes_reloads(tmp_path: Path) -> None:
    path = tmp_path / "spendbrake.yaml"
    path.write_text("{}\n")
    worker = Worker(Config(), WorkerSettings(state_dir=tmp_path), STAGES, config_path=path)
    assert list(worker.stages) == list(STAGES)
    assert [type(o).__name__ for o in worker.others] == ["DigestScheduler"]
    assert worker.reloader.stages == worker.running
    assert list(Worker(Config(), WorkerSettings(state_dir=tmp_path), ["detect"]).stages) == [
        "detect"
    ]


def test_a_worker_says_what_it_runs_as_it_starts(tmp_path: Path) -> None:
    """Two ingest processes and a detect,act,store one on one state directory: each log now
    starts with its stages, Kafka, group, state, config and metrics (it began with aiokafka's
    lines, and nothing told the processes apart)."""
    path = tmp_path / "spendbrake.yaml"
    config = Config.model_validate({"kafka": {"bootstrap_servers": "127.0.0.1:39192"}})
    settings = WorkerSettings(state_dir=tmp_path / "state")
    worker = Worker(config, settings, ["detect", "act", "store"], config_path=path)
    line = worker.describe(None)
    assert line.startswith(f"worker pid {os.getpid()}: stages detect,act,store; ")
    assert "Kafka 127.0.0.1:39192, group spendbrake; " in line
    assert f"state in {tmp_path / 'state'}; config {path}; metrics off" in line
    assert (
        Worker(config, settings, ["ingest"])
        .describe(9464)
        .endswith("config built-in defaults; metrics 127.0.0.1:9464")
    )


def test_every_stage_with_metrics_served_as_spendbrake_worker_runs_by_default(
    tmp_path: Path,
) -> None:
    """The default stages (the store's among them, which keeps no metrics) behind a metrics
    port: ``spendbrake worker``'s defaults, as docker-compose.yml runs it."""
    worker = Worker(Config(), WorkerSettings(state_dir=tmp_path, metrics_port=0), STAGES)
    server = worker._serve_metrics()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics") as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
    for metric in ("spendbrake_events_valid_total", "spendbrake_effects_total"):
        assert metric in text


def test_one_stage_failing_stops_the_others_then_raises(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The act stage cannot read its outbox: the ingest and detect stages beside it stop
    too (each through its own lifecycle), and the failure comes out once all have."""
    events, rollups, alerts = make_topic("events"), make_topic("rollups"), make_topic("alerts")
    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": {"events": events, "rollups": rollups, "alerts": alerts},
            }
        }
    )
    damaged = tmp_path / "actions" / "outbox.json"
    damaged.parent.mkdir()
    damaged.write_bytes(b"{}")
    worker = Worker(config, WorkerSettings(state_dir=tmp_path), ["ingest", "detect", "act"])
    with pytest.raises(StateUnreadable, match=r"outbox\.json: unreadable state"):
        asyncio.run(asyncio.wait_for(worker.run(), 60))  # a guard against a hang, not a timing
    assert all(stage.stopping.is_set() for stage in worker.stages.values())


def test_the_worker_creates_its_topics_with_the_configured_replication(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """``kafka.replication_factor`` reaches the topics the worker creates (until 2026-12-07
    they had one replica whatever it said: one broker lost, its spend lost), and with three
    replicas ``acks=all`` needs two of them (``min.insync.replicas``)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    prefix = f"rf-{tmp_path.name[-8:]}"
    topics = {kind: f"{prefix}.{kind}" for kind in ("events", "rollups", "alerts", "actions")}
    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": topics,
                "replication_factor": 3,
            }
        }
    )
    damaged = tmp_path / "actions" / "outbox.json"  # the act stage fails once topics exist
    damaged.parent.mkdir()
    damaged.write_bytes(b"{}")
    worker = Worker(config, WorkerSettings(state_dir=tmp_path), ["act"])
    with pytest.raises(StateUnreadable):
        asyncio.run(asyncio.wait_for(worker.run(create_topics=True), 60))

    async def described() -> tuple[list, list]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            found = await admin.describe_topics(list(topics.values()))
            resource = ConfigResource(ConfigResourceType.TOPIC, topics["rollups"])
            return found, await admin.describe_configs([resource])
        finally:
            await admin.close()

    found, configs = asyncio.run(described())
    assert {t["topic"] for t in found} == set(topics.values())
    for topic in found:
        assert {len(p["replicas"]) for p in topic["partitions"]} == {3}, topic["topic"]
    entries = {name: value for name, value, *_ in configs[0].resources[0][4]}
    assert entries["min.insync.replicas"] == "2"
