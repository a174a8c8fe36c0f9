"""``spendbrake_processing_latency_seconds``: from a batch of events being received to its
rollups being acknowledged, observed as the acks come, whatever else is in flight."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from tests.stages.ingest_fakes import ingest_stage, records, tp, until


async def test_latency_is_observed_under_steady_traffic(tmp_path: Path) -> None:
    """Every fetch brings new events and every flush sends new rollups, so some send is
    always in flight. The histogram was observed only when nothing was: at a checkpoint's
    drain (none here), so under steady traffic it read the checkpoint interval."""
    stage, _, consumer = ingest_stage(tmp_path, flush_interval_s=0.0, checkpoint_interval_s=3600)
    await stage.adopt([tp(0)])
    await until(lambda: 0 in stage.processors)
    offsets = itertools.count(0, 10)
    fetched = 0

    def steady() -> dict[TopicPartition, list[ConsumerRecord]]:
        nonlocal fetched
        fetched += 1
        return {tp(0): records(0, 10, first=next(offsets))}

    consumer.next_fetch = steady

    def observed() -> float:
        sample = stage.metrics.registry.get_sample_value
        return sample("spendbrake_processing_latency_seconds_count") or 0.0

    running = asyncio.ensure_future(stage.loop())
    try:
        await until(lambda: observed() >= 20)
        assert not running.done()
        assert fetched - 2 <= observed() <= fetched  # each batch once, as its acks came
    finally:
        stage.stop()
        await running
