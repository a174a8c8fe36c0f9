"""Publish raw records and read rollups back, over TCP, for worker tests."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer

from streamer import RollupRecord, RollupTotals
from tests.kafka_helpers import read_topic


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


async def read_totals(bootstrap: str, topic: str, timeout_s: float = 5.0) -> RollupTotals:
    totals = RollupTotals()
    records = await read_topic(bootstrap, topic, expect=10**9, timeout_s=timeout_s)
    totals.update(RollupRecord.from_wire(orjson.loads(value)) for _, _, value in records)
    return totals
