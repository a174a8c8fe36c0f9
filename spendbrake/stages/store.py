"""The store stage: rollups, traces, alerts and audit records into the DuckDB store.

It reads every partition of ``spend.rollups``, ``spend.traces``, ``spend.alerts`` and
``spend.actions`` (one instance per deployment; a lock file keeps a second one on the
same store standing by) without a consumer group: its offsets live in the store.

Its checkpoint, a write (every ``--flush-interval``, and on shutdown), is step 2 of
``stage.py`` alone: the rows built from the records read since the last write (hourly and
daily rollups only; watermark marks and minute windows are skipped) and the next offset per
topic partition go into ONE DuckDB transaction (``streamer.apply_batch``). On start the
stage seeks to the stored offsets. A crash before the commit loses the batch and its
offsets together, so the records are read again and their rows replace whatever an earlier
run wrote: exactly once, with no broker transaction.

The DuckDB file is opened for each write and closed after it, so ``spendbrake report``
can open it read-only between writes.

A store file that cannot be opened or written (corrupt, deleted under the stage, a full or
read-only disk) stops only this stage's reading, never the worker: the store is for reports
and the digest, and the worker stopping took alerts and pauses down with it (a restart
loop, with nothing detected meanwhile). The stage says why at ERROR, with what to do, and
tries the file again, backing off to a minute; once it opens, the stage drops what it had
read since the last write and reads on from the offsets the file holds (none: a new file,
read from the topics' start). Nothing is lost or counted twice, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from spendbrake.schemas import (
    Config,
    RollupRecord,
    StateUnreadable,
    WatermarkMark,
    decode_rollup,
)
from spendbrake.streamer import (
    StoreBatch,
    StoreBusy,
    TracePartial,
    apply_batch,
    drop_trace_weeks,
    load_offsets,
    opened,
)

from .metrics import StoreMetrics
from .stage import Stage, WorkerSettings, confirmed_ends, inputs_committed

log = logging.getLogger(__name__)

#: How ``RollupRecord.to_wire`` (orjson) spells a minute window; anything else is decoded
#: and filtered by ``StoreBatch.add_rollup``.
_MINUTE = b'"window_s":60,'
#: Write early when this many rows are waiting (a catch-up reads fast).
MAX_BATCH_ROWS = 200_000
#: Seconds between tries of a store file that cannot be opened or written (doubling up to).
RETRY_MAX_S = 60.0
#: What a store file that cannot be opened or written raises (``_with_file``).
FILE_ERRORS = (StateUnreadable, duckdb.Error, OSError)

T = TypeVar("T")


def store_path(config: Config, state_dir: str | Path) -> Path:
    """``store.path`` from the config, else ``<state-dir>/store/spend.duckdb``."""
    if config.store.path:
        return Path(config.store.path)
    return Path(state_dir) / "store" / "spend.duckdb"


class StoreStage(Stage):
    """Keeps the report store in step with the output topics, exactly once."""

    name = "store"
    rereads = True

    def __init__(self, config: Config, settings: WorkerSettings, path: Path | None = None) -> None:
        super().__init__(config, settings)
        self.path = path or store_path(config, settings.state_dir)
        topics = config.kafka.topics
        self.rollups_topic = topics.rollups
        self.topics = {
            topics.rollups: self._rollup,
            topics.traces: self._traces,
            topics.alerts: self._alert,
            topics.actions: self._action,
        }
        #: Next offset to read per (topic, partition), as far as records were batched.
        self.offsets: dict[tuple[str, int], int] = {}
        self.batch = StoreBatch()
        self.metrics = StoreMetrics()
        self._dirty = False
        #: Held while the file is open for a write; readers in this process (the digest
        #: schedule) take it too: DuckDB refuses a second connection of another mode.
        self.file_lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        #: Asks the ingest group's commits (``complete_until``).
        self._probe: AIOKafkaConsumer | None = None
        #: (rollups partition, input partition) -> the input's watermark as of the records
        #: written (``_marks``: read since the last write). Every rollups partition gets
        #: every input partition's marks; a mark follows the windows it covers.
        self.marks: dict[tuple[int, int], float] = {}
        self._marks: dict[tuple[int, int], float] = {}
        self._rollup_partitions: list[int] = []
        self._tps: list[TopicPartition] = []
        #: The store file could not be opened or written at the last try (``_failing``).
        self._file_failing = False
        #: The partition whose records are being handled (a mark is that partition's).
        self._reading = TopicPartition("", 0)
        #: Next offset per (topic, partition) as of the last write (what the file holds).
        self._written: dict[tuple[str, int], int] = {}
        #: Inputs the ingest had committed to their end (offset each) and the rollups'
        #: end offsets read just after, at the last ``complete_until``.
        self._committed: tuple[dict[int, int], dict[TopicPartition, int]] = ({}, {})

    def reconfigure(self, config: Config) -> list[str]:
        """The store takes every rollup whatever the config; its file is fixed while running."""
        notes = []
        if config.store != self.config.store:
            notes.append("store.path: applied at the next restart")
        self.config = config.model_copy(update={"store": self.config.store})
        return notes

    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def connect(self) -> None:
        self.consumer = self.new_consumer(fetch_max_bytes=16 * 1024 * 1024)
        self._probe = self.new_consumer(group_id=self.config.kafka.group_id)

    async def start(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        self._tps = await self.assign(consumer, *self.topics)
        self._rollup_partitions = [
            tp.partition for tp in self._tps if tp.topic == self.rollups_topic
        ]
        await self.read_from_file()

    async def read_from_file(self) -> None:
        """Read on from the offsets the store file holds, once it opens: what was read since
        the last write is dropped (it is read again), and so are the watermarks it carried."""
        offsets = await self._with_file(lambda: _stored_offsets(self.path), "opened")
        if offsets is None:
            return  # stopped first
        log.info("store %s opened at offsets %s", self.path, offsets or "(none)")
        self.offsets, self._written = offsets, dict(offsets)
        self.batch, self.marks, self._marks = StoreBatch(), {}, {}
        self._dirty = False
        assert self.consumer is not None
        moved = await self.seek(
            self.consumer, self._tps, lambda tp: self.offsets.get((tp.topic, tp.partition))
        )
        if moved:
            self.offsets.update({(tp.topic, tp.partition): offset for tp, offset in moved.items()})
            self._dirty = True  # saved at the next write, rows or not

    def repositioned(self, moved: dict[TopicPartition, int]) -> None:
        self.offsets.update({(tp.topic, tp.partition): offset for tp, offset in moved.items()})
        self._dirty = True  # saved at the next write, rows or not

    async def loop(self) -> None:
        assert self.consumer is not None
        last_write = time.monotonic()
        while not self.stopping.is_set():
            batches = await self.fetch(self.consumer, 200, 20_000)
            for tp, messages in batches.items():
                handle = self.topics[tp.topic]
                self._reading = tp
                for message in messages:
                    handle(message.value)
                offset = self.offsets[(tp.topic, tp.partition)] = messages[-1].offset + 1
                self.metrics.records.labels(tp.topic).inc(len(messages))
                if (highwater := self.consumer.highwater(tp)) is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(highwater - offset)
                self._dirty = True
            due = time.monotonic() - last_write >= self.settings.flush_interval_s
            if self._dirty and (due or len(self.batch) >= MAX_BATCH_ROWS):
                await self.checkpoint()
                last_write = time.monotonic()

    async def final_checkpoint(self) -> None:
        # Not bounded by STOP_TIMEOUT_S: the write waits on no broker, and cut short it
        # would leave DuckDB's thread committing while the process exits.
        await self.checkpoint()

    async def checkpoint(self) -> None:
        """Commit the batch and its offsets in one transaction (off the event loop)."""
        if not self._dirty:
            return
        batch, offsets, marks = self.batch, dict(self.offsets), self._marks
        while True:
            try:
                async with self.file_lock:
                    with self.metrics.writes.time():
                        await asyncio.to_thread(self._apply, batch, offsets)
                break
            except StoreBusy as exc:
                # A report holds the file: the records wait, nothing is lost.
                log.warning("%s; retrying", exc)
                if self.stopping.is_set():
                    raise
            except FILE_ERRORS as exc:
                self._failing(exc, "written")
                if not self.stopping.is_set():
                    await self.read_from_file()
                return  # stopped: what was read since the last write is read again at a start
        self._failing(None, "written")
        self.metrics.rows.inc(len(batch))
        self.batch = StoreBatch()
        self.marks.update(marks)
        self._marks = {}
        self._written = offsets
        self._dirty = False

    async def complete_until(self) -> float | None:
        """Event time up to which every input partition's spend is in the store file.

        The slowest input partition's watermark among the marks written with the rollups
        (a mark follows the windows it covers, on every rollups partition). A partition
        the ingest has committed to its end no longer holds it back once the file holds
        every rollup written before that commit: the rollups' ends read just after it
        (one call: a store caught up, as at a start), or at the last call for a partition
        still committed at the same offset (two calls: a busy store is always a little
        behind the topic's end). ``-inf`` while anything is unknown (no mark yet, the
        broker unreachable): the digest waits for it, not the other way round. None
        before the stage has taken its partitions: it cannot tell yet (the digest asks
        again soon, and says nothing of waiting).
        """
        probe = self._probe
        if probe is None or not self._rollup_partitions:
            return None
        events = self.config.kafka.topics.events
        try:
            # Once, not ``Stage.partitions``'s wait: the schedule asks again a minute later.
            inputs = probe.partitions_for_topic(events)
            if not inputs:
                await probe.topics()
                inputs = probe.partitions_for_topic(events) or set()
            committed = await inputs_committed(probe, events, sorted(inputs), self.config.kafka)
            # Read after the commits: every rollup of a committed event lies below these.
            rollups = [TopicPartition(self.rollups_topic, r) for r in self._rollup_partitions]
            ends = await probe.end_offsets(rollups)
            written = self._written
            reached = [
                tp for tp, end in ends.items() if written.get((tp.topic, tp.partition), 0) >= end
            ]
            ends = await confirmed_ends(probe, self.config.kafka, ends, reached)
        except KafkaError as exc:
            log.debug("store: could not ask how far the ingest is (%s)", exc)
            return -math.inf
        before, before_ends = self._committed
        self._committed = (committed, ends)
        if not inputs:
            return -math.inf

        def holds(at: dict[TopicPartition, int]) -> bool:
            """The file holds every rollup below these ends."""
            return all(written.get((tp.topic, tp.partition), 0) >= end for tp, end in at.items())

        counted: set[int] = set()
        if holds(ends):
            counted = set(committed)
        elif holds(before_ends):
            counted = {p for p, offset in committed.items() if before.get(p) == offset}
        return min(
            (
                min(self.marks.get((r, p), -math.inf) for r in self._rollup_partitions)
                for p in inputs
                if p not in counted
            ),
            default=math.inf,
        )

    async def _with_file(self, work: Callable[[], T], done: str) -> T | None:
        """``work()`` on the store file, in a thread under the file lock, tried until it
        succeeds (None: stopped first); ``done`` says what it does, for the log."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                async with self.file_lock:
                    result = await asyncio.to_thread(work)
            except StoreBusy as exc:
                log.warning("%s; retrying", exc)
                continue
            except FILE_ERRORS as exc:
                self._failing(exc, done, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._failing(None, done)
            return result
        return None

    def _failing(self, exc: BaseException | None, done: str, retry_s: float | None = None) -> None:
        """Say (and count) that the store file cannot be ``done``, or that it can again."""
        if exc is None:
            if self._file_failing:
                log.warning("store %s: %s again; reading on", self.path, done)
            self._file_failing = False
            self.metrics.failing.set(0)
            return
        self._file_failing = True
        self.metrics.failing.set(1)
        self.metrics.file_errors.inc()
        when = f"trying again in {retry_s:.0f} s" if retry_s else "trying again"
        what = (
            str(exc)
            if isinstance(exc, StateUnreadable)
            else f"{self.path} cannot be {done} ({exc})"
        )
        log.error(
            "store stage: %s; the other stages go on, the store and the digest wait; %s", what, when
        )

    def _apply(self, batch: StoreBatch, offsets: dict[tuple[str, int], int]) -> None:
        with opened(self.path) as con:
            apply_batch(con, batch, offsets)
            weeks = self.config.store.trace_weeks
            if weeks is not None and (dropped := drop_trace_weeks(con, weeks)):
                log.info(
                    "store: dropped %d week(s) of trace partials, %s to %s (store.trace_weeks: %d)",
                    len(dropped),
                    dropped[0],
                    dropped[-1],
                    weeks,
                )

    # -- records -----------------------------------------------------------------

    def _skip(self) -> None:
        self.metrics.skipped.labels(self._reading.topic).inc()

    def _decode(self, value: bytes | None) -> Any:
        if value is None:
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            self._skip()
            log.warning("store: skipped a record that is not JSON")
            return None

    def _rollup(self, value: bytes | None) -> None:
        if value is not None and _MINUTE in value:
            return  # minute windows are never stored: skip the decode
        if value is None:
            return
        try:
            record = decode_rollup(value)
        except ValueError as exc:
            self._skip()
            log.warning("store: skipped a rollups record: %s", str(exc)[:300])
            return
        if isinstance(record, RollupRecord):
            self.batch.add_rollup(record)
        elif isinstance(record, WatermarkMark):
            at = (self._reading.partition, record.mark)
            if record.watermark > self._marks.get(at, self.marks.get(at, -math.inf)):
                self._marks[at] = record.watermark

    def _traces(self, value: bytes | None) -> None:
        if (data := self._decode(value)) is None:
            return  # a tombstone, or junk counted by ``_decode``
        try:
            for partial in data["traces"]:
                self.batch.add_trace(TracePartial.from_wire(partial))
        except (KeyError, TypeError, ValueError):
            self._skip()

    def _alert(self, value: bytes | None) -> None:
        if (data := self._decode(value)) is None:
            return  # a tombstone, or junk counted by ``_decode``
        try:
            self.batch.add_alert(data)
        except (KeyError, TypeError, ValueError):
            self._skip()  # junk on the alerts topic: the action stage audits it

    def _action(self, value: bytes | None) -> None:
        if (data := self._decode(value)) is None:
            return  # a tombstone, or junk counted by ``_decode``
        try:
            self.batch.add_action(data)
        except (KeyError, TypeError, ValueError):
            self._skip()


def _stored_offsets(path: Path) -> dict[tuple[str, int], int]:
    with opened(path) as con:
        return load_offsets(con)
