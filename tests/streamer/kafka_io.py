"""Publish raw records and read rollups back, over TCP, for worker tests."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from spendbrake.schemas import RollupRecord, decode_rollup
from spendbrake.streamer import RollupTotals


def event_key(raw: bytes) -> bytes | None:
    try:
        return orjson.loads(raw)["event_id"].encode()
    except Exception:
        return None


async def publish_raw(bootstrap: str, topic: str, records: list[bytes]) -> None:
    """Send records as a producer would: keyed by event_id (malformed ones unkeyed)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, raw, key=event_key(raw)) for raw in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_totals(bootstrap: str, topic: str, timeout_s: float = 60.0) -> RollupTotals:
    """Totals of every rollup record written before the call (read up to the end offsets).

    Reading to the end offsets, not for a fixed time, keeps a large topic
    (a 200k-event crash test writes hundreds of thousands of rollups) from
    being read only in part.
    """
    totals = RollupTotals()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, messages in batches.items():
                decoded = (decode_rollup(m.value) for m in messages)
                # Watermark marks share the topic with the windows.
                totals.update(r for r in decoded if isinstance(r, RollupRecord))
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return totals
