"""``SpendProducer``: publish one usage event per LLM call without ever slowing the call.

``emit()`` validates the event, redacts raw secrets in its string fields (keeping the
contract's lengths), replaces text UTF-8 cannot hold, and appends it to a bounded
in-memory queue; a background thread sends batches
with aiokafka. When the broker is down or the queue is full, events go to a
local spill file that is replayed when the broker returns (also by the next
process, if this one exits first, or by a live one on the same path: see
``SpillFile.claim_orphans``). Events are keyed by ``event_id`` so that a
resent event lands on the partition of its first copy, where the engine's
dedupe drops it. No idempotent or transactional producer is needed (the
embedded broker refuses InitProducerId).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from spendbrake._logs import RepeatFilter
from spendbrake.schemas import (
    KAFKA_ENV,
    MAX_EVENT_BYTES,
    MAX_FUTURE_S,
    ConfigError,
    InvalidEvent,
    KafkaConfig,
    UsageEvent,
    check_bootstrap,
    decode_event,
    encode_event,
    show,
    validate_event,
)

from ._redact import redact_event
from ._spill import SpillFile, default_spill_path

log = logging.getLogger(__name__)

#: The sender thread's name: the log filter below tells its records by it.
SENDER_THREAD = "spendbrake-producer"


class _SenderRepeats(RepeatFilter):
    """``RepeatFilter`` for the sender thread's records only.

    With the broker away, aiokafka logs the same connection error about twenty times a
    second, into the logs of the application that embeds the producer. Its own aiokafka
    clients (another thread, another loop) log as they always did."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != SENDER_THREAD or super().filter(record)


def _quiet_sender_repeats() -> None:
    """Hold back repeated lines of the sender's aiokafka loggers, once per process. A
    logger's filters are not applied to its children's records: each gets one."""
    for name in list(logging.root.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _SenderRepeats) for f in logger.filters):
                logger.addFilter(_SenderRepeats())


DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: Rejected records ``ProducerStats.first_rejected`` names.
FIRST_REJECTED = 5


@dataclass(slots=True)
class ProducerStats:
    """Counters since the producer started; ``lost`` stays 0 unless the spill disk fails.

    ``rejected``: spilled records the broker refused as too large, moved to the spill's
    ``.rejected`` file (a spill an older SDK wrote, or a broker whose record limit is
    below the contract's 64 KiB); ``first_rejected`` names the first
    ``FIRST_REJECTED`` of them (event_id and size) for a report to show.
    ``after_close``: events emitted after ``close()``, each spilled for the path's next
    producer to send (also counted in ``spilled``).
    """

    emitted: int = 0
    delivered: int = 0
    spilled: int = 0
    replayed: int = 0
    rejected: int = 0
    lost: int = 0
    after_close: int = 0
    send_failures: int = 0
    first_rejected: list[str] = field(default_factory=list)


