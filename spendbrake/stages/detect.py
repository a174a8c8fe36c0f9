"""The detector stage: ``spend.rollups`` in, ``spend.alerts`` out, state kept with offsets.

It reads every partition of the rollups topic (one instance per deployment: the watch
must see all series to group an incident across scopes; a lock file keeps a second
instance on the same state from starting), feeds ``detectors.SpendWatch`` and applies the
policies, exactly the code ``spendbrake replay`` runs.

Its checkpoint (the order of ``stage.py``) waits for the alerts sent so far, then replaces
``<state_dir>/detect/snapshot.json``: the watch's state (baselines, open incidents, budget
thresholds fired) and the next rollup offset per partition, as plain versioned JSON
(``SpendWatch.snapshot``), no pickles. After a crash the stage restores the snapshot and
re-reads rollups from the stored offsets, so it learns nothing twice and forgets nothing.
Alerts sent after the last snapshot are sent again with the same key (``id#seq``), by the
same deterministic code: readers keep one record per key, so an alert is never acted on
twice.

Releases until 2026-12-05 pickled the state to ``snapshot.pkl``: the stage reads such a
file one last time on start, saves ``snapshot.json`` and keeps the old file beside it as
``snapshot.pkl.migrated``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from spendbrake.actions import decide
from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.schemas import (
    Alert,
    Config,
    StateUnreadable,
    WatermarkMark,
    alert_records,
    decode_rollup,
    encode_alert,
    format_ts,
    unpickle_state,
    visible,
)
from spendbrake.streamer import write_atomic

from .metrics import DetectMetrics
from .stage import (
    OutputFailed,
    RecordTooLarge,
    Stage,
    WorkerSettings,
    inputs_counted,
    until_stopped,
)

log = logging.getLogger(__name__)

#: Hours the watch closes between two yields to the event loop.
ADVANCE_HOURS = 24
#: How often (seconds) to look for input partitions with nothing left to process.
IDLE_CHECK_S = 2.0
#: How often budgets a reload added look for their spend so far in the report store.
SEED_RETRY_S = 5.0
#: How the wire form of a minute record (``encode_rollup``) follows its dimension set.
_MINUTE = b',"window_s":60,'
#: The same for a day record: the watch reads no day windows at all.
_DAY = b',"window_s":86400,'
#: The stage's state file, its format, and the pickle releases until 2026-12-05 wrote.
SNAPSHOT = "snapshot.json"
KIND = "spendbrake.detect"
VERSION = 1
LEGACY = "snapshot.pkl"


class _Saved(msgspec.Struct):
    """``snapshot.json``: the next rollup offset per partition, the watermark marks read per
    (input partition, rollups partition), and the watch's own snapshot, embedded as is."""

    kind: str
    version: int
    offsets: list[tuple[int, int]]
    mark_parts: list[tuple[int, int, float]]
    watch: msgspec.Raw


def minute_sets(config: Config, watch: SpendWatch) -> frozenset[bytes]:
    """The sets whose minute records the watch reads (budget scopes), spelled as in a record."""
    dims = config.rollup_dimensions()
    read = watch.windows_read(dims)
    return frozenset(orjson.dumps(list(d)) for d, ws in zip(dims, read, strict=True) if 60 in ws)


def unread(value: bytes, wanted: frozenset[bytes]) -> bool:
    """A record the watch would skip (a day, or a minute of a set not in ``wanted``),
    told without decoding it.

    With ``minute_windows: all`` most of ``spend.rollups`` is minute windows, and the watch
    reads only those of budget scopes, and no days: decoding the rest was most of a
    catch-up's time (about 5 us a record). By default the ingest writes just those minutes.
    The wire form writes ``"dims":[...]`` right before ``"window_s"``, and a quote inside a
    JSON string is escaped, so the patterns below cannot come from a value. Anything else
    (a mark, an hour, another writer's spelling) is False: decoded.
    """
    end = value.find(_MINUTE)
    if end == -1:
        return _DAY in value
    start = value.rfind(b'"dims":', 0, end)
    return start != -1 and value[start + 7 : end] not in wanted


