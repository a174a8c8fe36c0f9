"""The ingest stage: ``spend.events`` in the consumer group; rollups, dead letters, trace
partials and unpriced-model alerts out, exactly once.

Each input partition's state (open windows, dedupe memory) is snapshotted with the next
offset to read (``streamer.PartitionStore``), in the commit order of ``stage.py``; on
assignment the stage restores the snapshot and seeks to that offset. Events after the
snapshot are processed again after a crash, which is right because their effect was never
saved; the outputs they produce are absolute totals keyed by window, so re-emitting
overwrites. Partitions move between workers in rebalances: a revoked partition is
checkpointed first, and an assigned one waits for its previous owner's lock (paused, in a
task of its own, for as long as that takes; see ``adopt``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, MessageSizeTooLargeError
from aiokafka.structs import OffsetAndMetadata

from spendbrake.schemas import (
    Config,
    PriceTable,
    RollupRecord,
    SpendBrakeError,
    WatermarkMark,
    encode_alert,
    encode_mark,
    encode_rollup,
)
from spendbrake.streamer import (
    DeadLetter,
    PartitionProcessor,
    PartitionStore,
    SeriesTable,
    trace_records,
)

from .metrics import IngestMetrics
from .stage import OutputFailed, RecordTooLarge, Stage, WorkerSettings

log = logging.getLogger(__name__)

#: While the group assigns no partition, the stage says so again this often.
SAY_WAITING_EVERY_S = 30.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: IngestStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.adopt(assigned)


class IngestStage(Stage):
    """Consumes ``kafka.topics.events`` in the consumer group and keeps rollups exact."""

    name = "ingest"
    #: Seconds without partitions before the stage says it is waiting for its group.
    say_waiting_after_s = 10.0

    def __init__(
        self,
        config: Config,
        settings: WorkerSettings,
        prices: PriceTable | None = None,
        on_records: Callable[[list[RollupRecord]], None] | None = None,
    ) -> None:
        super().__init__(config, settings)
        self.prices = prices or PriceTable.default().with_overrides(config.pricing.models)
        self.on_records = on_records
        self.topic = config.kafka.topics.events
        #: The dimension sets every partition's rollups are built on, fixed until a restart:
        #: a reload needing others (its dimensions, a budget on a new set) waits for one, and
        #: a partition adopted after it rolls up the same sets as the rest.
        self.sets = config.rollup_dimensions()
        self.processors: dict[int, PartitionProcessor] = {}
        #: The partitions' rollups hold a key's series once, whichever partitions it reaches.
        self.series_table = SeriesTable()
        self.stores: dict[int, PartitionStore] = {}
        #: Partitions assigned and paused while their adoption waits for the state's lock.
        self._adopting: dict[int, asyncio.Future[None]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.rollups_out = 0
        self.dead_out = 0
        #: Outputs not yet acknowledged, by (topic, key): value, input partition, sequence.
        #: A newer value for a key replaces the older one.
        self._unsent: dict[tuple[str, bytes], tuple[bytes, int, int]] = {}
        #: Sends under way, by (topic, key): the sequence sent and its future.
        self._inflight: dict[tuple[str, bytes], tuple[int, asyncio.Future[Any]]] = {}
        self._seq = 0
        #: The periodic flush's sends, run in the background (see ``flush``).
        self._sending: asyncio.Future[None] | None = None
        #: Receive times of the batches fetched since the last flush.
        self._received: list[float] = []
        #: Batches a flush took, waiting for their outputs' acks: (the last sequence that
        #: flush queued, their receive times). ``spendbrake_processing_latency_seconds``.
        self._waiting: collections.deque[tuple[int, list[float]]] = collections.deque()
        #: Per queued output key, the lowest sequence whose value may not be acknowledged.
        self._oldest: dict[tuple[str, bytes], int] = {}
        #: When the broker last acknowledged a batch of outputs (monotonic seconds).
        self._acked_s = 0.0
        self.metrics = IngestMetrics()
        self._partition_counts: dict[str, int] = {}

    def reconfigure(self, config: Config) -> list[str]:
        """New prices from the next event on, and the minutes of new budgets' scopes from
        the next flush; new dimension sets need a restart."""
        notes = []
        if config.rollup_dimensions() != self.sets:
            notes.append("dimensions: the ingest rolls up by the new sets after a restart")
        # The minutes of new budgets on the sets rolled up already, from now on.
        if (windows := config.rollup_windows(self.sets)) != self.config.rollup_windows(self.sets):
            for processor in self.processors.values():
                processor.rollups.set_windows(*windows)
        prices = PriceTable.default().with_overrides(config.pricing.models)
        self.prices = prices
        for processor in self.processors.values():
            processor.prices = prices
        # Topics and dimensions stay those the running consumers and rollups were built on.
        self.config = config.model_copy(
            update={"kafka": self.config.kafka, "dimensions": self.config.dimensions}
        )
        return notes

    # -- partition ownership -------------------------------------------------

    async def adopt(self, assigned: list[TopicPartition]) -> None:
        """Adopt each newly assigned partition once its state's lock is free: in a task of
        its own, the partition paused until then.

        The lock is held by the partition's previous owner until its revoke has saved it:
        usually a moment, but a save during a broker outage waits for aiokafka's request
        timeout, and a worker that hangs holds it until it is stopped. Waiting for as long
        as that takes is what keeps counting exact: the state is only ever read by the one
        worker holding the lock, after the last save of the one before. Giving up instead
        would help nothing: skipping the partition leaves it assigned and never counted
        (as a 60 s time-out once did, silently), and failing the stage (exit 1) restarts
        into the same wait after a rebalance of every partition in the group. So the wait
        goes on, logged every ``LOCK_NOTE_S`` with the lock file and its holder.

        Not in the rebalance callback itself: aiokafka sends no heartbeats while it runs,
        so a wait longer than the session timeout had the group drop this worker, and its
        other partitions waited on it in turn.
        """
        assert self.consumer is not None
        for tp in assigned:
            partition = tp.partition
            if tp.topic != self.topic or partition in self.processors:
                continue
            if partition in self._adopting:
                continue
            self.consumer.pause(tp)  # nothing is fetched for it until it is adopted
            self._adopting[partition] = asyncio.ensure_future(self._adopt(tp))

    async def _adopt(self, tp: TopicPartition) -> None:
        """Wait for the partition's lock, restore its snapshot, seek to it and resume it."""
        assert self.consumer is not None
        store = PartitionStore(self.settings.state_dir, self.topic, tp.partition)
        try:
            await store.acquire()
            windows_s, minute_values = self.config.rollup_windows(self.sets)
            processor = PartitionProcessor(
                self.topic,
                tp.partition,
                self.sets,
                self.prices,
                lateness_s=self.settings.lateness_s,
                dedupe_horizon_s=self.settings.dedupe_horizon_s,
                dim_windows_s=windows_s,
                minute_values=minute_values,
                series_table=self.series_table,
            )
            try:
                loaded = store.load()
                if loaded is not None:
                    processor.restore(*loaded)
                    self.metrics.start_from(tp.partition, processor.stats)
            except (KeyError, TypeError, ValueError) as exc:
                raise store.unreadable(store.dir / "snapshot.json", f"{exc!r}") from None
            # No snapshot: rebuild from everything the topic still holds. A saved offset
            # outside the partition: resume at its start, said and counted (``offsets.py``).
            moved = await self.seek(self.consumer, [tp], lambda _: processor.next_offset)
            if tp in moved:
                processor.next_offset = moved[tp]
            self.consumer.resume(tp)
        except asyncio.CancelledError:
            store.release()  # revoked, or the stage stops, before it was adopted
            raise
        except IllegalStateError:
            store.release()  # no longer assigned: its revoke is on the way
            return
        except KafkaError:
            # ``retrying`` gave up on the broker because the stage stops: nothing adopted.
            store.release()
            return
        except Exception as exc:
            # Nothing may swallow this: the partition would stay assigned and paused, its
            # records never counted. The stage stops with one line naming the file instead.
            store.release()
            if not isinstance(exc, SpendBrakeError):
                log.exception("partition %d not adopted", tp.partition)
                exc = SpendBrakeError(f"{store.dir}: partition {tp.partition} not adopted: {exc!r}")
            self.fatal = exc
            log.error("%s", exc)
            self.stop()
            return
        finally:
            self._adopting.pop(tp.partition, None)
        self.processors[tp.partition] = processor
        self.stores[tp.partition] = store
        log.info("partition %d adopted at offset %s", tp.partition, processor.next_offset or 0)

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            pending = self._adopting.pop(tp.partition, None) if tp.topic == self.topic else None
            if pending is not None:
                pending.cancel()  # still waiting for its lock: nothing of it to save
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
        partitions = [tp.partition for tp in revoked if tp.partition in self.processors]
        if not partitions:
            return
        try:
            await self.checkpoint(partitions)
        except (KafkaError, RecordTooLarge) as exc:
            # Not saving is always safe: the next owner restores the previous
            # snapshot and processes the rest again.
            log.warning("checkpoint on revoke failed (%s); the next owner replays", exc)
            self._unsent = {k: v for k, v in self._unsent.items() if v[1] not in partitions}
            self._oldest = {k: v for k, v in self._oldest.items() if k in self._unsent}
            if isinstance(exc, RecordTooLarge):
                # Raised here, the rebalance callback would swallow it: stop the stage.
                self.fatal = exc
                log.error("%s", exc)
                self.stop()
        for partition in partitions:
            self.processors.pop(partition)
            self.stores.pop(partition).release()
            self.metrics.forget(partition)
            log.info("partition %d released", partition)

    # -- output ---------------------------------------------------------------

    async def flush(
        self, partitions: list[int] | None = None, wait: bool = True
    ) -> dict[int, PartitionProcessor]:
        """Send every changed window, dead letter, trace batch and alert of the given partitions
        still owned; returns their processors, as flushed.

        Outputs stay queued until the broker acknowledges them, so a failed send
        is retried rather than lost until the window changes again. With
        ``wait=False`` (the periodic flush) acks are collected at later flushes,
        so consuming never stalls on them; a checkpoint always waits. A key is
        never in flight twice: its newer value goes out after the older one is
        settled, so a retried older value cannot land after the newer one.

        The periodic flush (``wait=False``) sends in the background: aiokafka holds a
        partition's next batch until its previous one has gone out, so a catch-up flush of
        many batches waits on the broker, and that wait now overlaps the processing of the
        next fetches. The next flush or checkpoint first waits for those sends (a failure
        surfaces there, before anything new is taken from the processors).

        A rebalance runs ``revoke`` in aiokafka's own task while this waits: a partition
        revoked meanwhile is skipped here, and is no longer among those returned.
        """
        assert self.producer is not None
        await self._sends_done()
        topics = self.config.kafka.topics
        new_records: list[RollupRecord] = []
        flushed = {
            partition: processor
            for partition in (self.processors if partitions is None else partitions)
            if (processor := self.processors.get(partition)) is not None
        }
        for partition, processor in flushed.items():
            records, dead, traces, alerts = processor.flush()
            self.metrics.absorb(partition, processor.stats)
            queue = self._queue
            for record in records:
                queue(topics.rollups, _trim(record.key()), encode_rollup(record), partition)
            for letter in dead:
                queue(topics.dlq, letter.key(), _trim(_dead_value(letter)), partition)
            # Trace partials go in batches: most traces are one or two calls, and
            # a record each would cost more than the events they sum up. Readers
            # key each partial inside (TraceTotals), so a re-sent batch
            # overwrites its partials instead of adding.
            for first, value in trace_records(traces):
                queue(topics.traces, _trim(first.key()), value, partition)
            for alert in alerts:
                queue(topics.alerts, alert.id.encode(), _trim(encode_alert(alert)), partition)
            new_records.extend(records)
            self.dead_out += len(dead)
        if self._received:
            self._waiting.append((self._seq, self._received))
            self._received = []
        self._settle()
        if wait:
            await self._send_unsent()
            await self._drain()
        elif self._unsent:
            self._sending = asyncio.ensure_future(self._send_unsent())
        self._observe_acknowledged()
        self.rollups_out += len(new_records)
        self.metrics.rollups_out.inc(len(new_records))
        if self.on_records is not None and new_records:
            self.on_records(new_records)
        return {p: proc for p, proc in flushed.items() if self.processors.get(p) is proc}

    async def _sends_done(self) -> None:
        """Wait for the background sends of the last periodic flush; raise what they raised."""
        while self._sending is not None:
            task = self._sending
            try:
                await task
            finally:
                if self._sending is task:
                    self._sending = None

    def _queue(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        """Queue one output; ``key`` and ``value`` must be exact-size bytes (``_trim``)."""
        self._seq += 1
        self._unsent[(topic, key)] = (value, partition, self._seq)
        self._oldest.setdefault((topic, key), self._seq)

    def _observe_acknowledged(self) -> None:
        """Observe ``spendbrake_processing_latency_seconds`` for the batches whose outputs
        are all acknowledged: from each batch's receipt to the broker's last ack.

        A flush's batches are acknowledged once no output key waits on a value queued by
        that flush or before (``_oldest``). Until 2026-12-07 batches were observed only
        with nothing at all in flight: under steady traffic (always a newer flush in
        flight) that was the next checkpoint's drain, and the histogram read the
        checkpoint interval.
        """
        waiting = self._waiting
        if not waiting:
            return
        pending = min(self._oldest.values(), default=math.inf)
        observe = self.metrics.latency.observe
        while waiting and waiting[0][0] < pending:
            for started in waiting.popleft()[1]:
                observe(max(0.0, self._acked_s - started))

    def _acked(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._acked_s = time.monotonic()

    async def _send_unsent(self) -> None:
        """Send queued outputs not yet in flight, as one record batch per output partition.

        ``producer.send`` costs about 30 us per record here; appending to a
        batch (``create_batch`` / ``send_batch``, aiokafka's public batch API)
        a few, and a flush sends thousands of rollups.
        """
        producer = self.producer
        assert producer is not None
        inflight = self._inflight
        batches: dict[tuple[str, int], tuple[Any, list[tuple[tuple[str, bytes], int]]]] = {}
        for item, (value, _, seq) in list(self._unsent.items()):
            if item in inflight:
                continue
            topic, key = item
            count = self._partition_counts.get(topic) or await self._partition_count(topic)
            target = (topic, zlib.crc32(key) % count)
            pending = batches.get(target)
            if pending is None:
                pending = batches[target] = (producer.create_batch(), [])
            if pending[0].append(key=key, value=value, timestamp=None) is None:
                await self._send_batch(target, *pending)  # full: send it, start the next
                pending = batches[target] = (producer.create_batch(), [])
                pending[0].append(key=key, value=value, timestamp=None)
            pending[1].append((item, seq))
        for target, (batch, items) in batches.items():
            await self._send_batch(target, batch, items)

    async def _send_batch(
        self, target: tuple[str, int], batch: Any, items: list[tuple[tuple[str, bytes], int]]
    ) -> None:
        assert self.producer is not None
        future = await self.producer.send_batch(batch, target[0], partition=target[1])
        future.add_done_callback(self._acked)
        for item, seq in items:
            self._inflight[item] = (seq, future)

    def _settle(self) -> int:
        """Retire finished sends; an acked one leaves the queue unless a newer value waits.

        Returns how many failed; raises ``RecordTooLarge`` for a batch refused as too large,
        naming its largest record (the one over the limit: a batch is at most 512 KB of
        records that fit).
        """
        failed = 0
        too_large: list[tuple[int, tuple[str, bytes]]] = []
        for item, (seq, future) in list(self._inflight.items()):
            if not future.done():
                continue
            del self._inflight[item]
            queued = self._unsent.get(item)
            if future.cancelled() or future.exception() is not None:
                failed += 1
                if isinstance(future.exception(), MessageSizeTooLargeError):
                    too_large.append((len(item[1]) + (len(queued[0]) if queued else 0), item))
                continue
            if queued is not None and queued[2] == seq:
                del self._unsent[item]
                del self._oldest[item]
            elif queued is not None:
                # A newer value waits: values up to this one are acknowledged, and the
                # next was queued later (a bound: values it replaced unsent lie above it).
                self._oldest[item] = seq + 1
        if too_large:
            size, (topic, key) = max(too_large)
            raise RecordTooLarge(topic, key, size)
        return failed

    async def _drain(self) -> None:
        """Wait until every queued output is acknowledged; raise if a send failed."""
        while self._unsent:
            if self._inflight:
                await asyncio.wait([future for _, future in self._inflight.values()])
            failed = self._settle()
            if failed:
                raise OutputFailed(f"{failed} output record(s) were not acknowledged")
            await self._send_unsent()

    async def checkpoint(self, partitions: list[int] | None = None) -> None:
        """Flush, persist each partition's snapshot with its next offset, then commit
        (``stage.py``); with no partition owned, nothing.

        Only the partitions still owned once the flush is acknowledged are saved: a
        rebalance may revoke one while it waits (aiokafka runs ``revoke`` in its own task),
        and ``revoke`` has then saved it (its own checkpoint flushes and waits for the same
        outputs) or, if that failed, left it to the next owner to rebuild from the last
        snapshot. Either way its state is exact, and it is no longer this worker's to save.
        """
        partitions = list(self.processors) if partitions is None else partitions
        if not partitions:
            return
        owned = await self.flush(partitions)

        def save() -> None:
            for partition, processor in owned.items():
                dedupe = processor.dedupe
                self.stores[partition].save(
                    processor.snapshot(), dedupe.take_new(), sorted(dedupe.buckets)
                )

        self.timed_save(save)
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for partition, processor in owned.items():
            if processor.next_offset is not None:
                offsets[TopicPartition(self.topic, partition)] = OffsetAndMetadata(
                    processor.next_offset, ""
                )
        if offsets and self.consumer is not None:
            # Informational only (lag, the detect stage's idle check): the snapshot holds the
            # truth. Bounded: with the group coordinator gone, aiokafka's commit waits for it
            # indefinitely, which stalled checkpoints and made SIGTERM hang during an outage.
            try:
                await asyncio.wait_for(self.consumer.commit(offsets), timeout=5.0)
            except (KafkaError, TimeoutError) as exc:
                log.debug("offset commit failed: %r", exc)
        try:
            await asyncio.wait_for(self._send_marks(list(owned)), timeout=5.0)
        except (KafkaError, TimeoutError) as exc:  # advisory: the next checkpoint sends newer
            log.debug("watermark marks not sent: %r", exc)

    async def _send_marks(self, partitions: list[int]) -> None:
        """Tell readers of the rollups how far each input partition's event time has got.

        Sent (best effort, after the checkpoint's flush acknowledged every rollup before
        it) to every rollups partition:
        a reader that has seen input partition P's mark W on all of them has seen all of
        P's windows up to W (the detect stage's watermark waits for the slowest P).
        """
        assert self.producer is not None
        topic = self.config.kafka.topics.rollups
        count = self._partition_counts.get(topic) or await self._partition_count(topic)
        sends = []
        for partition in partitions:
            processor = self.processors.get(partition)  # None: revoked meanwhile
            if processor is None or processor.rollups.watermark == -math.inf:
                continue
            watermark = processor.rollups.watermark
            value = encode_mark(WatermarkMark(partition, watermark))
            key = f"mark/{partition}".encode()
            for target in range(count):
                sends.append(await self.producer.send(topic, value, key=key, partition=target))
        if sends:
            await asyncio.gather(*sends)

    async def _partition_count(self, topic: str) -> int:
        """Output partitions are chosen by ``crc32(key) % count``, in C: aiokafka's default
        murmur2 is pure Python and measured at about 26 us per record."""
        assert self.producer is not None
        count = self._partition_counts[topic] = len(await self.producer.partitions_for(topic))
        return count

    # -- the stage's hooks ------------------------------------------------------

    def connect(self) -> None:
        self.producer = self.new_producer(linger_ms=5, max_batch_size=512 * 1024)
        session_ms = int(self.settings.session_timeout_s * 1000)
        self.consumer = self.new_consumer(
            group_id=self.config.kafka.group_id,
            max_poll_records=self.settings.max_poll_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 4),
        )

    async def start(self) -> None:
        assert self.consumer is not None
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))

    async def loop(self) -> None:
        assert self.consumer is not None
        last_flush = last_checkpoint = time.monotonic()
        # getmany waits inside for the group's assignment: said from a timer, not the loop.
        self._say_timer = asyncio.get_running_loop().call_later(
            self.say_waiting_after_s, self._say_waiting, time.monotonic()
        )
        try:
            await self._read(last_flush, last_checkpoint)
        finally:
            self._say_timer.cancel()

    def _say_waiting(self, started: float) -> None:
        """A start was silent for up to a minute until "partition 0 adopted"; said again
        every ``SAY_WAITING_EVERY_S`` while no partition comes (a restart on a broker that
        waits out the old member's session: one line at 10 s, then 45 s of silence)."""
        if self.consumer is None or self.consumer.assignment() or self.processors:
            return
        self._say_timer = asyncio.get_running_loop().call_later(
            SAY_WAITING_EVERY_S, self._say_waiting, started
        )
        log.info(
            "waiting for consumer group %s to assign partitions of %s (%.0f s so far; a "
            "broker may hold a group's first join for half its session timeout of %.0f s)",
            self.config.kafka.group_id,
            self.topic,
            time.monotonic() - started,
            self.settings.session_timeout_s,
        )

    async def _read(self, last_flush: float, last_checkpoint: float) -> None:
        assert self.consumer is not None
        settings = self.settings
        while not self.stopping.is_set():
            batches = await self.fetch(self.consumer, 100, settings.max_poll_records)
            if batches:
                self._received.append(time.monotonic())
            for tp, messages in batches.items():
                processor = self.processors.get(tp.partition)
                if processor is None:
                    # Assigned, its adoption under way (paused while it waits for the state's
                    # lock; records fetched before the pause): adopting seeks to the
                    # snapshot's offset, so these records are fetched again then. A partition
                    # whose state is unreadable is never adopted: the stage stops instead.
                    continue
                processor.process_batch(messages)
                highwater = self.consumer.highwater(tp)
                if highwater is not None:
                    self.metrics.lag.labels(str(tp.partition)).set(
                        highwater - processor.next_offset
                    )
            now = time.monotonic()
            checkpoint = self.checkpoint_due(now - last_checkpoint)
            if checkpoint:
                step = self.retrying(self.checkpoint, "output")
            elif now - last_flush >= settings.flush_interval_s:
                step = self.retrying(lambda: self.flush(wait=False), "output")
            else:
                continue
            if not await self.checkpoint_unless_stopped(step):
                return
            last_flush = time.monotonic()
            if checkpoint:
                last_checkpoint = last_flush

    async def wind_down(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()  # unsent outputs are redone from the last snapshot
        adopting, self._adopting = self._adopting, {}
        for pending in adopting.values():
            pending.cancel()  # still waiting for a lock: nothing adopted, nothing held
            with contextlib.suppress(asyncio.CancelledError):
                await pending

    def let_go(self) -> None:
        for store in self.stores.values():
            store.release()


async def reset_partition(state_dir: Path, topic: str, partition: int) -> tuple[Path, Path | None]:
    """Set a partition's saved state aside (``--reset-partition``), holding its lock (no
    worker may be using it): the partition is then rebuilt from the events topic.

    Returns the state directory and where it went (None: there was none). Raises
    ``TimeoutError`` while another worker holds the partition.
    """
    store = PartitionStore(state_dir, topic, partition)
    await store.acquire(timeout_s=5.0)
    try:
        return store.dir, store.set_aside(time.time())
    finally:
        store.release()


def _trim(data: bytes) -> bytes:
    """A copy of ``data`` the size of its content.

    orjson 3.13 returns each ``dumps`` result in a buffer of at least 4 KB (measured with
    tracemalloc: 4,097 bytes for a 67-byte key). Outputs wait in ``_unsent`` until acked,
    and a catch-up flush queues tens of thousands: untrimmed, they took the worker past
    3 GB of RSS on 53k events.
    """
    return memoryview(data).tobytes()


def _dead_value(letter: DeadLetter) -> bytes:
    return orjson.dumps(letter.to_wire())
