"""The action stage: ``spend.alerts`` in; Slack messages, gateway calls and audit records out.

Durable outbox (``actions.Outbox``): an alert's effects are planned and saved together
with the alerts offset in ``<state_dir>/actions/outbox.pkl`` before any is performed; each
attempt's start and outcome are saved too. After a crash or a restart the stage resumes
the saved tasks where they stood, so a Slack or gateway outage (or a kill mid-retry) loses
nothing and, the effects being idempotent or deduplicated, doubles nothing. Every task's
latest state goes to ``spend.actions`` (key: the task id), the audit trail.

Who may be paused is the operator's decision, read from the config this stage loaded: a
record on ``spend.alerts`` asking to pause a key that config does not allow is refused
(audited, shown in Slack, counted in ``spendbrake_refused_total``), whatever the record says,
and so is a queued pause a reload made unallowed. A "Resume" click only unblocks keys this
stage paused for that incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from spendbrake.actions import (
    Gateway,
    GatewayOutcome,
    Outbox,
    Task,
    backoff_delay,
    make_gateway,
    refusal,
    screen_pauses,
)
from spendbrake.actions._blocks import render_alert, render_followup, render_parent_update
from spendbrake.actions._interactive import Interaction, InteractionServer, Rejected
from spendbrake.actions._outbox import audit_wire, outcome_line
from spendbrake.actions._slack import SlackNotifier
from spendbrake.schemas import Config, decode_alert, unpickle_state

from ._metrics import ActionMetrics
from ._state import standby_lock, write_atomic
from ._worker import (
    STOP_TIMEOUT_S,
    WorkerSettings,
    _start_with_retry,
    close_quietly,
    until_stopped,
)

log = logging.getLogger(__name__)

#: What the "Snooze 1 h" button silences.
SNOOZE_S = 3600.0
#: How long a click is remembered against Slack's re-deliveries of it.
CLICK_MEMORY_S = 600.0
#: Rejected button requests audited one by one per minute; the rest are counted.
REJECTED_AUDITS_PER_MIN = 10
#: Give up on a task after this many attempts (about a day with the default backoff cap).
MAX_ATTEMPTS = 1500


class NoGateway:
    """Stands in when no gateway is configured: pauses are audited as skipped."""

    async def block(self, kind: str, target: str, *, idempotency_key: str) -> GatewayOutcome:
        return GatewayOutcome(False, True, None, "no gateway configured (gateway.master_key)")

    unblock = block

    async def aclose(self) -> None:
        return None


class ActionStage:
    """Performs the effects alerts ask for, in order per lane, exactly once."""

    def __init__(self, config: Config, settings: WorkerSettings) -> None:
        self.config = config
        self.settings = settings
        self.topic = config.kafka.topics.alerts
        self.dir = Path(settings.state_dir) / "actions"
        slack = config.slack
        self.outbox = Outbox(
            slack_enabled=slack.token is not None,
            dry_run=config.gateway.dry_run,
            cooldown_s=slack.cooldown_s,
        )
        self.gateway: Gateway = _gateway(config)
        self.slack = SlackNotifier(slack, timeout_s=slack.timeout_s) if slack.token else None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._lock: IO[bytes] | None = None
        self._stopping = asyncio.Event()
        #: One wake-up per lane: new work, or a task of the other lane that settled.
        self._wake = {"slack": asyncio.Event(), "gateway": asyncio.Event()}
        self._rng = random.Random()
        self._audit_sends: dict[str, asyncio.Future[Any]] = {}
        #: Button clicks acted on (Slack's click id -> when), against re-deliveries.
        self._clicks: dict[str, float] = {}
        self._rejected_window = 0.0
        self._rejected_in_window = 0
        self._rejected_since = 0
        self.metrics = ActionMetrics(self.pending, self.waiting_since)

    def pending(self, lane: str) -> int:
        """Effects of ``lane`` not yet performed."""
        return len(self.outbox.lanes[lane])

    def waiting_since(self, lane: str) -> float | None:
        """When the head task of ``lane`` was first tried (None: empty, or not tried yet)."""
        try:
            return self.outbox.lanes[lane][0].first_attempt_at
        except IndexError:  # emptied meanwhile (metrics are read from another thread)
            return None

    def stop(self) -> None:
        self._stopping.set()
        self._notify()

    def reconfigure(self, config: Config) -> list[str]:
        """Use new Slack and gateway settings from the next attempt on (config reload).

        Clients are built before anything changes (a bad gateway section raises and
        leaves the stage as it was); calls in flight finish on the old clients.
        """
        notes: list[str] = []
        old = self.config
        gateway = _gateway(config) if config.gateway != old.gateway else self.gateway
        slack = self.slack
        if config.slack != old.slack:
            s = config.slack
            slack = SlackNotifier(s, timeout_s=s.timeout_s) if s.token else None
        if (config.slack.interactive_port, config.slack.signing_secret) != (
            old.slack.interactive_port,
            old.slack.signing_secret,
        ):
            notes.append("slack.interactive_port/signing_secret: applied at the next restart")
        if gateway is not self.gateway:
            _close_later(self.gateway.aclose, old.gateway.timeout_s)
        if slack is not self.slack and self.slack is not None:
            _close_later(self.slack.close, old.slack.timeout_s)
        self.gateway, self.slack, self.config = gateway, slack, config
        self.outbox.slack_enabled = config.slack.token is not None
        self.outbox.dry_run = config.gateway.dry_run
        self.outbox.cooldown_s = config.slack.cooldown_s
        self._notify()
        return notes

    def _notify(self) -> None:
        for event in self._wake.values():
            event.set()

    # -- state ---------------------------------------------------------------

    async def _acquire(self) -> None:
        self._lock = await standby_lock(self.dir / "lock", self._stopping, "action stage")

    def _load(self) -> None:
        try:
            saved: Outbox = unpickle_state((self.dir / "outbox.pkl").read_bytes())
        except FileNotFoundError:
            return
        # Settings come from the config in force, the rest from the file.
        saved.slack_enabled = self.outbox.slack_enabled
        saved.dry_run = self.outbox.dry_run
        saved.cooldown_s = self.outbox.cooldown_s
        self.outbox = saved
        pending = sum(len(lane) for lane in saved.lanes.values())
        log.info("action stage restored: %d task(s) pending, offsets %s", pending, saved.offsets)

    def save(self) -> None:
        write_atomic(self.dir / "outbox.pkl", pickle.dumps(self.outbox, pickle.HIGHEST_PROTOCOL))

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        kafka = self.config.kafka
        try:
            await self._acquire()
        except asyncio.CancelledError:
            return
        self._load()
        self.producer = AIOKafkaProducer(
            **kafka.client_args(), acks="all", enable_idempotence=False
        )
        self.consumer = AIOKafkaConsumer(
            **kafka.client_args(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        lanes: list[asyncio.Task[None]] = []
        buttons = self._button_server()
        try:
            if buttons is not None:
                await buttons.start()
                log.info("Slack buttons served on http://127.0.0.1:%d/slack/actions", buttons.port)
            # Starting waits on the broker (metadata, offset resets): a stop must not.
            if not await until_stopped(self._start(), self._stopping):
                return
            lanes = [
                asyncio.create_task(self._lane("gateway")),
                asyncio.create_task(self._lane("slack")),
                asyncio.create_task(self._audit_loop()),
            ]
            await self._read_alerts()
        finally:
            self.stop()
            if buttons is not None:
                await buttons.stop()
            # One deadline for all lanes: in a broker outage each would use all of it.
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for task in lanes:
                try:
                    await asyncio.wait_for(task, timeout=max(0.0, deadline - time.monotonic()))
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
            self.save()
            await close_quietly(self.consumer)
            await close_quietly(self.producer)
            await self.gateway.aclose()
            if self.slack is not None:
                await self.slack.close()
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    async def _start(self) -> None:
        assert self.producer is not None and self.consumer is not None
        await _start_with_retry(self.producer.start, "producer", self._stopping)
        await _start_with_retry(self.consumer.start, "consumer", self._stopping)
        partitions = sorted(await self.producer.partitions_for(self.topic))
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        for tp in tps:
            if tp.partition in self.outbox.offsets:
                self.consumer.seek(tp, self.outbox.offsets[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def _read_alerts(self) -> None:
        assert self.consumer is not None
        while not self._stopping.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            except KafkaError as exc:
                log.warning("alert fetch failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if not batches:
                continue
            now = time.time()
            accepted = 0
            for tp, messages in batches.items():
                for message in messages:
                    self.outbox.offsets[tp.partition] = message.offset + 1
                    if message.value is None:
                        continue
                    try:
                        alert = decode_alert(message.value)
                        accepted_now = self.outbox.accept(alert, now, self.config.keys)
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        # Not an alert record we can act on: audit it, never stop for it.
                        where = f"{tp.partition}/{message.offset}"
                        log.warning("alert record %s skipped: %r", where, exc)
                        self.outbox.note(
                            f"skipped/{self.topic}/{where}",
                            "accept",
                            "failed",
                            (
                                str(exc)
                                if isinstance(exc, ValueError)
                                else f"not an alert record: {exc!r}"
                            )[:300],
                            now,
                            source="alerts topic",
                        )
                        continue
                    if accepted_now:
                        accepted += 1
                        if alert["action"] == "pause":
                            self._count_refusals(alert)
                        log.info(
                            "alert %s#%s %s %s: %s",
                            alert["id"],
                            alert["seq"],
                            alert["action"],
                            alert["targets"],
                            alert["reason"],
                        )
            self.outbox.prune(now)
            self.save()  # planned effects and the offset, together, before acting
            if accepted:
                self._notify()

    def _count_refusals(self, alert: dict[str, Any]) -> None:
        _, denied = screen_pauses(alert["targets"], self.config.keys)
        for target, cls in denied:
            self.metrics.refused.labels("block", cls.protection).inc()
            log.warning(
                "alert %s#%s asks to pause %s: refused, %s",
                alert["id"],
                alert["seq"],
                target,
                refusal(cls),
            )

    def command(self, op: str, targets: list[str], incident: str, source: str) -> int:
        """Queue an operator's resume (the Slack button calls this)."""
        count = self.outbox.command(op, targets, incident, source, time.time())  # type: ignore[arg-type]
        self.save()
        self._notify()
        return count

    # -- Slack buttons ------------------------------------------------------------

    def _button_server(self) -> InteractionServer | None:
        slack = self.config.slack
        if slack.interactive_port is None or slack.signing_secret is None:
            return None
        return InteractionServer(
            slack.signing_secret,
            on_interaction=self._on_click,
            on_rejected=self._on_rejected,
            port=slack.interactive_port,
        )

    async def _on_click(self, click: Interaction) -> str | None:
        now = time.time()
        # Slack re-delivers a click it got no quick answer for: act on it once.
        for seen in [k for k, at in self._clicks.items() if at < now - CLICK_MEMORY_S]:
            del self._clicks[seen]
        if click.click_id:
            if click.click_id in self._clicks:
                return None
            self._clicks[click.click_id] = now
        source = f"slack:{click.user}"
        if click.action == "resume":
            own = self.outbox.resumable(click.alert_id)
            foreign = [t for t in click.targets if t not in own]
            count = self.command("unblock", list(click.targets), click.alert_id, source)
            for target in foreign:
                self.metrics.refused.labels("unblock", "not-ours").inc()
                log.warning(
                    "resume of %s by %s on %s refused: not paused by SpendBrake for it",
                    target,
                    source,
                    click.alert_id,
                )
            text = f"Resuming {count} key(s), requested by <@{click.user}>"
            if foreign:
                text += (
                    f"; refused {len(foreign)} key(s) SpendBrake did not pause for this "
                    "incident (an operator can run `spendbrake resume`)"
                )
            return text
        until = now + SNOOZE_S
        self.outbox.snooze(click.scope, until)
        self.outbox.note(
            f"snooze/{click.alert_id}/{click.user}@{now:.3f}",
            "snooze",
            "ok",
            f"scope snoozed for {SNOOZE_S / 3600:g} h",
            now,
            incident=click.alert_id,
            source=source,
        )
        self.save()
        return (
            f"Snoozed for {SNOOZE_S / 3600:g} h by <@{click.user}>: no new messages for this scope"
        )

    async def _on_rejected(self, rejected: Rejected, remote: str) -> None:
        now = time.time()
        # A flood of forged requests must not flood the audit topic: past a few records a
        # minute, the next record counts the ones it stands for.
        if now - self._rejected_window >= 60.0:
            self._rejected_window, self._rejected_in_window = now, 0
        self._rejected_in_window += 1
        if self._rejected_in_window > REJECTED_AUDITS_PER_MIN:
            self._rejected_since += 1
            return
        more, self._rejected_since = self._rejected_since, 0
        self.outbox.note(
            f"interactive/rejected@{now:.6f}",
            "interactive",
            "rejected",
            f"HTTP {rejected.status}: {rejected.reason}"
            + (f" (+{more} more rejected before it, not audited one by one)" if more else ""),
            now,
            source=f"http:{remote}"[:200],
        )
        self.save()

    # -- lanes -------------------------------------------------------------------

    async def _lane(self, lane: str) -> None:
        while not self._stopping.is_set():
            task = self.outbox.head(lane)  # type: ignore[arg-type]
            now = time.time()
            if task is None or task.next_at > now:
                wait = 1.0 if task is None else min(task.next_at - now, 1.0)
                wake = self._wake[lane]
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=wait)
                continue
            since = task.first_attempt_at
            if since is None:
                task.first_attempt_at = now
            task.attempts += 1
            self.save()  # the attempt is on record before it can have an effect
            if lane == "gateway":
                await self._gateway_attempt(task)
            else:
                await self._slack_attempt(task, since)
            self.save()
            self._notify()

    def _settle(self, task: Task, ok: bool, permanent: bool, detail: str, **done: Any) -> None:
        now = time.time()
        retry_after = done.pop("retry_after", None) or 0.0
        effects = self.metrics.effects
        if ok:
            result = "dry_run" if done.pop("dry_run", False) else "ok"
            self.outbox.finish(task, result, detail, now, ts=done.get("ts"))
            effects.labels(task.lane, task.op, result).inc()
        elif permanent or task.attempts >= MAX_ATTEMPTS:
            log.warning("%s failed for good: %s", task.id, detail)
            self.outbox.finish(task, "failed", detail, now)
            effects.labels(task.lane, task.op, "failed").inc()
        else:
            effects.labels(task.lane, task.op, "retrying").inc()
            section = self.config.gateway if task.lane == "gateway" else self.config.slack
            delay = backoff_delay(task.attempts, cap=section.retry_cap_s, rng=self._rng)
            delay = max(delay, retry_after)
            log.info("%s: %s; retry %d in %.1fs", task.id, detail, task.attempts, delay)
            self.outbox.retry(task, detail, delay, now)

    async def _gateway_attempt(self, task: Task) -> None:
        assert task.target is not None
        if task.op == "block":
            # Checked again at the call: a reload may have protected the key since it queued.
            cls = self.config.keys.classify(task.target)
            if not cls.pausable:
                log.warning("%s refused: %s", task.id, refusal(cls))
                self.outbox.finish(task, "refused", refusal(cls), time.time())
                self.metrics.effects.labels(task.lane, task.op, "refused").inc()
                self.metrics.refused.labels("block", cls.protection).inc()
                return
        call = self.gateway.block if task.op == "block" else self.gateway.unblock
        outcome = await call("key", task.target, idempotency_key=task.id)
        self._settle(
            task,
            outcome.ok,
            outcome.permanent,
            outcome.detail,
            dry_run=outcome.dry_run,
            retry_after=outcome.retry_after_s,
        )

    async def _slack_attempt(self, task: Task, since: float | None) -> None:
        if self.slack is None:  # Slack was configured when the task was planned
            self._settle(task, False, True, "slack not configured (slack.token)")
            return
        thread = self.outbox.thread_of(task)
        own = self.outbox.incidents.get(task.incident)
        if thread is None or own is None:
            self._settle(task, False, True, "incident forgotten")
            return
        outcome = outcome_line(own, task.alert, self.outbox.dry_run)
        runbook = self.config.slack.runbook_url
        if task.op == "post":
            text, blocks = render_alert(task.alert, outcome=outcome, runbook_url=runbook)
            result = await self.slack.post(text, blocks, dedupe_key=task.id, since=since)
        elif thread.ts is None:
            # The parent is not posted (it failed for good): say it as a new message.
            text, blocks = render_alert(task.alert, outcome=outcome, runbook_url=runbook)
            if task.op == "update":
                self._settle(task, True, False, "no parent message to update")
                return
            result = await self.slack.post(text, blocks, dedupe_key=task.id, since=since)
        elif task.op == "reply":
            text, blocks = render_followup(task.alert, outcome)
            result = await self.slack.post(
                text, blocks, dedupe_key=task.id, thread_ts=thread.ts, since=since
            )
        else:
            if own is not thread:
                self._settle(task, True, False, "threaded under another incident")
                return
            text, blocks = render_parent_update(task.alert, outcome, own.history)
            result = await self.slack.update(thread.ts, text, blocks)
        self._settle(
            task,
            result.ok,
            result.permanent,
            result.error or "delivered",
            ts=result.ts if task.op == "post" else None,
            retry_after=result.retry_after,
        )

    # -- audit -------------------------------------------------------------------

    async def _audit_loop(self) -> None:
        """Send every audit record not yet acknowledged; a failed send is tried again."""
        assert self.producer is not None
        while not self._stopping.is_set() or self.outbox.audit:
            sent = False
            for key, record in list(self.outbox.audit.items()):
                pending = self._audit_sends.get(key)
                if pending is not None and not pending.done():
                    continue
                if pending is not None and pending.exception() is None:
                    del self._audit_sends[key]
                    if self.outbox.audit.get(key) is record:
                        del self.outbox.audit[key]
                    continue
                self._audit_sends[key] = asyncio.ensure_future(
                    self.producer.send_and_wait(
                        self.config.kafka.topics.actions,
                        orjson.dumps(audit_wire(record)),
                        key=key.encode(),
                    )
                )
                sent = True
            if self._stopping.is_set() and not sent:
                pending = [f for f in self._audit_sends.values() if not f.done()]
                if not pending:
                    break
                await asyncio.wait(pending, timeout=5)
                if any(not f.done() for f in pending):
                    break  # kept in the outbox: sent again after the restart
            await asyncio.sleep(0.05)


def _close_later(close_client: Callable[[], Awaitable[None]], after_s: float) -> None:
    """Close a replaced client once the calls already on it have had time to finish."""

    async def close() -> None:
        await asyncio.sleep(after_s + 1.0)
        with contextlib.suppress(Exception):
            await close_client()

    _closing.add(task := asyncio.get_running_loop().create_task(close()))
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()


def _gateway(config: Config) -> Gateway:
    gateway = config.gateway
    if gateway.dry_run or gateway.master_key or gateway.secret:
        return make_gateway(gateway)
    return NoGateway()
