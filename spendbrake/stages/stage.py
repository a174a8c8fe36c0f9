"""The stage skeleton: the lifecycle every stage of ``spendbrake worker`` shares.

A stage reads a Kafka topic, keeps state, and writes outputs (records, Slack messages,
gateway calls, DuckDB rows). It is exact without broker transactions because its state is
saved *with the input offsets it reflects*, and every output is keyed, so that redoing the
work since the last save (after a crash) overwrites instead of adding.

A checkpoint, for every stage, in this order:

1. flush the outputs and wait for the broker's acks (ingest: rollups, dead letters,
   traces and unpriced-model alerts; detect: alerts);
2. save the state together with the next input offsets, atomically: a reader finds the
   old save or the new one, never half (ingest: each partition's ``snapshot.json`` after
   its new dedupe ids; detect: ``detect/snapshot.json``; act: ``actions/outbox.json``;
   store: its rows and offsets in one DuckDB transaction, steps 1 and 2 at once);
3. commit the offsets to Kafka, for monitoring only: lag, and the detect stage's check
   that the ingest is caught up (ingest only; the saved state is the truth).

The ingest and detect stages checkpoint every ``checkpoint_interval_s``, or less often when
saving is slow: step 2 runs on the event loop every stage shares, and at 100k series the
detect stage's snapshot takes about 2 s, so a save is spaced out to take at most
``SAVE_SHARE`` of the time (``checkpoint_due``). A sparser save costs only what a crash
redoes: the work since the last save, whose outputs are keyed.

A crash between any two steps is safe: on the next start the stage restores the last
save, seeks to its offsets and does again what came after. Outputs sent twice carry the
same key and absolute values, so readers keep one. The act stage turns the order round on
purpose (an outbox): its outputs are effects (Slack, gateway), so step 2 saves the effects
it *plans* with the offset before step 1 performs them; each attempt is saved before it
can have an effect, and effects are idempotent or looked for before being repeated.

``Stage.run`` is the lifecycle, the same for all four:

1. a one-per-deployment stage takes its lock file (``lock_path``); while another process
   holds it, it waits as a hot standby;
2. ``load``: read the saved state; state that cannot be read raises ``StateUnreadable``
   (one line naming the file and the way out), never a fresh start that would count or
   act twice;
3. ``connect`` builds the Kafka clients (no I/O), ``open`` starts local servers;
4. ``start``: start the clients (retried while the broker is away), assign or subscribe,
   seek to the saved offsets, or to the log start for one outside its partition (records
   deleted unread, a re-created topic: ``offsets.py``); a stop ends it at once;
5. ``loop`` until stopped, checkpointing as it goes (``checkpoint_unless_stopped``);
6. ``final_checkpoint``, bounded by ``STOP_TIMEOUT_S``: a stop during a broker outage does
   not wait for the broker (the store's waits on none and is not bounded); skipped if a
   stop cancelled a checkpoint (``until_stopped``);
7. ``wind_down``, then close readers, ``let_go``, close writers (each client gets
   ``CLOSE_TIMEOUT_S``), then the lock; a stage that stopped itself (``fatal``) raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from spendbrake.schemas import Config, KafkaConfig, SpendBrakeError

from .metrics import OffsetMetrics
from .offsets import offset_gap

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a stop waits for a stage's checkpoint in progress, its final checkpoint, or
#: the act stage's lanes.
STOP_TIMEOUT_S = 10.0
#: How long a stop waits for each Kafka client to close.
CLOSE_TIMEOUT_S = 5.0
#: The share of a stage's time its periodic saves may take (``Stage.checkpoint_due``).
SAVE_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    state_dir: Path
    flush_interval_s: float = 1.0
    checkpoint_interval_s: float = 5.0
    lateness_s: float = 600.0
    dedupe_horizon_s: float = 7 * 86400
    max_poll_records: int = 10_000
    #: A worker that stops heartbeating this long is dropped from the group and its
    #: partitions move on: how long a killed worker's partitions wait, and how long the
    #: event loop (shared by every stage of ``spendbrake worker``) may be busy before a
    #: live worker is taken for dead. Kafka's own default is 45 s, its floor 6 s
    #: (``group.min.session.timeout.ms``); the tests use 6 s to fail over fast.
    session_timeout_s: float = 30.0
    #: Port for `spendbrake worker` to serve every stage's Prometheus /metrics on (None: off).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: Where the act stage starts reading alerts when it has no saved state: ``saved`` (the
    #: default) refuses to start if the alerts topic holds any, since acting on them again
    #: re-posts every alert and re-pauses keys (a state directory lost with its volume);
    #: ``earliest`` acts on them all; ``latest`` on new ones only.
    act_from: str = "saved"
    #: Seconds between the worker's progress lines (``stages.progress``; 0: none).
    progress_s: float = 60.0


class OutputFailed(KafkaError):
    """Some output records were not acknowledged; the step is retried."""


class RecordTooLarge(SpendBrakeError):
    """An output record the producer or the broker refused as too large
    (``MessageSizeTooLargeError``): sent again, it is refused again, and a stage retrying it
    forever sent nothing else meanwhile. The stage stops instead, once, with one line naming
    the record; what it had not saved is redone from its last save at the next start."""

    def __init__(self, topic: str, key: bytes | None, size: int) -> None:
        self.topic, self.key, self.size = topic, key, size
        shown = (key or b"").decode(errors="replace")[:200]
        super().__init__(
            f"{topic}: record {shown!r} of {size:,} bytes refused as too large (Kafka's "
            "default limit is 1 MB: max.request.size, message.max.bytes); the stage stopped "
            "rather than retry it forever"
        )


class Stage:
    """One stage: the lifecycle (``run``) here, what is particular to it in the hooks.

    A subclass sets ``name`` and implements ``start``, ``loop`` and ``checkpoint``; the
    other hooks do nothing unless overridden. Helpers for the hooks: ``new_producer`` and
    ``new_consumer`` (clients the skeleton starts and closes), ``retrying``, ``fetch``,
    ``assign``, ``partitions``, ``seek`` (with ``check_saved``), ``checkpoint_unless_stopped``.
    """

    #: The stage's name in ``--stages`` and in log lines.
    name: ClassVar[str]
    #: Whether an idle fetch looks for a topic re-created under it (``reread_recreated``).
    rereads: ClassVar[bool] = False

    def __init__(self, config: Config, settings: WorkerSettings) -> None:
        self.config = config
        self.settings = settings
        self.stopping = asyncio.Event()
        #: A stop cancelled a checkpoint: nothing more may be saved (``until_stopped``).
        self.abandoned = False
        #: Why the stage stopped on its own (state it cannot read): ``run`` raises it.
        self.fatal: SpendBrakeError | None = None
        self._readers: list[Any] = []
        self._writers: list[Any] = []
        self._lock: IO[bytes] | None = None
        #: Seconds the last save of state took (``timed_save``).
        self.save_s = 0.0
        #: Saved offsets found out of range (``check_saved``); ``Worker`` gives its stages one.
        self.offset_metrics = OffsetMetrics()
        #: The highest high watermark each partition read has shown (``reread_recreated``).
        self._highwaters: dict[TopicPartition, int] = {}

    def stop(self) -> None:
        self.stopping.set()

    def reconfigure(self, config: Config) -> list[str]:
        """Apply a reloaded config from the next record on; return notes on what waits for a
        restart. Raise to refuse it (every stage then goes back to the config in force)."""
        self.config = config
        return []

    # -- the lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        lock = self.lock_path()
        if lock is not None:
            try:
                self._lock = await standby_lock(lock, self.stopping, f"{self.name} stage")
            except asyncio.CancelledError:
                return  # stopped while standing by
        try:
            self.load()
            if self.stopping.is_set():
                return
            self.connect()
            try:
                await self.open()
                # Starting waits on the broker (metadata, offset resets): a stop must not.
                if await until_stopped(self._start(), self.stopping):
                    await self.loop()
                    if not self.abandoned:
                        await self.final_checkpoint()
            finally:
                await self.wind_down()
                for client in self._readers:
                    await close_quietly(client)
                self.let_go()
                for client in self._writers:
                    await close_quietly(client)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        if self.fatal is not None:
            raise self.fatal

    async def _start(self) -> None:
        for client in (*self._writers, *self._readers):
            await self.retrying(client.start, f"kafka {type(client).__name__} start")
        await self.start()

    # -- hooks -----------------------------------------------------------------------

    def lock_path(self) -> Path | None:
        """The lock file of a one-per-deployment stage (None: the stage locks nothing here)."""
        return None

    def load(self) -> None:
        """Read the saved state; raise ``StateUnreadable`` if it cannot be read."""

    def connect(self) -> None:
        """Build the Kafka clients with ``new_producer``, ``new_consumer`` (no I/O yet)."""

    async def open(self) -> None:
        """Start what needs no broker (the act stage's Slack button server)."""

    async def start(self) -> None:
        """Assign or subscribe, and seek to the saved offsets (the clients are started)."""
        raise NotImplementedError

    async def loop(self) -> None:
        """Read, process and checkpoint until ``stopping`` is set."""
        raise NotImplementedError

    async def checkpoint(self) -> None:
        """Steps 1 to 3 of the module docstring."""
        raise NotImplementedError

    async def final_checkpoint(self) -> None:
        """The checkpoint a stop makes, bounded by ``STOP_TIMEOUT_S`` (see ``until_stopped``)."""
        try:
            await asyncio.wait_for(self.checkpoint(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "%s: the final checkpoint did not finish within %.0fs (broker unreachable?); "
                "the work since the last snapshot is redone from it at the next start",
                self.name,
                STOP_TIMEOUT_S,
            )

    async def wind_down(self) -> None:
        """Stop the stage's own tasks, after the loop ended (or failed, or never started)."""

    def let_go(self) -> None:
        """Let go of the state the readers fed (the ingest's partition locks), once they are
        closed (no rebalance can still call back) and before the writers close."""

    # -- helpers for the hooks ---------------------------------------------------------

    def timed_save(self, save: Callable[[], None]) -> None:
        """Run ``save`` (step 2: encode and write the state), noting how long it took."""
        started = time.monotonic()
        save()
        self.save_s = time.monotonic() - started

    def checkpoint_due(self, since_s: float) -> bool:
        """Whether a periodic checkpoint is due ``since_s`` seconds after the last one: every
        ``checkpoint_interval_s``, and no more often than keeps saving (``save_s``) within
        ``SAVE_SHARE`` of the time."""
        return since_s >= max(self.settings.checkpoint_interval_s, self.save_s / SAVE_SHARE)

    def new_producer(self, **options: Any) -> AIOKafkaProducer:
        """A producer whose sends wait for every in-sync replica (no idempotence: the
        embedded broker has no InitProducerId); started first, closed last."""
        kafka = self.config.kafka
        producer = AIOKafkaProducer(
            **kafka.client_args(), acks="all", enable_idempotence=False, **options
        )
        self._writers.append(producer)
        return producer

    def new_consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A consumer that commits nothing on its own and reads a partition with no saved
        offset from its start; started after the producers, closed first."""
        kafka = self.config.kafka
        consumer = AIOKafkaConsumer(
            **kafka.client_args(), enable_auto_commit=False, auto_offset_reset="earliest", **options
        )
        self._readers.append(consumer)
        return consumer

    async def retrying(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``step()`` until it does not raise a Kafka error, backing off from 0.5 s
        to 10 s; once a stop is asked, the error is raised instead."""
        delay = 0.5
        while True:
            try:
                return await step()
            except KafkaError as exc:
                if self.stopping.is_set():
                    raise
                log.warning("%s: %s failed (%s); retrying in %.1fs", self.name, what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def fetch(
        self, consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Any]]:
        """One ``getmany``; a Kafka error is logged and waited out (nothing fetched).

        Each fetch also looks for a topic re-created under the stage (``reread_recreated``).
        """
        try:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            log.warning("%s: fetch failed (%s); retrying", self.name, exc)
            await asyncio.sleep(1.0)
            return {}
        if self.rereads:
            await self.reread_recreated(consumer)
        return batches

    async def reread_recreated(self, consumer: AIOKafkaConsumer) -> None:
        """Read from its start a partition whose topic was re-created under the running
        stage (a restart of the embedded broker: Tansu keeps topics in memory only).

        ``seek`` checks saved offsets when the stage takes its partitions; a stage with no
        consumer group (detect, act, store) takes them once, so after a broker restart it
        waited at its old offset, where Tansu answers with nothing: the new topic's records
        below it (rollups, alerts: pauses) were never read. The sign, at no cost: a fetch's
        high watermark below the highest one seen, and below the read position (a live
        partition's never goes down; the read position alone is not enough, Tansu's high
        watermark can lag its last batch while the topic is being re-created).
        ``check_saved`` confirms it, says it and counts it, and ``repositioned`` lets the
        stage's state take the new offset. The ingest is left out: its group is lost with
        the broker and its partitions are assigned again, through ``seek``.
        """
        past: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            seen = self._highwaters.get(tp, highwater)
            self._highwaters[tp] = max(seen, highwater)
            if highwater < seen:
                position = await consumer.position(tp)
                if position > highwater:
                    past[tp] = position
        if not past:
            return
        moved = await self.check_saved(consumer, past)
        for tp in past:
            if tp in moved:
                consumer.seek(tp, moved[tp])
                del self._highwaters[tp]  # the re-created partition's own are new
            else:
                # The end, confirmed by a fetch, is past the position after all: its lower
                # answer is taken, not checked again at every fetch.
                self._highwaters[tp] = consumer.highwater(tp) or 0
        if moved:
            self.repositioned(moved)

    def repositioned(self, moved: dict[TopicPartition, int]) -> None:
        """The stage now reads these partitions from these offsets (``reread_recreated``):
        its state takes them, so that its next save holds them."""

    async def partitions(self, consumer: AIOKafkaConsumer, topic: str) -> list[int]:
        """The partitions of ``topic``, waiting for the broker to know it."""
        while True:
            found = consumer.partitions_for_topic(topic)
            if found:
                return sorted(found)
            try:
                await consumer.topics()  # refresh metadata
            except KafkaError as exc:
                log.warning("%s: no metadata for %s yet (%s); retrying", self.name, topic, exc)
            await asyncio.sleep(0.5)

    async def assign(self, consumer: AIOKafkaConsumer, *topics: str) -> list[TopicPartition]:
        """Assign every partition of ``topics`` (no consumer group); returns them."""
        tps = [TopicPartition(t, p) for t in topics for p in await self.partitions(consumer, t)]
        consumer.assign(tps)
        return tps

    async def seek(
        self,
        consumer: AIOKafkaConsumer,
        tps: Iterable[TopicPartition],
        saved: Callable[[TopicPartition], int | None],
    ) -> dict[TopicPartition, int]:
        """Seek each partition to its saved offset, checked against what the partition
        holds (``check_saved``); one with none is read from its start.

        Returns the partitions whose saved offset was outside, with the log start they now
        resume at: the caller's state takes it, so that its next save holds it (saved
        again as it was, a restart before a record came would report the same gap again).
        """
        known: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = saved(tp)
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                known[tp] = offset
        moved = await self.check_saved(consumer, known)
        for tp, offset in known.items():
            consumer.seek(tp, moved.get(tp, offset))
        return moved

    async def check_saved(
        self, consumer: AIOKafkaConsumer, saved: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The saved offsets outside their partition (``offsets.offset_gap``), each logged
        and counted, with the log start to resume at instead.

        Asked of the broker rather than left to aiokafka: it resets an offset out of range
        with an INFO line (Apache Kafka), or not at all (Tansu, past the end: it then waits
        at the saved offset and skips what a re-created topic holds below it).
        """
        if not saved:
            return {}
        tps = list(saved)
        starts = await self.retrying(lambda: consumer.beginning_offsets(tps), "log start offsets")
        ends = await self.retrying(lambda: consumer.end_offsets(tps), "log end offsets")
        # Past the end by ListOffsets' answer: asked again of a fetch. Tansu's answer is
        # low, and every caught-up partition looked re-created.
        beyond = [tp for tp, offset in saved.items() if offset > ends[tp]]
        kafka = self.config.kafka
        ends = await self.retrying(
            lambda: confirmed_ends(consumer, kafka, ends, beyond), "log end offsets"
        )
        moved = {}
        for tp, offset in saved.items():
            gap = offset_gap(offset, starts[tp], ends[tp])
            if gap is not None:
                log.warning("%s", gap.describe(self.name, tp.topic, tp.partition))
                self.offset_metrics.count(self.name, tp.topic, tp.partition, gap)
                moved[tp] = gap.resume_at
        return moved

    async def checkpoint_unless_stopped(self, step: Awaitable[object]) -> bool:
        """A checkpoint (or flush) in the loop: a stop gives it ``STOP_TIMEOUT_S`` to end.

        False: it was cancelled; the stage saves nothing more (``abandoned``) and its loop
        returns.
        """
        if await until_stopped(step, self.stopping, STOP_TIMEOUT_S):
            return True
        log.warning(
            "%s: stopped during a checkpoint the broker did not finish within %.0fs; the work "
            "since the last snapshot is redone from it at the next start",
            self.name,
            STOP_TIMEOUT_S,
        )
        self.abandoned = True
        return False


async def fetched_ends(
    kafka: KafkaConfig, ends: dict[TopicPartition, int], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The end offsets of non-empty partitions, as a fetch's high watermark gives them.

    ``ends`` are ListOffsets' answers (``end_offsets``). Tansu, the embedded broker, answers
    with its last record batch's first offset plus one, not the offset after its last
    record (measured with tansu 0.6: ten records sent in one batch at offsets 0-9, end
    offset 1), while its fetch answers carry the right high watermark. Taken at face value,
    a stage that had read a partition to its end found its saved offset "beyond the log
    end" at every restart and rebalance and read the whole partition again: the ingest sent
    every event older than its 7-day dedupe memory to the DLQ. A fetch from the last offset
    ListOffsets vouches for costs one short-lived consumer; a partition whose fetch does
    not answer within ``timeout_s`` keeps ListOffsets' answer.
    """
    if not ends:
        return {}
    consumer = AIOKafkaConsumer(**kafka.client_args(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, max(end - 1, 0))
        found: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(ends) and (left := deadline - time.monotonic()) > 0:
            await consumer.getmany(
                *(tp for tp in ends if tp not in found), timeout_ms=int(left * 1000)
            )
            for tp in ends:
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    found[tp] = max(ends[tp], highwater)
        return {tp: found.get(tp, end) for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def inputs_committed(
    probe: AIOKafkaConsumer, events_topic: str, partitions: Iterable[int], kafka: KafkaConfig
) -> dict[int, int]:
    """Input partitions the ingest group (``probe``'s) has committed to their end offset
    (it commits only after their rollups are acknowledged), with that offset."""
    tps = [TopicPartition(events_topic, p) for p in partitions]
    if not tps:
        return {}
    ends = await probe.end_offsets(tps)
    found: dict[TopicPartition, int] = {}
    for tp in tps:
        committed = await probe.committed(tp)
        if ends[tp] == 0 or (committed is not None and committed >= ends[tp]):
            found[tp] = committed or 0
    ends = await confirmed_ends(probe, kafka, ends, found)
    return {tp.partition: offset for tp, offset in found.items() if offset >= ends[tp]}


async def confirmed_ends(
    consumer: AIOKafkaConsumer,
    kafka: KafkaConfig,
    ends: dict[TopicPartition, int],
    reached: Iterable[TopicPartition],
) -> dict[TopicPartition, int]:
    """``ends`` (ListOffsets' answers) with those of the non-empty partitions ``reached``
    asked again of a fetch (``fetched_ends``): Tansu answers short of the end, and a
    partition read, committed or saved at that answer looked caught up (or re-created)
    with its last batch unread. Only the partitions named cost a fetch; one emptied by
    retention has no last record to fetch and keeps its answer."""
    asked = [tp for tp in reached if ends[tp] > 0]
    if not asked:
        return ends
    starts = await consumer.beginning_offsets(asked)
    suspect = {tp: ends[tp] for tp in asked if ends[tp] > starts[tp]}
    return {**ends, **await fetched_ends(kafka, suspect)} if suspect else ends


async def inputs_counted(
    probe: AIOKafkaConsumer,
    reader: AIOKafkaConsumer,
    events_topic: str,
    partitions: Iterable[int],
    kafka: KafkaConfig,
) -> list[int]:
    """Input partitions whose every event is counted (``inputs_committed``) and whose
    rollups ``reader`` has read: it has read each partition assigned to it to its end. A
    partition that is merely behind (a backlog after downtime) is not."""
    found = await inputs_committed(probe, events_topic, partitions, kafka)
    if not found:
        return []
    # Asked after the commits were read: the rollups of every committed event were
    # acknowledged before that commit, so they lie below these end offsets.
    read_ends = await probe.end_offsets(list(reader.assignment()))
    positions = {tp: await reader.position(tp) for tp in read_ends}
    if any(positions[tp] < end for tp, end in read_ends.items()):
        return []  # not everything the ingest wrote has been read yet
    read_ends = await confirmed_ends(probe, kafka, read_ends, read_ends)
    if any(positions[tp] < end for tp, end in read_ends.items()):
        return []
    return list(found)


async def until_stopped(
    step: Awaitable[object], stopping: asyncio.Event, grace_s: float = 0.0
) -> bool:
    """Await ``step``; if a stop is asked first and ``step`` does not end within ``grace_s``
    more, cancel it and return False.

    A checkpoint during a broker outage waits on the broker for as long as the outage lasts;
    a stop must not. A cancelled checkpoint saved nothing, and its caller must then save
    nothing more (outputs it took from the processors may be unsent): the last snapshot
    stands and the work since is redone at the next start, exactly as after a crash.
    """
    task = asyncio.ensure_future(step)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done() and grace_s > 0:
        await asyncio.wait({task}, timeout=grace_s)
    if task.done():
        task.result()  # its exception, if any
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, KafkaError):
        await task
    return False


async def close_quietly(client: Any, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Stop an aiokafka client whatever state the connection is in.

    During a broker outage aiokafka's ``consumer.stop()`` can raise the CancelledError of
    its own fetch task; that must not turn a clean shutdown (state already saved) into a
    crash. Our own cancellation still propagates. A producer's ``stop()`` waits for its
    queued batches, which in an outage means aiokafka's request timeouts: it gets
    ``timeout_s`` (what it still held is redone from the last snapshot at the next start).
    """
    try:
        await asyncio.wait_for(client.stop(), timeout_s)
    except TimeoutError:
        log.warning("closing %s timed out after %.0fs", type(client).__name__, timeout_s)
    except KafkaError as exc:
        log.debug("closing %s: %r", type(client).__name__, exc)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def standby_lock(path: Path, stopping: asyncio.Event, what: str) -> IO[bytes]:
    """Hold the lock file ``path`` for a one-per-deployment stage; while another process
    holds it, wait as a hot standby. Raises ``CancelledError`` if ``stopping`` is set first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - held while the stage runs
    waiting = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not waiting:
                log.info("another %s holds %s; standing by", what, path)
                waiting = True
            if stopping.is_set():
                handle.close()
                raise asyncio.CancelledError from None
            await asyncio.sleep(0.5)
