"""The action stage: ``spend.alerts`` in; Slack messages, gateway calls and audit records out.

Durable outbox (``actions.Outbox``): an alert's effects are planned and saved together
with the alerts offset in ``<state_dir>/actions/outbox.json`` before any is performed (the
outbox order of ``stage.py``); each attempt's start and outcome are saved too. After a
crash or a restart the stage resumes the saved tasks where they stood, so a Slack or
gateway outage (or a kill mid-retry) loses nothing and, the effects being idempotent or
deduplicated, doubles nothing. An ``outbox.pkl`` of an earlier release is read once,
saved as ``outbox.json`` and kept as ``outbox.pkl.migrated``. Every task's latest state
goes to ``spend.actions`` (key: the task id), the audit trail.

Who may be paused is the operator's decision, read from the config this stage loaded: a
record on ``spend.alerts`` asking to pause a key that config does not allow is refused
(audited, shown in Slack, counted in ``spendbrake_refused_total``), whatever the record says,
and so is a queued pause a reload made unallowed. A "Resume" click only unblocks keys this
stage paused for that incident.

The Slack lane runs up to two attempts at once, one per incident thread (``Outbox.ready``):
a stuck message holds its own thread, not every alert behind it. A
``Retry-After`` (Slack's 429, a gateway's 429/503) holds the whole lane until then, and
the most urgent queue goes first when it ends. A Slack config problem (a missing scope, a
channel the bot is not in, a refused token) holds the Slack lane too, is logged once with
what to fix and counted in ``spendbrake_slack_config_errors_total``; the messages wait
and go out once a probe succeeds or the config is reloaded.

The stage also reads the actions topic back for ``spendbrake resume`` records, so an
operator's resume from the terminal reaches the incident's thread like the button's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from spendbrake.actions import (
    RESPONSE_ORIGINS,
    Answer,
    Gateway,
    GatewayOutcome,
    Interaction,
    InteractionServer,
    Outbox,
    Rejected,
    ResumeAnswer,
    SlackNotifier,
    Task,
    backoff_delay,
    dump_outbox,
    how_to_fix,
    load_outbox,
    make_gateway,
    mention,
    outcome_line,
    refusal,
    render_alert,
    render_followup,
    render_parent_update,
    render_resume_answer,
    render_snoozed,
    requester,
    retry_worth_telling,
    scope_key,
    screen_pauses,
)
from spendbrake.schemas import (
    Alert,
    Config,
    StateUnreadable,
    decode_action,
    decode_alert,
    unpickle_state,
    visible,
)
from spendbrake.streamer import write_atomic

from .metrics import ActionMetrics
from .stage import STOP_TIMEOUT_S, Stage, WorkerSettings, confirmed_ends

log = logging.getLogger(__name__)

#: What the "Snooze 1 h" button silences.
SNOOZE_S = 3600.0
#: How long a click is remembered against Slack's re-deliveries of it.
CLICK_MEMORY_S = 600.0
#: Rejected button requests audited one by one per minute; the rest are counted.
REJECTED_AUDITS_PER_MIN = 10
#: Give up on a pause or resume after this many attempts (about 12 hours at the default
#: backoff cap: a pause that late could stop the legitimate traffic of a loop long over). A
#: Slack message is never given up for a failure that may pass (an outage of a day delivers
#: its alerts late, in order), nor is a task waiting on a config problem.
MAX_ATTEMPTS = 1500
#: Attempts in flight per lane, each on its own queue (the gateway lane is one queue).
CONCURRENCY = {"slack": 2, "gateway": 1}
#: At a start, resumes audited while the stage was down are read before effects go out,
#: for at most this long (``ActionStage._read_resumes_first``).
RESUMES_FIRST_S = 10.0
#: Audit ids of ``spendbrake resume`` (``_resume.py``: ``resume/manual/key/...``; before,
#: ``resume/cli/key/...``); the record's source (``cli:USER``) says it was the terminal.
_CLI_RESUME = b"resume/"


def parent_digest(text: str, blocks: list[dict[str, Any]]) -> str:
    """A short digest of a parent message's content (``Incident.shown``): kept in the
    outbox for each incident, so not the content itself."""
    return hashlib.blake2b(orjson.dumps([text, blocks]), digest_size=16).hexdigest()


def _unconfigured(config: Config) -> list[str]:
    """What an operator should know the stage will not do, said once at its start: alerts
    were only logged and pauses only audited, and nothing said so."""
    out = []
    if config.slack.token is None:
        out.append(
            "slack.token is not set: alerts are logged here and kept on the alerts topic, "
            "not posted to Slack"
        )
    if not config.keys.rules:
        out.append(
            "keys.rules is empty: every key is alerted only, never paused (a key may be paused "
            "only when a rule names it pausable)"
        )
    if not _has_gateway(config):
        out.append(
            "no gateway configured (gateway.master_key, or gateway.secret for a webhook): "
            "pauses are audited as failed, no key is paused"
        )
    elif config.gateway.dry_run:  # the example config's setting: it pauses nothing either
        out.append(
            f"gateway.dry_run is set: pauses are audited as dry runs, no key is paused at "
            f"{config.gateway.url}"
        )
    return out


class NoGateway:
    """Stands in when no gateway is configured: pauses are audited as failed.

    ``removed``: a reload took the credentials away while the stage had them (commented
    out for a moment, a ``${VAR}`` being rotated). The pauses and resumes queued then are
    held, as for a gateway refusing its credentials, until a reload brings them back:
    given up at once, they were lost for good.
    """

    def __init__(self, removed: bool = False) -> None:
        self.removed = removed

    async def block(self, kind: str, target: str, *, idempotency_key: str) -> GatewayOutcome:
        if self.removed:
            return GatewayOutcome(
                False,
                False,
                None,
                "no gateway configured since a config reload (gateway.master_key): kept "
                "until one is",
                config_error=True,
            )
        return GatewayOutcome(False, True, None, "no gateway configured (gateway.master_key)")

    unblock = block

    async def aclose(self) -> None:
        return None


class ActionStage(Stage):
    """Performs the effects alerts ask for, in order per lane, exactly once."""

    name = "act"
    rereads = True

    def __init__(self, config: Config, settings: WorkerSettings) -> None:
        super().__init__(config, settings)
        self.topic = config.kafka.topics.alerts
        self.dir = Path(settings.state_dir) / "actions"
        slack = config.slack
        self.outbox = Outbox(
            slack_enabled=slack.token is not None,
            dry_run=config.gateway.dry_run,
            cooldown_s=slack.cooldown_s,
            pause_max_age_s=config.gateway.pause_max_age_s,
            history=slack.history,
            history_after_s=slack.history_after_s,
        )
        self.gateway: Gateway = _gateway(config)
        self.slack = self._notifier(config)
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._buttons: InteractionServer | None = None
        self._lanes: list[asyncio.Task[None]] = []
        #: One wake-up per lane: new work, or a task of the other lane that settled.
        self._wake = {"slack": asyncio.Event(), "gateway": asyncio.Event()}
        self._rng = random.Random()
        #: Audit key -> (the record being sent, its send).
        self._audit_sends: dict[str, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        #: Button clicks acted on (Slack's click id -> when), against re-deliveries.
        self._clicks: dict[str, float] = {}
        self._rejected_window = 0.0
        self._rejected_in_window = 0
        self._rejected_since = 0
        #: Per lane: no attempt before this time (Retry-After, a config problem).
        self._hold = {"slack": 0.0, "gateway": 0.0}
        #: The Slack config problem logged last (logged again only when it changes).
        self._problem: str | None = None
        #: No saved state was found (``load``): the first start decides where to read from.
        self._fresh = False
        #: Set while the gateway lane is held on a configuration error (``_gateway_held``).
        self._gateway_problem: str | None = None
        #: Said once a run: alerts read as history are posted one by one (``slack.history``).
        self._told_history = False
        self._unchecked: set[str] = set()
        self.metrics = ActionMetrics(self.pending, self.waiting_since)

    def pending(self, lane: str) -> int:
        """Effects of ``lane`` not yet performed."""
        return len(self.outbox.lanes[lane])

    def waiting_since(self, lane: str) -> float | None:
        """When the longest-waiting task of ``lane`` was first tried (None: none tried)."""
        # list() copies the deque in one step: metrics are read from another thread.
        tried = [t.first_attempt_at for t in list(self.outbox.lanes[lane])]
        return min((at for at in tried if at is not None), default=None)

    def _notifier(self, config: Config) -> SlackNotifier | None:
        slack = config.slack
        if slack.token is None:
            return None
        known = self.outbox.channel_ids.get(slack.channel)
        return SlackNotifier(slack, timeout_s=slack.timeout_s, channel_id=known)

    def stop(self) -> None:
        super().stop()
        self._notify()

    def reconfigure(self, config: Config) -> list[str]:
        """Use new Slack and gateway settings from the next attempt on (config reload).

        Clients are built before anything changes (a bad gateway section raises and
        leaves the stage as it was); calls in flight finish on the old clients.
        """
        notes: list[str] = []
        old = self.config
        gateway = _gateway(config) if config.gateway != old.gateway else self.gateway
        was_removed = isinstance(self.gateway, NoGateway) and self.gateway.removed
        if isinstance(gateway, NoGateway) and (_has_gateway(old) or was_removed):
            gateway = NoGateway(removed=True)
        slack = self.slack
        if config.slack != old.slack:
            slack = self._notifier(config)
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
        self.outbox.pause_max_age_s = config.gateway.pause_max_age_s
        self.outbox.history = config.slack.history
        self.outbox.history_after_s = config.slack.history_after_s
        if config.slack != old.slack or config.gateway != old.gateway:
            # Whatever waited on the old settings (a refused token or channel, a missing
            # scope, a long backoff) is tried again now under the new ones.
            now = time.time()
            for lane in ("slack", "gateway"):
                self._hold[lane] = 0.0
                woken = self.outbox.unblock_waiting(lane, now)  # type: ignore[arg-type]
                if woken:
                    log.info("config reload: %d %s effect(s) retried now", woken, lane)
        self._notify()
        return notes

    def _notify(self) -> None:
        for event in self._wake.values():
            event.set()

    # -- state ---------------------------------------------------------------

    def lock_path(self) -> Path:
        return self.dir / "lock"

    def load(self) -> None:
        for missing in _unconfigured(self.config):
            log.warning("%s", missing)
        path, old = self.dir / "outbox.json", self.dir / "outbox.pkl"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if not old.exists():
                self._fresh = True
                return
            saved = self._migrate(old, path)
        else:
            try:
                saved = load_outbox(data)
            except ValueError as exc:
                raise _unreadable(path, str(exc)) from None
            if old.exists():
                self._set_aside(old, path)
        # Settings come from the config in force, the rest from the file.
        saved.slack_enabled = self.outbox.slack_enabled
        saved.dry_run = self.outbox.dry_run
        saved.cooldown_s = self.outbox.cooldown_s
        saved.pause_max_age_s = self.outbox.pause_max_age_s
        saved.history = self.outbox.history
        saved.history_after_s = self.outbox.history_after_s
        self.outbox = saved
        if self.slack is not None and self.slack.channel_id is None:
            self.slack.channel_id = saved.channel_ids.get(self.config.slack.channel)
        pending = sum(len(lane) for lane in saved.lanes.values())
        log.info("action stage restored: %d task(s) pending, offsets %s", pending, saved.offsets)

    def _migrate(self, old: Path, path: Path) -> Outbox:
        """Read the ``outbox.pkl`` of an earlier release one last time, save it as
        ``outbox.json`` and keep the pickle beside it as ``outbox.pkl.migrated``."""
        try:
            saved: Outbox = unpickle_state(old.read_bytes())  # our own, by an earlier release
            if not isinstance(saved, Outbox):
                raise TypeError(f"holds a {type(saved).__name__}, not an outbox")
        except Exception as exc:  # a pickle cut short fails in many ways; all mean one thing
            raise _unreadable(old, f"{type(exc).__name__}: {exc}") from None
        write_atomic(path, dump_outbox(saved))
        self._set_aside(old, path)
        log.info("%s migrated to %s; the pickle is kept as %s.migrated", old, path.name, old.name)
        return saved

    def _set_aside(self, old: Path, path: Path) -> None:
        """Rename ``outbox.pkl`` once its content is in ``outbox.json`` (also after a stop
        between the two steps of a migration); never over an earlier ``.migrated`` file."""
        aside = old.with_name(old.name + ".migrated")
        if aside.exists():
            log.warning("%s is ignored: %s is the state; move the pickle away", old, path)
        else:
            old.rename(aside)

    def save(self) -> None:
        if self._fresh:
            return  # nothing decided yet (a refused or interrupted first start): no file
        write_atomic(self.dir / "outbox.json", dump_outbox(self.outbox))

    async def checkpoint(self) -> None:
        """Save the planned effects with the alerts offset (nothing to flush: the effects
        and their audit records are in the outbox until done and acknowledged)."""
        self.save()

    # -- the loop --------------------------------------------------------------

    def connect(self) -> None:
        self.producer = self.new_producer()
        self.consumer = self.new_consumer()

    async def open(self) -> None:
        self._buttons = self._button_server()
        if self._buttons is not None:
            await self._buttons.start()
            log.info(
                "Slack buttons served on http://127.0.0.1:%d/slack/actions", self._buttons.port
            )

    async def start(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        assigned = await self.assign(consumer, self.topic, self.config.kafka.topics.actions)
        alerts = [tp for tp in assigned if tp.topic == self.topic]
        if self._fresh:
            await self._first_start(consumer, alerts)
        moved = await self.seek(consumer, alerts, lambda tp: self.outbox.offsets.get(tp.partition))
        self.outbox.offsets.update({tp.partition: offset for tp, offset in moved.items()})
        actions = [tp for tp in assigned if tp.topic != self.topic]
        saved = self.outbox.actions_offsets
        known = {tp: saved[tp.partition] for tp in actions if tp.partition in saved}
        moved = await self.check_saved(consumer, known)
        for tp in actions:
            if tp in known:
                saved[tp.partition] = moved.get(tp, known[tp])
                consumer.seek(tp, saved[tp.partition])
            else:
                # Resumes from now on: an older one was done before this state existed.
                await consumer.seek_to_end(tp)
                saved[tp.partition] = await consumer.position(tp)

    async def _first_start(self, consumer: AIOKafkaConsumer, alerts: list[TopicPartition]) -> None:
        """No saved state: where to start reading alerts (``WorkerSettings.act_from``)."""
        how = self.settings.act_from
        starts = await consumer.beginning_offsets(alerts)
        ends = await consumer.end_offsets(alerts)
        held = sum(ends[tp] - starts[tp] for tp in alerts)
        if held and how == "saved":
            raise StateUnreadable(
                self.dir / "outbox.json",
                f"missing, and {self.topic} holds {held} alert record(s) it may have acted on",
                "point --state-dir at this stage's saved state (a volume that outlives the "
                "container), or start once with --act-from latest (act on new alerts only) or "
                "--act-from earliest (post every alert and apply every pause again)",
            )
        if how == "latest":
            # Tansu's ListOffsets answers short of the end (``confirmed_ends``): starting
            # there acted again on the old alerts of the last batch.
            ends = await confirmed_ends(consumer, self.config.kafka, ends, alerts)
        start = ends if how == "latest" else starts
        self.outbox.offsets.update({tp.partition: start[tp] for tp in alerts})
        # Saved at once: a restart before the first alert is read starts from here, not
        # from a missing file (which would refuse once alerts came in between).
        self._fresh = False
        self.save()

    async def loop(self) -> None:
        await self._read_resumes_first()
        self._lanes = [
            asyncio.create_task(self._lane("gateway")),
            asyncio.create_task(self._lane("slack")),
            asyncio.create_task(self._audit_loop()),
        ]
        await self._read_alerts()

    async def _read_resumes_first(self) -> None:
        """Read the resumes ``spendbrake resume`` audited while the stage was down before any
        effect goes out: a pause queued before a kill went out at the restart, 1.4 s before
        the operator's resume of that key was read, blocked it again, and was undone.

        Bounded by ``RESUMES_FIRST_S``: past it (a long backlog of the stage's own audit
        records to pass by) the lanes start and the rest is read as before."""
        consumer = self.consumer
        assert consumer is not None
        actions = [tp for tp in consumer.assignment() if tp.topic != self.topic]
        alerts = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        if not actions:
            return
        ends = await consumer.end_offsets(actions)
        deadline = time.monotonic() + RESUMES_FIRST_S
        consumer.pause(*alerts)
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                if all([await consumer.position(tp) >= ends[tp] for tp in actions]):
                    break
                batches = await self.fetch(consumer, 200, 1000)
                for tp, messages in batches.items():
                    self._read_resumes(tp.partition, messages, time.time())
        finally:
            consumer.resume(*alerts)
        await self.checkpoint()

    async def wind_down(self) -> None:
        self.stop()
        if self._buttons is not None:
            await self._buttons.stop()
        # One deadline for all lanes: in a broker outage each would use all of it.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for task in self._lanes:
            try:
                await asyncio.wait_for(task, timeout=max(0.0, deadline - time.monotonic()))
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self.save()
        pending = {lane: len(tasks) for lane, tasks in self.outbox.lanes.items() if tasks}
        if pending or self.outbox.audit:
            # Saved with the offsets: the next start carries them out, none lost or doubled.
            log.info(
                "action stage stopped with %s pending (saved; done at the next start)",
                ", ".join(
                    [f"{n} {lane} effect(s)" for lane, n in pending.items()]
                    + ([f"{len(self.outbox.audit)} audit record(s)"] if self.outbox.audit else [])
                ),
            )
        await self.gateway.aclose()
        if self.slack is not None:
            await self.slack.close()

    def repositioned(self, moved: dict[TopicPartition, int]) -> None:
        for tp, offset in moved.items():
            offsets = self.outbox.offsets if tp.topic == self.topic else self.outbox.actions_offsets
            offsets[tp.partition] = offset
        self.save()

    async def _read_alerts(self) -> None:
        assert self.consumer is not None
        while not self.stopping.is_set():
            batches = await self.fetch(self.consumer, 200, 1000)
            if not batches:
                if self.outbox.flush_history(time.time()):
                    await self.checkpoint()
                    self._notify()
                continue
            now = time.time()
            accepted = 0
            for tp, messages in batches.items():
                if tp.topic != self.topic:
                    accepted += self._read_resumes(tp.partition, messages, now)
                    continue
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
                        self._hint_history(alert, now)
                        if alert.action == "pause":
                            self._count_refusals(alert)
                        # When it was detected: a backlog's alerts read as live ones, and
                        # reasons name an hour by its weekday only.
                        at = alert.detected_at[:16].replace("T", " ")
                        log.info(
                            "alert %s (%s), detected %s: %s",
                            # Names from events are text: a newline forged a log line.
                            visible(alert.ref()),
                            visible(self._done(alert, now)),
                            visible(f"{at} UTC" if at else "at an unknown time"),
                            visible(alert.reason),
                        )
            accepted += self.outbox.flush_history(now)
            self.outbox.prune(now)
            await self.checkpoint()  # planned effects and the offset, together, before acting
            if accepted:
                self._notify()

    def _hint_history(self, alert: Alert, now: float) -> None:
        """A catch-up posting history one message at a time says, once, how not to."""
        if self._told_history or self.config.slack.history != "post" or self.slack is None:
            return
        past = self.outbox.past_history(alert, now)
        if past is not None and past > 0.0:
            self._told_history = True
            log.warning(
                "reading alerts caught long ago (%s, %.1f h before now): each is posted to "
                "Slack marked as history; slack.history: summary posts one message for them",
                alert.detected_at[:16],
                (past + (self.config.slack.history_after_s or 0.0)) / 3600,
            )

    def _read_resumes(self, partition: int, messages: list[Any], now: float) -> int:
        """``spendbrake resume`` audits each key it unblocked on the actions topic: tell
        the incidents that paused it, in their threads (the stage's own records pass by)."""
        told = 0
        for message in messages:
            self.outbox.actions_offsets[partition] = message.offset + 1
            if not (message.key or b"").startswith(_CLI_RESUME) or message.value is None:
                continue
            try:
                record = decode_action(message.value)
            except ValueError as exc:
                log.warning("resume record %s skipped: %s", message.key, exc)
                continue
            source = record.source
            if (
                record.action != "unblock"
                or record.result not in ("ok", "dry_run")
                or not source.startswith("cli:")
                or "key" not in (record.scope or {})  # a --team resume
                or record.target is None
            ):
                continue
            target = record.target
            count = self.outbox.resumed_elsewhere(message.key.decode(), target, source, now)
            if count:
                log.info("%s resumed %s: %d incident thread(s) told", source, target, count)
            told += count
        return told

    def _done(self, alert: Alert, now: float) -> str:
        """What the stage does with ``alert``'s targets, for its log line: "pause k" read for
        a pause skipped as history (``Outbox.history_skip``) or refused by the keys config,
        and an operator took the key for paused."""
        what = ", ".join(alert.targets) or "no key"
        if alert.action == "resume" and alert.targets:
            return self._resumed(alert)
        if alert.action != "pause":
            if alert.held_keys:  # "(alert only)" read as nothing to pause; Slack says "held"
                until = min(alert.held_keys.values())[:16].replace("T", " ")
                return f"pause {', '.join(sorted(alert.held_keys))} held until {until} UTC"
            # "(alert no key)" read as a missing key; it is an alert that pauses nothing.
            return f"{alert.action} {what}" if alert.targets else f"{alert.action} only"
        allowed, denied = screen_pauses(alert.targets, self.config.keys)
        parts = []
        if allowed:
            skipped = self.outbox.history_skip(alert, now)
            parts.append(f"pause {', '.join(allowed)}")
            if skipped is not None:
                parts[-1] += f" skipped: {skipped}, history, NOT paused"
        if denied:
            parts.append(f"pause {', '.join(target for target, _ in denied)} refused")
        return "; ".join(parts) or f"pause {what}"

    def _resumed(self, alert: Alert) -> str:
        """What a resume just accepted does with each key it names: "resume k1, k2" read as
        done for a key another incident still holds paused, or that was never paused."""
        ref = alert.ref()
        queued = {
            t.target for t in self.outbox.lanes["gateway"] if t.id.startswith(f"{ref}/unblock/")
        }
        parts = [f"resume {', '.join(t for t in alert.targets if t in queued)}"] if queued else []
        for target in [t for t in alert.targets if t not in queued]:
            record = self.outbox.audit.get(f"{ref}/unblock/{target}")
            why = record.detail if record is not None else "resumed already, or underway"
            parts.append(f"{target} not resumed: {why}")
        return "; ".join(parts)

    def _count_refusals(self, alert: Alert) -> None:
        _, denied = screen_pauses(alert.targets, self.config.keys)
        for target, cls in denied:
            self.metrics.refused.labels("block", cls.protection).inc()
            log.warning(
                "alert %s asks to pause %s: refused, %s",
                alert.ref(),
                target,
                refusal(cls),
            )

    def command(self, op: str, targets: list[str], incident: str, source: str) -> ResumeAnswer:
        """Queue an operator's resume (the Slack button calls this)."""
        answer = self.outbox.command(op, targets, incident, source, time.time())  # type: ignore[arg-type]
        self.save()
        self._notify()
        return answer

    # -- Slack buttons ------------------------------------------------------------

    def _button_server(self) -> InteractionServer | None:
        slack = self.config.slack
        if slack.interactive_port is None or slack.signing_secret is None:
            return None
        origins = list(RESPONSE_ORIGINS)
        if slack.base_url:  # a Slack stand-in (a proxy, the fake) answers clicks too
            parts = urlsplit(slack.base_url)
            origins.append(f"{parts.scheme}://{parts.netloc}")
        return InteractionServer(
            slack.signing_secret,
            on_interaction=self._on_click,
            on_rejected=self._on_rejected,
            port=slack.interactive_port,
            response_origins=origins,
        )

    async def _on_click(self, click: Interaction) -> str | Answer | None:
        now = time.time()
        # Slack re-delivers a click it got no quick answer for: act on it once.
        for seen in [k for k, at in self._clicks.items() if at < now - CLICK_MEMORY_S]:
            del self._clicks[seen]
        if click.click_id:
            if click.click_id in self._clicks:
                return None
            self._clicks[click.click_id] = now
        source = f"slack:{click.user}"
        allowed = self.config.slack.allowed_users
        if allowed is not None and click.user not in allowed:
            return self._not_allowed(click, source, now)
        if click.action == "resume":
            # A button of many keys says "all": every key paused for the incident.
            targets = (
                sorted(self.outbox.resumable(click.alert_id)) if click.every else click.targets
            )
            if not targets:
                return (
                    "Nothing to resume: no key SpendBrake paused for this incident is still paused."
                )
            answer = self.command("unblock", list(targets), click.alert_id, source)
            if answer.queued or answer.underway or answer.done:
                log.info(
                    "resume asked by %s on %s: %s",
                    source,
                    visible(click.alert_id),
                    "; ".join(
                        f"{what} {visible(', '.join(keys))}"
                        for what, keys in (
                            ("unblocking", answer.queued),
                            ("already underway", answer.underway),
                            ("already resumed", answer.done),
                        )
                        if keys
                    ),
                )
            for target in answer.refused:
                self.metrics.refused.labels("unblock", "not-ours").inc()
                log.warning(
                    "resume of %s by %s on %s refused: not paused by SpendBrake for it",
                    target,
                    source,
                    click.alert_id,
                )
            return render_resume_answer(
                answer,
                click.user,
                known=click.alert_id in self.outbox.incidents,
                gateway_problem=self._gateway_failing(),
            )
        scope = click.scope
        if scope is None:  # too long for the button: the incident's
            incident = self.outbox.incidents.get(click.alert_id)
            if incident is None:
                return f"Cannot {click.action}: SpendBrake no longer knows this incident's scope."
            scope = incident.alert.scope
        if click.action == "unsnooze":
            return self._unsnooze(click, scope, source, now)
        until = now + SNOOZE_S
        self.outbox.snooze(scope, until)
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
        log.info(
            "scope %s snoozed by %s for %g h (incident %s)",
            visible(scope_key(scope)),  # event text, as in every log line
            source,
            SNOOZE_S / 3600,
            visible(click.alert_id),
        )
        # The channel hears it: a scope silenced by one person must not surprise the others,
        # and any of them can lift it.
        text = (
            f"Snoozed for {SNOOZE_S / 3600:g} h by {mention(click.user)}: no new alert messages "
            "for this scope until "
            f"{time.strftime('%H:%M', time.gmtime(until))} UTC (pauses and their alerts still "
            "post)"
        )
        return Answer(text, public=True, blocks=render_snoozed(text, click.alert_id, scope))

    def _unsnooze(
        self, click: Interaction, scope: dict[str, str | None], source: str, now: float
    ) -> str | Answer:
        """Lift a snooze before its hour is up: told to the channel, like the snooze."""
        held = self.outbox.unsnooze(scope, now)
        if held is None:
            return "Nothing to undo: this scope is not snoozed (its snooze ended or was lifted)."
        self.outbox.note(
            f"unsnooze/{click.alert_id}/{click.user}@{now:.3f}",
            "unsnooze",
            "ok",
            f"snooze lifted; {held} alert message(s) were held back",
            now,
            incident=click.alert_id,
            source=source,
        )
        self.save()
        log.info(
            "snooze of scope %s lifted by %s; %d alert message(s) were held back",
            visible(scope_key(scope)),
            source,
            held,
        )
        missed = (
            f" {held} alert message(s) were held back meanwhile (the actions topic audits them "
            "as `skipped: scope snoozed`; `spendbrake report` lists their alerts)."
            if held
            else " None was held back meanwhile."
        )
        return Answer(
            f"Snooze lifted by {mention(click.user)}: alert messages for this scope post again."
            + missed,
            public=True,
        )

    def _not_allowed(self, click: Interaction, source: str, now: float) -> str:
        """A click by someone ``slack.allowed_users`` does not name: refused, audited and
        counted, and the clicker told who may."""
        op = "unblock" if click.action == "resume" else click.action
        self.outbox.note(
            f"{click.action}/{click.alert_id}/{click.user}@{now:.3f}",
            op,
            "refused",
            "not in slack.allowed_users",
            now,
            incident=click.alert_id,
            source=source,
        )
        self.save()
        self.metrics.refused.labels(op, "not-allowed").inc()
        log.warning(
            "%s by %s on %s refused: not in slack.allowed_users", op, source, click.alert_id
        )
        return (
            f"Not done: {mention(click.user)} is not in slack.allowed_users, the people who "
            "may resume or snooze SpendBrake's alerts. Ask one of them, or an operator "
            "(`spendbrake resume KEY` at a terminal)."
        )

    def _gateway_failing(self) -> str | None:
        """Why the gateway lane is not getting through right now, if it is not: a resume
        clicked meanwhile waits behind it, and the clicker should know."""
        if self._gateway_problem is not None:
            return self._gateway_problem
        head = self.outbox.head("gateway")
        if head is not None and head.attempts and head.last_error:
            return head.last_error
        if self._hold["gateway"] > time.time():
            return "it asked us to wait (Retry-After)"
        return None

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
        """Start due attempts, one per queue, up to ``CONCURRENCY[lane]`` at once."""
        running: dict[asyncio.Task[None], str] = {}
        wake = self._wake[lane]
        try:
            while not self.stopping.is_set():
                now = time.time()
                while len(running) < CONCURRENCY[lane] and now >= self._hold[lane]:
                    task = self.outbox.ready(lane, now, running.values())  # type: ignore[arg-type]
                    if task is None:
                        break
                    key = self.outbox.order_key(task)
                    running[asyncio.create_task(self._attempt(lane, task))] = key
                due = self.outbox.next_due(lane, running.values())  # type: ignore[arg-type]
                at = now + 1.0 if due is None else max(due, self._hold[lane])
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        [waiter, *running],
                        timeout=min(max(at - now, 0.0), 1.0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()
                for attempt in [a for a in running if a.done()]:
                    del running[attempt]
                    if not attempt.cancelled() and attempt.exception() is not None:
                        log.error("%s attempt crashed", lane, exc_info=attempt.exception())
            if running:  # let calls in flight finish (bounded by their timeouts)
                await asyncio.wait(running)
        finally:
            for attempt in running:
                attempt.cancel()

    async def _attempt(self, lane: str, task: Task) -> None:
        if task.first_attempt_at is None:
            task.first_attempt_at = time.time()
        task.attempts += 1
        unsure = task.unsure
        if lane == "gateway" or task.op in ("post", "reply"):
            task.unsure = True  # a kill mid-call leaves the outcome unknown
        self.save()  # the attempt is on record before it can have an effect
        try:
            if lane == "gateway":
                await self._gateway_attempt(task, unsure)
            else:
                await self._slack_attempt(task, unsure)
        except Exception:
            # A bug must not end the lane or leave the task in flight: retry it later.
            log.exception("%s: attempt failed unexpectedly", task.id)
            self._settle(task, False, "retry", "internal error (see the log)")
        finally:
            self.save()
            self._notify()

    def _settle(
        self,
        task: Task,
        ok: bool,
        failure: str | None,
        detail: str,
        *,
        retry_after: float | None = None,
        ts: str | None = None,
        channel: str | None = None,
        dry_run: bool = False,
        error: str | None = None,
        needed: str | None = None,
        replaced: bool = False,
    ) -> None:
        now = time.time()
        effects = self.metrics.effects
        if ok:
            result = "dry_run" if dry_run else "ok"
            self.outbox.finish(task, result, detail, now, ts=ts, channel=channel)
            effects.labels(task.lane, task.op, result).inc()
        elif failure == "permanent" or (
            failure != "config" and task.lane == "gateway" and task.attempts >= MAX_ATTEMPTS
        ):
            log.warning("%s failed for good: %s", task.id, detail)
            self.outbox.finish(task, "failed", detail, now)
            effects.labels(task.lane, task.op, "failed").inc()
        elif failure == "config" and replaced:
            # Refused under settings a reload replaced during the call: tried again now
            # under the new ones (held, it would wait a probe interval for a fix made).
            effects.labels(task.lane, task.op, "retrying").inc()
            log.info("%s: %s, under the config before the reload; retried now", task.id, detail)
            self.outbox.retry(task, detail, 0.0, now)
        elif failure == "config":
            effects.labels(task.lane, task.op, "waiting").inc()
            self._held_by_config(task, detail, error or detail, needed, now)
        else:
            effects.labels(task.lane, task.op, "retrying").inc()
            if retry_after is not None:
                # The server said when: every call of the lane waits until then, and the
                # most urgent queue goes first after it.
                delay = retry_after
                self._hold[task.lane] = max(self._hold[task.lane], now + retry_after)
            else:
                section = self.config.gateway if task.lane == "gateway" else self.config.slack
                delay = backoff_delay(task.attempts, cap=section.retry_cap_s, rng=self._rng)
            log.log(
                logging.INFO if retry_worth_telling(task.attempts) else logging.DEBUG,
                "%s: %s; retry %d in %.1fs",
                task.id,
                detail,
                task.attempts,
                delay,
            )
            self.outbox.retry(task, detail, delay, now)

    def _held_by_config(
        self, task: Task, detail: str, error: str, needed: str | None, now: float
    ) -> None:
        """A refused token, scope or channel: the Slack lane waits for the fix. A gateway
        answering 500 to every call: the gateway lane does."""
        if task.lane == "gateway":
            self._gateway_held(task, detail, now)
            return
        problem = f"{error} {needed or ''}".strip()
        self.metrics.slack_config_errors.labels(error, needed or "").inc()
        # Tried again every retry_cap_s (a scope granted or the bot invited needs no
        # reload), and at once on a config reload.
        probe_s = self.config.slack.retry_cap_s
        if self._lane_wide(task, error):
            # Every message would be refused alike: a probe or two per interval, not one
            # call per waiting message.
            self._hold[task.lane] = now + probe_s
        self.outbox.retry(task, detail, probe_s, now, blocked_on=problem)
        if problem != self._problem:
            self._problem = problem
            waiting = self.pending(task.lane)
            log.error(
                "slack refuses to deliver to %s: %s; %d message(s) are kept and sent once "
                "this is fixed (%s), tried again every %.0f s and at once on a config reload",
                self.config.slack.channel,
                problem,
                waiting,
                how_to_fix(error, needed),
                probe_s,
            )

    def _gateway_held(self, task: Task, detail: str, now: float) -> None:
        """Every call would fail alike: kept, one probe per ``gateway.retry_cap_s`` (and at
        once on a config reload), the lane in order as before."""
        probe_s = self.config.gateway.retry_cap_s
        self._hold["gateway"] = now + probe_s
        self.outbox.retry(task, detail, probe_s, now, blocked_on="gateway configuration error")
        if self._gateway_problem is None:
            self._gateway_problem = detail
            log.error(
                "%d pause(s) and resume(s) are kept and sent once the gateway works, tried "
                "again every %.0f s and at once on a config reload",
                self.pending("gateway"),
                probe_s,
            )

    def _lane_wide(self, task: Task, error: str) -> bool:
        """Whether a config refusal holds every message: the token or scope always does;
        a channel refusal only for the configured channel (an old incident's thread may
        sit in a channel since archived)."""
        if error not in ("channel_not_found", "not_in_channel", "is_archived"):
            return True
        thread = self.outbox.thread_of(task)
        if task.op == "post" or thread is None or thread.ts is None:
            return True
        return thread.channel is None or thread.channel == getattr(self.slack, "channel_id", None)

    async def _gateway_attempt(self, task: Task, before: bool | None = None) -> None:
        """One call; ``before``: whether an earlier attempt may have landed (``Task.unsure``
        as it was before ``_attempt`` set it for this one, a kill mid-call being unknown)."""
        assert task.target is not None
        before = task.unsure if before is None else before
        task.unsure = before  # for a skip or a refusal here: this attempt sends nothing
        if task.cancelled:
            why = (
                "the key was resumed before this pause was retried; an earlier attempt may have "
                "landed: undone"
                if before
                else "the key was resumed before this pause went out"
            )
            self.outbox.finish(task, "skipped", why, time.time())
            self.metrics.effects.labels(task.lane, task.op, "skipped").inc()
            return
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
        task.unsure = before or outcome.unsure
        if outcome.ok and self._gateway_problem is not None:
            woken = self.outbox.unblock_waiting("gateway", time.time())
            log.info("gateway works again; %d kept pause(s) and resume(s) go now", woken)
            self._gateway_problem = None
        failure = "permanent" if outcome.permanent else "retry"
        self._settle(
            task,
            outcome.ok,
            "config" if outcome.config_error else failure,
            outcome.detail,
            dry_run=outcome.dry_run,
            retry_after=outcome.retry_after_s,
        )

    async def _slack_attempt(self, task: Task, unsure: bool) -> None:
        slack = self.slack
        if slack is None:  # Slack was configured when the task was planned
            self._settle(task, False, "permanent", "slack not configured (slack.token)")
            return
        thread = self.outbox.thread_of(task)
        own = self.outbox.incidents.get(task.incident)
        if thread is None or own is None:
            self._settle(task, False, "permanent", "incident forgotten")
            return
        failing = self.outbox.pause_failing(own.id)
        outcome = outcome_line(own, task.alert, self.outbox.dry_run, failing, task.keys)
        history_after_s = self.config.slack.history_after_s
        marks = {
            "posted_at": None if history_after_s is None else time.time(),
            "history_after_s": history_after_s or 0.0,
        }
        shown = {
            "runbook_url": self.config.slack.runbook_url,
            "buttons": self._buttons is not None,
            "since": own.detected_at,
            **marks,
        }
        since = task.first_attempt_at if unsure else None
        digest = None  # the parent's content this attempt sets, once Slack confirms it
        if task.op == "post":
            text, blocks = render_alert(task.alert, outcome=outcome, **shown)
            result = await slack.post(text, blocks, dedupe_key=task.id, since=since)
            if since is None:  # not one found: an earlier attempt may have said otherwise
                digest = parent_digest(text, blocks)
        elif thread.ts is None:
            # The parent is not posted (it failed for good): say it as a new message.
            text, blocks = render_alert(task.alert, outcome=outcome, **shown)
            if task.op == "update":
                self._settle(task, True, None, "no parent message to update")
                return
            result = await slack.post(text, blocks, dedupe_key=task.id, since=since)
        elif task.op == "reply":
            text, blocks = render_followup(
                task.alert,
                outcome,
                by=requester(task.source),
                resumable=bool(self.outbox.resumable(own.id)),
                **marks,
            )
            result = await slack.post(
                text,
                blocks,
                dedupe_key=task.id,
                thread_ts=thread.ts,
                channel=thread.channel,
                since=since,
            )
        else:
            if own is not thread:
                self._settle(task, True, None, "threaded under another incident")
                return
            # The parent shows the incident's latest state, whichever task asked for it (an
            # older record re-sent late, a continuation part, a resume).
            latest = own.alert
            text, blocks = render_parent_update(
                latest,
                outcome_line(own, latest, self.outbox.dry_run, failing),
                own.history,
                resumable=bool(self.outbox.resumable(own.id)),
                **shown,
            )
            digest = parent_digest(text, blocks)
            if digest == own.shown:
                # Two plans of one state (alert #1's update, then its pause's): the parent
                # already says this. Compared at the send, not when planned: an update
                # renders the state of its send, and one not yet delivered is not shown.
                self.outbox.finish(task, "skipped", "the parent already shows this", time.time())
                self.metrics.effects.labels(task.lane, task.op, "skipped").inc()
                return
            own.shown = None  # unknown until Slack answers: a kill mid-call may have set it
            self.save()
            result = await slack.update(thread.ts, text, blocks, channel=thread.channel)
        self._learn_channel(slack)
        if result.ok and digest is not None:
            own.shown = digest
        if task.op in ("post", "reply"):
            # Sticky: an answer proving this attempt posted nothing says nothing about an
            # earlier one that may have (a failed check posted nothing either).
            task.unsure = unsure or result.failure == "unsure"
        if result.unchecked:
            self._note_unchecked(result.unchecked)
        if result.ok and self._problem is not None:
            woken = self.outbox.unblock_waiting("slack", time.time())
            log.info(
                "slack delivers again (%s is resolved); %d kept message(s) go now",
                self._problem,
                woken,
            )
            self._problem = None
        self._settle(
            task,
            result.ok,
            result.failure,
            " ".join(filter(None, (result.error, result.needed))) or "delivered",
            ts=result.ts if task.op == "post" else None,
            channel=result.channel,
            retry_after=result.retry_after,
            error=result.error,
            needed=result.needed,
            replaced=slack is not self.slack,
        )

    def _learn_channel(self, slack: SlackNotifier) -> None:
        name = self.config.slack.channel
        if slack is not self.slack:  # replaced by a config reload during the call
            return
        if slack.channel_id and self.outbox.channel_ids.get(name) != slack.channel_id:
            self.outbox.channel_ids[name] = slack.channel_id

    def _note_unchecked(self, why: str) -> None:
        """A post that may have gone out was sent again without a look: say once why."""
        self.metrics.slack_unchecked.labels(why).inc()
        if why not in self._unchecked:
            self._unchecked.add(why)
            log.warning(
                "slack: a message that may already be posted cannot be looked for (%s); "
                "it is posted again, so a duplicate is possible. %s",
                why,
                "Give the bot that scope." if ":" in why else "Set slack.channel to its id.",
            )

    # -- audit -------------------------------------------------------------------

    async def _audit_loop(self) -> None:
        """Send every audit record not yet acknowledged; a failed send is tried again."""
        assert self.producer is not None
        while not self.stopping.is_set() or self.outbox.audit:
            sent = False
            for key, record in list(self.outbox.audit.items()):
                carried, pending = self._audit_sends.get(key, (None, None))
                if pending is not None and not pending.done():
                    continue
                if pending is not None and pending.exception() is None:
                    del self._audit_sends[key]
                    # Acknowledged: drop it, unless a newer state of the task came meanwhile
                    # (that one is sent next; dropping it lost a task's final state).
                    if carried is record:
                        del self.outbox.audit[key]
                        continue
                self._audit_sends[key] = (
                    record,
                    asyncio.ensure_future(
                        self.producer.send_and_wait(
                            self.config.kafka.topics.actions,
                            record.to_json(),
                            key=key.encode(),
                        )
                    ),
                )
                sent = True
            if self.stopping.is_set() and not sent:
                pending = [f for _, f in self._audit_sends.values() if not f.done()]
                if not pending:
                    break
                await asyncio.wait(pending, timeout=5)
                if any(not f.done() for f in pending):
                    break  # kept in the outbox: sent again after the restart
            await asyncio.sleep(0.05)


def _unreadable(path: Path, reason: str) -> StateUnreadable:
    # Starting empty would read the alerts topic from its start and act on every alert
    # again: Slack posts and pauses of incidents long over.
    return StateUnreadable(
        path,
        reason,
        "restore it from a backup; moving it aside makes the stage act again on every "
        "alert the alerts topic still holds (past pauses included)",
    )


def _close_later(close_client: Callable[[], Awaitable[None]], after_s: float) -> None:
    """Close a replaced client once the calls already on it have had time to finish."""

    async def close() -> None:
        await asyncio.sleep(after_s + 1.0)
        with contextlib.suppress(Exception):
            await close_client()

    _closing.add(task := asyncio.get_running_loop().create_task(close()))
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()


def _has_gateway(config: Config) -> bool:
    gateway = config.gateway
    return bool(gateway.dry_run or gateway.master_key or gateway.secret)


def _gateway(config: Config) -> Gateway:
    return make_gateway(config.gateway) if _has_gateway(config) else NoGateway()
