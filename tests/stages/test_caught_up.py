"""When an input partition counts as caught up, on a broker whose ListOffsets answers short.

Tansu answers ListOffsets with its last record batch's first offset plus one, not the
offset after its last record (``stages.stage.fetched_ends``). An ingest group committed at
that answer still had the rest of the batch to count, yet the detect stage took the
partition as caught up and let the watermark move on without it, and the store stage's
digest took the day as complete.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import KafkaConfig
from spendbrake.stages.stage import inputs_committed


async def _check(bootstrap: str, topic: str) -> list[dict[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        sends = [await producer.send(topic, orjson.dumps({"n": n}), partition=0) for n in range(10)]
        await asyncio.gather(*sends)  # one batch: offsets 0-9
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    group = f"ingest-{uuid.uuid4().hex[:8]}"
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        listed = (await probe.end_offsets([tp]))[tp]
        kafka = KafkaConfig(bootstrap_servers=bootstrap)
        found = []
        for offset in sorted({listed, 10}):  # the broker's answer, then the true end
            probe.assign([tp])
            await probe.commit({tp: offset})
            found.append(await inputs_committed(probe, topic, [0], kafka))
        return found
    finally:
        await probe.stop()


def test_a_partition_committed_short_of_its_last_batch_is_not_caught_up(
    broker: EmbeddedBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("caught-up", partitions=1)
    found = asyncio.run(_check(broker.bootstrap_servers, topic))
    # Committed where ListOffsets says the log ends (1 on Tansu): not all of it counted.
    # Committed after the last record: caught up. (On Apache Kafka, both are 10.)
    assert found[-1] == {0: 10}
    assert all(f == {} for f in found[:-1]), found