class SpendProducer:
    """Publish v1 usage events to Kafka from sync or async code.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap list; default ``$SPENDBRAKE_BOOTSTRAP`` or ``127.0.0.1:9092``.
    kafka
        How to reach and authenticate to the brokers (SASL/SCRAM, TLS); default: from the
        environment, ``SPENDBRAKE_KAFKA_SECURITY_PROTOCOL``, ``SPENDBRAKE_KAFKA_USERNAME``,
        ``SPENDBRAKE_KAFKA_PASSWORD``, ``SPENDBRAKE_KAFKA_SASL_MECHANISM``,
        ``SPENDBRAKE_KAFKA_SSL_CAFILE`` (``schemas.KAFKA_ENV``).
    topic
        Usage events topic.
    max_queue
        Events held in memory before ``emit()`` spills to disk instead.
    spill_path
        Spill file; default ``~/.spendbrake/spill/<client_id>-<topic>.jsonl``
        (``$SPENDBRAKE_SPILL_DIR`` moves the folder). A second live producer on the same
        path spills to ``<name>-<pid>.jsonl``; once its process has exited, the next
        producer of that path to look takes the file over and sends it.
    claim_interval_s
        How often a connected producer looks for such files of exited processes (also
        once as it first connects): the other workers of a LiteLLM proxy deliver what a
        worker that exited had spilled.
    request_timeout_s
        How long a send may wait for the broker before it counts as failed.

    Raises ``ConfigError`` for a ``bootstrap_servers`` that is not ``HOST:PORT[,...]``.
    A process forked from one holding a producer (a gunicorn ``--preload`` worker, a
    ``multiprocessing`` fork) gets a producer of its own: its own sender thread and
    spill file (``-<pid>``); the parent keeps sending what it had queued.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        topic: str = "spend.events",
        max_queue: int = 100_000,
        batch_size: int = 2_000,
        linger_s: float = 0.01,
        spill_path: str | Path | None = None,
        request_timeout_s: float = 10.0,
        retry_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        client_id: str = "spendbrake-sdk",
        kafka: KafkaConfig | None = None,
        claim_interval_s: float = 60.0,
    ) -> None:
        if bootstrap_servers:
            try:
                check_bootstrap(bootstrap_servers)
            except ValueError as exc:
                raise ConfigError("bootstrap_servers", str(exc)) from None
        if kafka is None:
            # The argument wins over $SPENDBRAKE_BOOTSTRAP: an unusable value there is not read.
            env = {
                var: value
                for var, value in os.environ.items()
                if not (bootstrap_servers and KAFKA_ENV.get(var) == "bootstrap_servers")
            }
            kafka = KafkaConfig.from_env(env, bootstrap_servers=DEFAULT_BOOTSTRAP)
        self.bootstrap_servers = bootstrap_servers or kafka.bootstrap_servers
        self._security = kafka.security_args()
        self.topic = topic
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.request_timeout_s = request_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.client_id = client_id
        self.claim_interval_s = claim_interval_s
        self.stats = ProducerStats()
        self._spill = SpillFile(spill_path or default_spill_path(topic, client_id))
        #: Spill files of exited processes this one holds, to send before its own queue.
        self._claimed: list[SpillFile] = []
        self._next_claim = 0.0
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._spill_lock = threading.Lock()
        #: The batch the sender is sending: spilled by close() if the sender is stuck on it.
        self._sending: list[tuple[bytes, bytes]] = []
        self._closing = False
        #: close() let go of the spill file's lock: a later spill takes it again.
        self._closed = False
        self._connected = False
        #: The last try to reach the broker (connection, send or replay) failed.
        self._down = False
        self._outage_reported = False
        self._rejected_reported = False
        self._idle = threading.Condition()
        #: What a forked child inherited and must not close (see ``_after_fork``).
        self._parent_spills: list[SpillFile] = []
        self._start_sender()
        # An interpreter exit still spills what was not delivered.
        atexit.register(_close_at_exit, weakref.ref(self))
        os.register_at_fork(
            after_in_child=functools.partial(_call_if_alive, weakref.WeakMethod(self._after_fork))
        )

    def _start_sender(self) -> None:
        _quiet_sender_repeats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=SENDER_THREAD, daemon=True)
        self._thread.start()
        self._started.wait()

    def _after_fork(self) -> None:
        """Start this forked child's own producer.

        The sender thread does not survive a fork: events emitted here sat in the queue
        until an exit that ``multiprocessing`` (``os._exit``) never runs hooks for, lost.
        The queue copied is the parent's, which sends it; the spill file and its lock
        are the parent's too. The child lets go of their descriptors without closing
        their file objects (a write or lock of the parent's thread may have been under
        way) and spills to a file of its own (``-<pid>``).
        """
        self._parent_spills.extend([self._spill, *self._claimed])
        for spill in self._parent_spills:
            spill.release_after_fork()
        self._spill = SpillFile(self._spill.primary)
        self._claimed = []
        self._queue = collections.deque()
        self._spill_lock = threading.Lock()
        self._idle = threading.Condition()
        self._sending = []
        self.stats = ProducerStats()
        self._next_claim = 0.0
        self._connected = self._down = False
        self._outage_reported = self._rejected_reported = False
        if not self._closing:
            self._start_sender()

    @property
    def spill_path(self) -> Path:
        return self._spill.path

    @property
    def rejected_path(self) -> Path:
        """Where spilled records the broker refused as too large are set aside."""
        return self._spill.rejected_path

    @property
    def connected(self) -> bool:
        """Whether the last attempt to reach the broker succeeded."""
        return self._connected

    @property
    def down(self) -> bool:
        """Whether the last attempt to reach the broker failed: False before the first one
        ends, unlike ``not connected``."""
        return self._down

    def emit(self, event: UsageEvent | Mapping[str, Any]) -> None:
        """Queue one event for sending; never blocks on the network, never raises for an outage.

        Raises ``InvalidEvent`` for an event that breaks contract v1: that is a
        bug in the caller, and sending it would only move the error downstream. That
        includes a record over ``MAX_EVENT_BYTES`` as it would be sent, after redaction
        (the engine refuses it, and a broker may refuse it too): the error names the
        record's largest field, the sizes, and how much redaction added (``_too_large``).

        What the SDK itself changes keeps every field valid: redaction keeps each within
        the contract's lengths (``redact_event``), and a lone surrogate, which no UTF-8
        record can hold, becomes U+FFFD (``schemas.replace_surrogates``) rather than losing
        the call's spend. The record's size it can change both ways: a stand-in (23
        characters) is longer than a short token, shorter than a JWT.

        After ``close()`` the event is not refused (an exit hook of the application may run
        after the producer's own, and the call's spend would be lost): it is written to the
        spill file under its lock, for the path's next producer to send, logged once and
        counted in ``stats.after_close``.
        """
        given = event
        event, payload = as_sent(event)
        if len(payload) > MAX_EVENT_BYTES:
            raise _too_large(event, payload, given)
        ahead = event.ts - time.time()
        if ahead > MAX_FUTURE_S:  # the engine would dead-letter it
            raise InvalidEvent(
                "ts",
                f"is {ahead:.0f}s in the future (limit {MAX_FUTURE_S:.0f}s): clock skew or a "
                "bogus timestamp",
            )
        self.stats.emitted += 1
        if self._closed:
            self._emitted_after_close()
        if self._closing or len(self._queue) >= self.max_queue:
            self._spill_payloads([payload])
            return
        was_empty = not self._queue
        self._queue.append((event.event_id.encode(), payload))
        if was_empty:
            self._wake_sender()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every emitted event is on the broker; False if the time ran out.

        Events that are not delivered by then stay queued or spilled: nothing is dropped.
        After ``close()``, False once an event was emitted (it went to the spill file).
        """
        if self._closed and self.stats.after_close:
            return False
        return self._wait(self._drained, timeout_s)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop the sender; True if every event reached the broker.

        With the broker up, first deliver the queue and the spill file (up to
        ``timeout_s``). With it down, return as soon as nothing is in flight, not after
        ``timeout_s``: what is left goes to the spill file, whose next producer sends it.
        It returns within ``timeout_s`` (and a spill file's write) even when the broker
        hangs: the sender is not waited for past it (a join of at least 5 s more held up
        the interpreter's exit 5-10 s).
        """
        if self._closing and not self._thread.is_alive():
            return self._drained()
        deadline = time.monotonic() + timeout_s
        self._wait(self._settled, timeout_s)
        self._closing = True
        self._wake_sender()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        # The sender takes from the queue under this lock (``_take_batch``,
        # ``_spill_queue``): whatever it has not taken is here, whatever it has is spilled
        # or in ``_sending``, even if it is still running.
        with self._spill_lock:
            if self._thread.is_alive():
                # Stuck on a broker that stopped answering (a send gives up only after
                # request_timeout_s): an exit now would lose the batch it holds, so it goes
                # to the spill file too. Sent after all, its copies are dropped by event_id.
                self._append([payload for _, payload in self._sending])
            delivered = self._drained()
            self._append([payload for _, payload in self._take(len(self._queue))])
            self._spill.close()
            for spill in self._claimed:  # not sent yet: the next producer claims them
                spill.close()
            self._claimed.clear()
            self._closed = True  # an emit() from now on spills under the lock again
        return delivered

    async def aflush(self, timeout_s: float = 30.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout_s)

    async def aclose(self, timeout_s: float = 30.0) -> bool:
        return await asyncio.to_thread(self.close, timeout_s)

    def __enter__(self) -> SpendProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> SpendProducer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the sender thread -------------------------------------------------

    def _wake_sender(self) -> None:
        """Wake the sender thread; nothing to do once its loop has closed."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the sender stopped
                loop.call_soon_threadsafe(wake.set)

    def _drained(self) -> bool:
        return (
            not self._queue and not self._sending and not self._spill.pending and not self._claimed
        )

    def _settled(self) -> bool:
        """Nothing to wait for at close: all delivered, or the broker down (the last try
        failed) and nothing in flight, so that what is left is safe in the spill file."""
        return self._drained() or (self._down and not self._sending)

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wake the sender and wait until ``done()``; False if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        self._wake_sender()
        with self._idle:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(remaining, 0.1))
        return True

    def _take(self, count: int) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        queue = self._queue
        while queue and len(out) < count:
            out.append(queue.popleft())
        return out

    def _spill_payloads(self, payloads: list[bytes]) -> None:
        if payloads:
            with self._spill_lock:
                self._append(payloads)

    def _spill_queue(self) -> None:
        """Spill the queue (the sender, while the broker is away): taken and written under
        ``_spill_lock``, so a ``close()`` that stops waiting for the sender finds each event
        in the queue or in the file."""
        while self._queue:
            with self._spill_lock:
                self._append([payload for _, payload in self._take(self.batch_size)])

    def _take_batch(self) -> list[tuple[bytes, bytes]]:
        """The sender's next batch, held in ``_sending`` from the moment it leaves the queue
        (under ``_spill_lock``): ``close()`` spills it if the sender is stuck sending it."""
        with self._spill_lock:
            self._sending = self._take(self.batch_size)
            return self._sending

    def _append(self, payloads: list[bytes]) -> None:
        """Write ``payloads`` to the spill file; the caller holds ``_spill_lock``."""
        if not payloads:
            return
        if self._closed:
            self._spill_after_close(payloads)
            return
        try:
            self._spill.append(payloads)
            self.stats.spilled += len(payloads)
        except OSError as exc:
            self.stats.lost += len(payloads)
            log.error("cannot spill %d events to %s: %s", len(payloads), self._spill.path, exc)

    def _emitted_after_close(self) -> None:
        """Count an event emitted after ``close()``; say so once per producer. It is
        spilled (``_spill_after_close``), not sent: this producer's sender has stopped."""
        self.stats.after_close += 1
        report = log.debug if self.stats.after_close > 1 else log.warning
        report(
            "an event was emitted after close(): spilled to %s (or a -<pid> file beside it) "
            "for the next producer of that path to send; counted in stats.after_close",
            self._spill.primary,
        )

    def _spill_after_close(self, payloads: list[bytes]) -> None:
        """Spill events emitted after ``close()`` (an exit hook of the application that
        runs after the producer's own) under the path's lock, taken again for the write.

        ``close()`` let go of the lock: appended as before, the events could go into a
        file another producer was replaying, or had deleted once sent, and be lost. The
        path's own file, or a ``-<pid>`` one if another producer holds it, is locked,
        written and let go: the path's next producer sends it (``claim_orphans``).
        """
        try:
            spill = SpillFile(self._spill.primary)
            try:
                spill.append(payloads)
            finally:
                spill.close()
        except (OSError, ConfigError) as exc:  # ConfigError: its folder is gone
            self.stats.lost += len(payloads)
            log.error("cannot spill %d events to %s: %s", len(payloads), self._spill.path, exc)
            return
        self.stats.spilled += len(payloads)

    def _notify(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._started.set()
        try:
            loop.run_until_complete(self._supervise())
        finally:
            loop.close()
            self._notify()

    async def _supervise(self) -> None:
        """Run the sender until close, and start it over after an error nobody planned for.

        A sender thread that died (a spill file it could not read, a surprise from the
        Kafka client) left ``emit()`` queueing events nothing sent, and raising
        ``RuntimeError: Event loop is closed`` in the caller's code. The batch it held goes
        to the spill file, and it tries again after a back-off, as for an outage.
        """
        backoff = self.retry_backoff_s
        while True:
            try:
                await self._main()
                return
            except Exception:
                log.exception(
                    "the SpendBrake producer's sender failed; spilling to %s and retrying",
                    self._spill.path,
                )
            self._spill_payloads([payload for _, payload in self._sending])
            self._sending = []
            backoff = await self._back_off(backoff)

    async def _main(self) -> None:
        producer: AIOKafkaProducer | None = None
        backoff = self.retry_backoff_s
        try:
            while True:
                if self._closing and (
                    (not self._queue and not self._spill.pending and not self._claimed)
                    or not self._connected
                ):
                    break
                if producer is None:
                    producer = await self._connect()
                    if producer is None:
                        backoff = await self._back_off(backoff)
                        continue
                if not self._closing and time.monotonic() >= self._next_claim:
                    self._claim_orphans()
                if self._spill.pending or self._claimed:
                    if not await self._replay(producer):
                        producer = await self._disconnect(producer)
                        backoff = await self._back_off(backoff)
                        continue
                    backoff = self.retry_backoff_s
                batch = self._take_batch()
                if not batch:
                    self._notify()
                    await self._sleep(1.0)
                    continue
                ok = await self._send(producer, batch)
                self._sending = []
                self._notify()
                if not ok:
                    producer = await self._disconnect(producer)
                    backoff = await self._back_off(backoff)
                    continue
                backoff = self.retry_backoff_s
                if len(batch) < self.batch_size and self.linger_s:
                    await asyncio.sleep(self.linger_s)
        finally:  # an error leaving here leaves no client open either
            if producer is not None:
                await self._disconnect(producer)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        if self._queue or self._closing:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _back_off(self, backoff: float) -> float:
        """Wait about ``backoff`` seconds after a failed attempt; return the next wait.

        The broker is down or refusing: events emitted meanwhile go to the spill file
        at once (memory stays flat, events durable), and they do not cut the wait short,
        so a busy caller cannot turn the retries into a loop. Only ``close()`` does.
        """
        assert self._wake is not None
        self._down = True
        deadline = time.monotonic() + backoff * (0.5 + random.random())
        while True:
            self._spill_queue()
            self._notify()
            remaining = deadline - time.monotonic()
            if self._closing or remaining <= 0:
                return min(backoff * 2, self.max_backoff_s)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _connect(self) -> AIOKafkaProducer | None:
        producer = AIOKafkaProducer(
            **self._security,
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=int(self.request_timeout_s * 1000),
            retry_backoff_ms=200,
        )
        try:
            await producer.start()
        except Exception as exc:  # any failure to start (a TLS setting too): unreachable
            # Warn once per outage, not on every retry.
            report = log.warning if self._connected or not self._outage_reported else log.debug
            report(
                "broker %s unreachable (%s); spilling to %s",
                self.bootstrap_servers,
                exc if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}",
                self._spill.path,
            )
            self._outage_reported = True
            self._connected = False
            await producer.stop()
            return None
        if self._outage_reported:
            log.warning(
                "broker %s reachable again; replaying spilled events", self.bootstrap_servers
            )
            self._outage_reported = False
        self._connected = True
        self._down = False
        return producer

    async def _disconnect(self, producer: AIOKafkaProducer) -> None:
        self._connected = False
        try:
            await asyncio.wait_for(producer.stop(), self.request_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("producer stop failed: %s", exc)
        return None

    async def _send(self, producer: AIOKafkaProducer, batch: list[tuple[bytes, bytes]]) -> bool:
        """Send a batch; spill the events whose delivery failed. True if all were delivered."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for key, payload in batch:
                futures.append(await producer.send(self.topic, payload, key=key))
        except (KafkaError, OSError) as exc:
            log.warning("send failed (%s); spilling", exc)
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [
            p for (_, p), r in zip(batch, results, strict=False) if isinstance(r, BaseException)
        ]
        failed.extend(p for _, p in batch[len(futures) :])
        self.stats.delivered += len(batch) - len(failed)
        if failed:
            self.stats.send_failures += 1
            self._spill_payloads(failed)
            return False
        return True

    def _claim_orphans(self) -> None:
        """Take over spill files of exited processes on this path, to send them."""
        self._next_claim = time.monotonic() + self.claim_interval_s
        try:
            claimed = self._spill.claim_orphans()
        except OSError as exc:
            log.warning("cannot look for spill files beside %s: %s", self._spill.path, exc)
            return
        for spill in claimed:
            log.warning("sending the events in %s: its process exited first", spill.path)
        self._claimed.extend(claimed)

    async def _replay(self, producer: AIOKafkaProducer) -> bool:
        """Send the spill file, then those claimed from exited processes (each deleted
        once sent); False when the broker failed, to retry from the failed chunk."""
        if self._spill.pending and not await self._replay_file(producer, self._spill):
            return False
        while self._claimed:
            spill = self._claimed[0]
            if not await self._replay_file(producer, spill):
                return False
            with self._spill_lock:
                if self._closed:  # let go by close(): another producer's to claim now
                    return False
                try:
                    spill.discard()
                except OSError as exc:  # sent: a failed delete only leaves empty files
                    log.warning("cannot delete %s: %s", spill.path, exc)
                self._claimed.pop(0)
        return True

    async def _replay_file(self, producer: AIOKafkaProducer, spill: SpillFile) -> bool:
        """Send one spill file; False when the broker failed, to retry from the failed chunk.

        A line the broker refuses as too large is moved to the ``.rejected`` file: resent,
        it would fail every replay, and the spill goes before the memory queue.
        """
        # A sender that outlives close() (stuck on a hung broker past its timeout) must not
        # move or delete a file whose lock close() let go: another producer may hold it.
        with self._spill_lock:
            if self._closed:
                return False
            path = spill.start_replay()
        if path is None:
            return True
        for chunk in spill.read_replay(self.batch_size):
            sent: list[tuple[bytes, asyncio.Future[Any]]] = []
            too_large: list[bytes] = []
            try:
                for payload in chunk:
                    try:
                        future = await producer.send(self.topic, payload, key=_event_key(payload))
                    except MessageSizeTooLargeError:  # over the client's max_request_size
                        too_large.append(payload)
                    else:
                        sent.append((payload, future))
                results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
            except (KafkaError, OSError) as exc:
                log.warning("replay of %s interrupted (%s); will retry", path, exc)
                return False
            failures: list[BaseException] = []
            for (payload, _), result in zip(sent, results, strict=True):
                if isinstance(result, MessageSizeTooLargeError):  # over the broker's limit
                    too_large.append(payload)
                elif isinstance(result, BaseException):
                    failures.append(result)
            if failures:
                # The chunk is resent whole: the engine's event_id dedupe drops the
                # copies that did arrive.
                log.warning("replay of %s interrupted (%s); will retry", path, failures[0])
                return False
            if too_large:
                self._reject(spill, too_large)
            spill.chunk_sent()
            self.stats.replayed += len(chunk) - len(too_large)
            self.stats.delivered += len(chunk) - len(too_large)
        with self._spill_lock:
            if self._closed:
                return False
            spill.finish_replay()
        log.info("replayed spilled events from %s", path)
        return True

    def _reject(self, spill: SpillFile, payloads: list[bytes]) -> None:
        try:
            spill.reject(payloads)
        except OSError as exc:
            self.stats.lost += len(payloads)
            log.error("cannot set aside %d spilled events: %s", len(payloads), exc)
            return
        self.stats.rejected += len(payloads)
        named = self.stats.first_rejected
        named.extend(map(_record_name, payloads[: max(FIRST_REJECTED - len(named), 0)]))
        # Once per producer: the count is in stats.rejected, the records in the file.
        report = log.debug if self._rejected_reported else log.warning
        self._rejected_reported = True
        report(
            "the broker refuses %d spilled event(s) as too large (largest %d bytes); "
            "moved to %s, not sent again",
            len(payloads),
            max(map(len, payloads)),
            spill.rejected_path,
        )


def _event_key(payload: bytes) -> bytes | None:
    """Key a spilled line by its event_id; a torn line is sent unkeyed and lands in the DLQ."""
    try:
        return orjson.loads(payload)["event_id"].encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def _record_name(payload: bytes) -> str:
    """A spilled record as a report names it: its event_id (if it has one) and size."""
    key = _event_key(payload)
    what = "a record without an event_id" if key is None else f"event_id {show(key.decode())}"
    return f"{what}: {len(payload):,} bytes"


def _close_at_exit(ref: weakref.ref[SpendProducer]) -> None:
    producer = ref()
    if producer is not None:
        # A broker whose last try failed: spill at once rather than hold up the exit. One
        # not tried yet gets the 5 s too: a script that emits and exits at once (a cron
        # job, a one-call LiteLLM script) is still connecting, and spilled every event.
        producer.close(timeout_s=0.0 if producer.down else 5.0)


def _call_if_alive(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    """Call a producer's method unless the producer is gone (a fork hook lasts for ever)."""
    bound = method()
    if bound is not None:
        bound()


def as_sent(event: UsageEvent | Mapping[str, Any]) -> tuple[UsageEvent, bytes]:
    """The event ``emit()`` sends for ``event`` and its record: validated, redacted, lone
    surrogates replaced; its size unchecked. ``event`` itself is left as it is."""
    if isinstance(event, UsageEvent):
        # Its constructor checks no limit: checked as the engine will read it, but for
        # the size, which ``emit()`` checks on what is sent.
        raw = encode_event(event)
        sent = decode_event(raw) if len(raw) <= MAX_EVENT_BYTES else _decode_unsized(raw)
    elif isinstance(event, Mapping):
        sent = validate_event(dict(event))
    else:
        raise InvalidEvent(
            "payload", f"must be a UsageEvent or a mapping, got {type(event).__name__}"
        )
    redact_event(sent)  # a key in any field, not only api_key, stays here
    return sent, encode_event(sent)  # replaces lone surrogates, in the event too


def sent_bytes(event: UsageEvent) -> int:
    """The size of the record ``emit()`` would send for ``event`` (redaction can lengthen
    it): what ``from_litellm`` fits its request tags to."""
    return len(as_sent(event)[1])


def _decode_unsized(raw: bytes) -> UsageEvent:
    """``decode_event`` of our own encoding without its size check (``emit`` checks the
    size of what it sends, after redaction)."""
    return validate_event(orjson.loads(raw))


def _too_large(
    event: UsageEvent, payload: bytes, given: UsageEvent | Mapping[str, Any]
) -> InvalidEvent:
    """The error for a record over ``MAX_EVENT_BYTES`` as sent: named after its largest
    field, with that field's size and, when redaction lengthened the record past the
    limit, the size the caller gave (an error naming only the record's size quoted a
    figure the caller never sent, and no field to look at)."""
    wire = event.to_wire()
    sizes = {name: len(orjson.dumps(value)) for name, value in wire.items()}
    field = max(sizes, key=sizes.__getitem__)
    if isinstance(given, UsageEvent):
        given_bytes = len(encode_event(given))
    else:
        given_bytes = len(encode_event(validate_event(dict(given))))
    grown = (
        f"; redacting secrets lengthened it from {given_bytes} bytes as given"
        if given_bytes < len(payload)
        else ""
    )
    return InvalidEvent(
        field,
        f"the record is {len(payload)} bytes and exceeds the {MAX_EVENT_BYTES}-byte limit; "
        f"this field is {sizes[field]} bytes of it{grown}",
    )
