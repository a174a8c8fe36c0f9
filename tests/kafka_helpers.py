"""Read what actually arrived on a topic, over TCP, for assertions."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

Record = tuple[int, bytes | None, bytes]


async def read_topic(
    bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0
) -> list[Record]:
    """All (partition, key, value) records of a topic from the start.

    Reads until ``expect`` records arrived or the timeout, then a little longer
    so that records beyond ``expect`` (duplicates) show up too.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batches.values():
                records.extend((m.partition, m.key, m.value) for m in messages)
        # A short extra read catches records beyond what was expected.
        batches = await consumer.getmany(timeout_ms=300)
        for messages in batches.values():
            records.extend((m.partition, m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


def read_topic_sync(
    bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0
) -> list[Record]:
    return asyncio.run(read_topic(bootstrap, topic, expect, timeout_s))