class DetectStage(Stage):
    """Runs the watch on the rollups topic and writes alert records."""

    name = "detect"
    rereads = True

    def __init__(self, config: Config, settings: WorkerSettings) -> None:
        super().__init__(config, settings)
        self.watch = SpendWatch(config, lateness_s=settings.lateness_s)
        self._minute_sets = minute_sets(config, self.watch)
        self.topic = config.kafka.topics.rollups
        self.dir = Path(settings.state_dir) / "detect"
        #: Next rollup offset to read, per partition (saved with the watch).
        self.offsets: dict[int, int] = {}
        self.alerts_out = 0
        #: Early looks wait for input partitions read apart (``EventClock.apart``): logged.
        self._apart = False
        self.records_in = 0
        #: Records on the rollups topic that were not rollups (see ``_skip``).
        self.skipped = 0
        self.metrics = DetectMetrics(
            lambda: len(self.watch.series),
            lambda: self.watch.judged_until,
            lambda: self.watch.folded_series(),
        )
        #: Alerts sent but not yet acknowledged, with their send.
        self._pending: list[tuple[Alert, asyncio.Future[Any]]] = []
        self.consumer: AIOKafkaConsumer | None = None
        #: Reads the ingest group's committed offsets (never joins the group).
        self._probe: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._alert_partitions = 0
        self._rollup_partitions = 0
        #: (input partition, rollups partition) -> the latest watermark mark read there
        self.mark_parts: dict[tuple[int, int], float] = {}
        #: Rollup offsets the report store must have read before the budgets a reload
        #: added take their spend so far from it (None: no budget waits).
        self._seed_after: dict[int, int] | None = None
        self._next_seed = 0.0
        self._seed_waiting = False  # said once that they wait

    def reconfigure(self, config: Config) -> list[str]:
        """New detectors, budgets and policies from the next rollup on, baselines kept."""
        notes = self.watch.reconfigure(config)
        self.config = config
        self._minute_sets = minute_sets(config, self.watch)
        self._seed_after = dict(self.offsets) if self.watch.budgets.unseeded else None
        return notes

    # -- state ---------------------------------------------------------------

    def lock_path(self) -> Path:
        return self.dir / "lock"

    def load(self) -> None:
        self._load()

    def _load(self) -> None:
        path, legacy = self.dir / SNAPSHOT, self.dir / LEGACY
        if legacy.exists():
            if not path.exists() or legacy.stat().st_mtime_ns > path.stat().st_mtime_ns:
                self._migrate(legacy)
                return
            # Migrated, and the stage stopped before it set the old file aside.
            legacy.replace(legacy.with_name(LEGACY + ".migrated"))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._say_cold()
            return
        try:
            saved = msgspec.json.decode(data, type=_Saved)
            if (saved.kind, saved.version) != (KIND, VERSION):
                raise ValueError(f"a {saved.kind} snapshot of version {saved.version}")
            notes = self.watch.restore(saved.watch)
        except (msgspec.DecodeError, ValueError) as exc:
            raise self._unreadable(path, str(exc)) from None
        self.offsets = dict(saved.offsets)
        self.mark_parts = {(i, r): w for i, r, w in saved.mark_parts}
        self._restored(notes)

    def _migrate(self, legacy: Path) -> None:
        """Read a pickled snapshot of an earlier release once; save it as ``snapshot.json``
        and keep it beside it as ``snapshot.pkl.migrated``."""
        try:
            saved = unpickle_state(legacy.read_bytes())  # our own file, written by a release
            offsets = dict(saved["offsets"])
            mark_parts = dict(saved.get("mark_parts", {}))
            notes = self.watch.restore_legacy(saved["watch"])
        except Exception as exc:  # a pickle cut short fails in many ways; all mean one thing
            raise self._unreadable(legacy, f"{type(exc).__name__}: {exc}") from None
        self.offsets, self.mark_parts = offsets, mark_parts
        self._save()  # first: a stop before the rename still finds the new file newer
        migrated = legacy.with_name(LEGACY + ".migrated")
        legacy.replace(migrated)
        log.info("migrated %s to %s; the old file is kept as %s", legacy, SNAPSHOT, migrated)
        self._restored(notes)

    def _restored(self, notes: list[str]) -> None:
        for note in notes:
            log.info("config changed since the snapshot: %s", note)
        log.info("detector stage restored at rollup offsets %s", self.offsets)
        if self.watch.budgets.unseeded:
            self._seed_after = dict(self.offsets)

    def _say_cold(self) -> None:
        """A first start: say that anomalies wait for history, which an operator meeting a
        silent first fortnight otherwise learns only from the docs."""
        baselines = [
            make_detector(d.kind, **d.params) for d in self.config.detectors if d.kind == "baseline"
        ]
        days = [getattr(b, "warmup_n", 0) * getattr(b, "period_s", 0) / 86400 for b in baselines]
        days = [d for d in days if d > 0]
        if days:
            log.info(
                "detector stage: no saved state; the baselines learn for %.0f days of event "
                "time from the first rollup read before they page an anomaly (budgets alert "
                "from the start)",
                max(days),
            )

    def _unreadable(self, path: Path, reason: str) -> StateUnreadable:
        return StateUnreadable(
            path,
            reason,
            f"restore it from a backup, or move it aside: the stage then learns again from "
            f"the start of {self.topic} (alerts it sends again keep their ids, which the "
            "action stage has already acted on)",
        )

    def _save(self) -> None:
        saved = {
            "kind": KIND,
            "version": VERSION,
            "offsets": sorted(self.offsets.items()),
            "mark_parts": [[i, r, w] for (i, r), w in sorted(self.mark_parts.items())],
            "watch": msgspec.Raw(self.watch.snapshot()),
        }
        write_atomic(self.dir / SNAPSHOT, msgspec.json.encode(saved))

    async def checkpoint(self) -> None:
        """Wait for every alert sent to be acknowledged, then save state with offsets.

        An alert whose send failed is sent again (same key) before the state moves on; one
        refused as too large stops the stage (``RecordTooLarge``: it would be refused again).
        """
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        failed = [
            a
            for (a, _), r in zip(pending, results, strict=True)
            if r is not None and isinstance(r, BaseException)
        ]
        for (alert, _), result in zip(pending, results, strict=True):
            if isinstance(result, MessageSizeTooLargeError):
                topic = self.config.kafka.topics.alerts
                size = len(encode_alert(alert))
                raise RecordTooLarge(topic, alert.record_key().encode(), size)
        for alert in failed:
            self._send(alert)
        if failed:
            raise OutputFailed(f"{len(failed)} alert(s) were not acknowledged")
        self.timed_save(self._save)

    # -- the loop --------------------------------------------------------------

    def connect(self) -> None:
        self.producer = self.new_producer()
        self.consumer = self.new_consumer(fetch_max_bytes=16 * 1024 * 1024)
        self._probe = self.new_consumer(group_id=self.config.kafka.group_id)

    async def start(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        topics = self.config.kafka.topics
        self._alert_partitions = len(await self.partitions(consumer, topics.alerts))
        # Rollups carry the partition of the events they summed: that is what the
        # watermark waits for.
        self.watch.partitions = len(await self.partitions(consumer, topics.events))
        tps = await self.assign(consumer, self.topic)
        self._rollup_partitions = len(tps)
        moved = await self.seek(consumer, tps, lambda tp: self.offsets.get(tp.partition))
        self.offsets.update({tp.partition: offset for tp, offset in moved.items()})

    def repositioned(self, moved: dict[TopicPartition, int]) -> None:
        self.offsets.update({tp.partition: offset for tp, offset in moved.items()})

    async def _find_idle(self) -> None:
        """Let input partitions that are fully processed stop holding the watermark back.

        A partition is idle when the ingest group has committed its end offset (the ingest
        commits only after its rollups are acknowledged) and this stage has read the rollups
        topic to its end: all its data is in, and no more is coming for now. A partition
        that is merely behind (a backlog after downtime) still holds the watermark, so
        hours are not closed before its events are counted.
        """
        assert self.consumer is not None and self._probe is not None
        asked = [p for p in range(self.watch.partitions or 0) if p not in self.watch.idle]
        candidates = await inputs_counted(
            self._probe, self.consumer, self.config.kafka.topics.events, asked, self.config.kafka
        )
        for partition in candidates:
            log.info("input partition %d is caught up; the watermark moves on", partition)
            self.watch.set_idle(partition)

    async def loop(self) -> None:
        assert self.consumer is not None
        last_checkpoint = last_idle_check = time.monotonic()
        while not self.stopping.is_set():
            batches = await self.fetch(self.consumer, 200, 20_000)
            for tp, messages in batches.items():
                records = []
                wanted = self._minute_sets
                for message in messages:
                    self.offsets[tp.partition] = message.offset + 1
                    value = message.value
                    if value is None or unread(value, wanted):
                        continue
                    try:
                        record = decode_rollup(value)
                    except ValueError as exc:
                        self._skip(tp.partition, message.offset, exc)
                        continue
                    if isinstance(record, WatermarkMark):
                        self.watch.observe(records)  # what came before the mark, first
                        records = []
                        self._mark(tp.partition, record.mark, record.watermark)
                    else:
                        records.append(record)
                self.records_in += len(messages)
                self.watch.observe(records)
                highwater = self.consumer.highwater(tp)
                if highwater is not None:
                    self.metrics.lag.labels(str(tp.partition)).set(
                        highwater - self.offsets[tp.partition]
                    )
                await asyncio.sleep(0)  # a large fetch must not starve the other stages
            if time.monotonic() - last_idle_check >= IDLE_CHECK_S:
                last_idle_check = time.monotonic()
                try:
                    # Read-only until its last step: a stop may cut it short at any await.
                    await until_stopped(self._find_idle(), self.stopping)
                except KafkaError as exc:
                    log.debug("idle check failed: %s", exc)
            if self._seed_after is not None and time.monotonic() >= self._next_seed:
                await self._seed_budgets()
            alerted = False
            if batches or self.watch.idle:
                while True:
                    # A backlog can put weeks behind the watermark at once: close them a day
                    # at a time and let the other stages of this process (the ingest's
                    # group heartbeats) run in between.
                    for alert in decide(self.watch, self.config, max_hours=ADVANCE_HOURS):
                        self._send(alert)
                        self.alerts_out += 1
                        self.metrics.alerts.labels(alert.kind, alert.severity, alert.action).inc()
                        alerted = True
                        # Names from events are text: a newline in one forged a log line.
                        log.info("alert %s: %s", visible(alert.ref()), visible(alert.reason))
                    if not self.watch.behind:
                        break
                    await asyncio.sleep(0)
                self._say_if_apart()
            # Checkpoint right after alerts: what the stage re-derives after a crash depends
            # on where its fetches happened to end, so keep that window as small as possible.
            due = self.checkpoint_due(time.monotonic() - last_checkpoint)
            if alerted or due:
                log.debug(
                    "detect: %d rollup records in, watermark %s (marks %s), %d alerts out",
                    self.records_in,
                    self.watch.now,
                    self.watch.marks,
                    self.alerts_out,
                )
                checkpoint = self.retrying(self.checkpoint, "alert delivery")
                if not await self.checkpoint_unless_stopped(checkpoint):
                    return
                last_checkpoint = time.monotonic()

    async def _seed_budgets(self) -> None:
        """Give the budgets a reload added (or scoped anew) their period's spend before it,
        from the report store's hourly rollups, once the store has read every rollup this
        stage had read by then: exact, as the parts are the topic's own (``BudgetBook.seed``).
        Tried every ``SEED_RETRY_S`` while the store is behind or busy; with no store (the
        store stage not run), the budget counts the spend read since the reload."""
        self._next_seed = time.monotonic() + SEED_RETRY_S
        book = self.watch.budgets
        if self._seed_after is None or not book.unseeded:
            self._seed_after = None
            return
        if not math.isfinite(self.watch.now):
            return  # no watermark yet: no period to read
        from .store import store_path  # DuckDB only when a budget waits

        path = store_path(self.config, self.settings.state_dir)
        if not path.exists():
            for name in book.unseeded:
                log.warning(
                    "budget %s: no report store at %s (the store stage writes it): it counts "
                    "the spend read since the reload",
                    name,
                    path,
                )
            book.unseeded.clear()
            self._seed_after = None
            return
        waiting = book.waiting(self.watch.now)
        try:
            found = await asyncio.to_thread(
                _stored_budget_hours, path, self.topic, self._seed_after, waiting
            )
        except StateUnreadable as exc:
            log.warning(
                "budgets %s: %s; they count the spend read since the reload", list(waiting), exc
            )
            book.unseeded.clear()
            self._seed_after = None
            return
        if book is not self.watch.budgets:
            return  # a reload while the store was read: its own budgets wait anew
        if found is None:
            if not self._seed_waiting:
                log.info("budgets %s wait for the report store to read the rollups", list(waiting))
            self._seed_waiting = True
            return
        self._seed_waiting = False
        for name, hours in found.items():
            usd = book.seed(name, hours, self.watch.now)
            if usd is not None:
                log.info(
                    "budget %s: $%.2f spent this period, read from the report store (%d rows)",
                    name,
                    usd,
                    len(hours),
                )
        self._seed_after = None

    def _skip(self, partition: int, offset: int, problem: ValueError) -> None:
        """A record that is neither a window nor a mark: counted and logged, never fatal
        (failing on it would fail again at every restart, on the same offset)."""
        self.skipped += 1
        self.metrics.skipped.inc()
        log.warning("rollup record %d/%d skipped: %s", partition, offset, str(problem)[:300])

    def _say_if_apart(self) -> None:
        """Log when early looks wait for input partitions read apart, and when they resume."""
        clock = self.watch.clock
        apart = clock.apart and not clock.behind
        if apart == self._apart:
            return
        self._apart = apart
        if apart:
            marks = sorted(clock.marks.items())
            spread_h = (max(m for _, m in marks) - min(m for _, m in marks)) / 3600
            log.info(
                "early looks and budget checks wait: input partitions are read %.1f h apart "
                "(marks %s), as after a backlog or a restart; each hour is judged as it closes",
                spread_h,
                ", ".join(f"{p}: {format_ts(m)[:19]}" for p, m in marks),
            )
        else:
            log.info("input partitions read together again: early looks and budget checks resume")

    def _mark(self, rollup_partition: int, input_partition: int, watermark: float) -> None:
        """An input partition's watermark counts once its mark arrived on every rollups
        partition: only then have all its windows up to there been read."""
        self.mark_parts[(input_partition, rollup_partition)] = watermark
        seen = [self.mark_parts.get((input_partition, r)) for r in range(self._rollup_partitions)]
        if all(w is not None for w in seen):
            self.watch.set_mark(input_partition, min(seen))  # type: ignore[type-var]

    def _send(self, alert: Alert) -> None:
        """Send ``alert``: one record, or its first part and continuations when it names
        more than ``MAX_TARGETS`` targets (``alert_records``)."""
        assert self.producer is not None
        partition = alert_partition(alert, self._alert_partitions)
        for record in alert_records(alert):
            send = self.producer.send_and_wait(
                self.config.kafka.topics.alerts,
                encode_alert(record),
                key=record.record_key().encode(),
                partition=partition,
            )
            self._pending.append((record, asyncio.ensure_future(send)))


def alert_partition(alert: Alert, partitions: int) -> int:
    """The alerts partition of ``alert``: all records of one incident on one, so readers see
    them in order, and all of one budget's periods too. A period's hard stop and the next
    period's resume are two incidents: on two partitions, the act stage catching up read
    the resume first (nothing to undo yet), then the stop, and the keys stayed paused."""
    key = f"budget/{alert.budget}" if alert.budget else alert.id
    return zlib.crc32(key.encode()) % max(partitions, 1)


def _stored_budget_hours(
    path: Path,
    topic: str,
    after: dict[int, int],
    waiting: dict[str, tuple[dict[str, str], int]],
) -> dict[str, list[tuple[int, int, int, int]]] | None:
    """Each waiting budget's stored hours (``streamer.budget_hours``), or None while the
    store is busy or has not read ``topic`` up to ``after`` (a partition -> next offset)."""
    from spendbrake.streamer import StoreBusy, budget_hours, load_offsets, opened

    try:
        # Read-write, as the store stage opens it: DuckDB refuses a second connection of
        # another mode to a file this process (its store stage) may hold.
        with opened(path, wait_s=1.0) as con:
            stored = load_offsets(con)
            if any(stored.get((topic, p), 0) < offset for p, offset in after.items()):
                return None
            return {
                name: budget_hours(con, scope, since) for name, (scope, since) in waiting.items()
            }
    except StoreBusy:
        return None
