"""An ``IngestStage`` in-process, with Kafka clients the test drives: when a send is
acknowledged, what a rebalance does and when, decided by the test, not by a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from spendbrake.schemas import Config
from spendbrake.stages.ingest import IngestStage
from spendbrake.stages.stage import WorkerSettings

TOPIC = "spend.events"
T0 = 1_791_158_400  # 2026-10-05T00:00:00Z


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: Any) -> object:
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Sends are acknowledged at once, unless the test holds the next ``send_batch`` (as
    aiokafka's does while a partition's previous batch is still on its way) or fails it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        #: Set: the next send_batch waits for ``gate``; ``waiting`` is set once it does.
        self.hold = False
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        #: An exception the next batch's acknowledgement fails with (then cleared).
        self.fail_with: BaseException | None = None

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if self.hold:
            self.hold = False
            self.waiting.set()
            await self.gate.wait()
        future = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
            self.fail_with = None
        else:
            self.sent.extend((topic, key, value) for key, value in batch.records)
            future.set_result(None)
        return future

    async def send(self, topic: str, value: bytes, key: bytes, partition: int) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}


class FakeConsumer:
    def __init__(self) -> None:
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        #: What each partition holds, ``[start, end)``: from 0 to past any saved offset,
        #: unless the test says otherwise.
        self.log_starts: dict[TopicPartition, int] = {}
        self.log_ends: dict[TopicPartition, int] = {}
        #: What each ``getmany`` returns (None: nothing), for a test running ``loop``.
        self.next_fetch: Callable[[], dict[TopicPartition, list[ConsumerRecord]]] | None = None

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        await asyncio.sleep(0)  # a fetch lets the other tasks run, as aiokafka's does
        return self.next_fetch() if self.next_fetch is not None else {}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log_starts.get(tp, 0) for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log_ends.get(tp, 1 << 62) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    async def commit(self, offsets: Any) -> None:
        return None

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)


def ingest_stage(
    state_dir: Path, config: Config | None = None, **settings: Any
) -> tuple[IngestStage, FakeProducer, FakeConsumer]:
    stage = IngestStage(config or Config(), WorkerSettings(state_dir=state_dir, **settings))
    producer, consumer = FakeProducer(), FakeConsumer()
    stage.producer, stage.consumer = producer, consumer  # type: ignore[assignment]
    return stage, producer, consumer


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


def records(partition: int, n: int, first: int = 0, **fields: Any) -> list[ConsumerRecord]:
    """``n`` valid events as consumer records of ``partition``, offsets from ``first``."""
    out = []
    for i in range(first, first + n):
        event = {
            "event_id": f"p{partition}-{i}",
            "ts": T0 + i,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 100,
            "output_tokens": 10,
            "team": "search",
            **fields,
        }
        raw = orjson.dumps({k: v(i) if callable(v) else v for k, v in event.items()})
        out.append(
            ConsumerRecord(TOPIC, partition, i, T0 * 1000, 0, None, raw, None, 0, len(raw), ())
        )
    return out


async def until(condition: Any, steps: int = 10_000) -> None:
    """Let the other tasks run until ``condition()`` holds (a bound on steps, not a time)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def saved_offset(state_dir: Path, partition: int) -> int | None:
    path = state_dir / TOPIC / f"p{partition}" / "snapshot.json"
    return orjson.loads(path.read_bytes())["next_offset"] if path.exists() else None


class FastClock:
    """The event loop's clock, a second further on at every reading: minutes of waiting
    (timers included) pass in a few hundred loop steps, the same in every run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.real = loop.time
        self.ahead = 0.0

    def __call__(self) -> float:
        self.ahead += 1.0
        return self.real() + self.ahead
