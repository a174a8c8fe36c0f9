"""The action stage's durable plan: which effects each alert asks for, and where each stands.

Pure state, no I/O: the stage feeds it alerts and attempt outcomes, saves it (with the
alert offsets) before acting, and performs what it hands out. That makes every effect
at-least-once attempted and, with idempotent effects, exactly once performed:

- a gateway block or unblock is idempotent at the gateway, so repeating one whose outcome
  is unknown (a timeout, a crash mid-call) cannot double-act;
- a Slack post is not, so each carries a dedupe key in its metadata, and a repeat of one
  that may have posted (``Task.unsure``) first looks for it; one whose answer proved
  nothing was posted (a 429, a refused connection) is simply sent again.

Tasks sit in two lanes (Slack, gateway), so a Slack outage never holds a pause back.
Order is kept per queue (``order_key``). Slack has one queue per incident thread (post
before replies before updates): a thread whose head keeps failing holds only itself, and
``ready`` hands out the most urgent due head first (the highest severity waiting in its
queue: critical alerts first), then the oldest. The gateway lane is one queue, in the
order the alerts came: its failures are the gateway's (down, overloaded, misconfigured),
so calls side by side would only multiply them, and the effects on a scope stay in order.

An alert record names pause targets; it does not decide them. Every pause is checked
against the ``keys`` section of the config the stage loaded itself (``accept`` takes it),
and one the config does not allow is refused: audited with the reason, shown in Slack,
never sent to the gateway. A resume from a button only unblocks what this outbox paused
for that incident (``resumable``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

import msgspec

from spendbrake.schemas import (
    KEY_DIMENSIONS,
    STOP_PAUSING,
    ActionRecord,
    Alert,
    InvalidEvent,
    KeysConfig,
    parse_ts,
)

from ._blocks import HISTORY_KIND, age_label
from ._blocks import mask as _short
from ._history import HISTORY_HELD, HeldHistory
from ._policy import NOTICES, PAUSE_KINDS, on_a_sum, refusal, screen_pauses

__all__ = ["Incident", "Outbox", "ResumeAnswer", "Task", "outcome_line", "scope_key"]

Lane = Literal["slack", "gateway"]
Op = Literal["post", "reply", "update", "block", "unblock"]
Result = Literal["ok", "failed", "retrying", "dry_run", "skipped", "refused"]

#: Alert keys remembered against re-delivery, and incidents kept for threading.
REMEMBER_S = 30 * 86400
#: The audit detail of an alert of severity ``info``: routed to the digest, not posted.
DIGEST_ONLY = "trend (severity info): for the digest, not paged"
#: History held for a summary goes out once none has been read for this long, or once the
#: first was held this long ago (a catch-up of weeks: a summary an hour, not one at the end).
HISTORY_QUIET_S = 300.0
HISTORY_MOST_S = 3600.0
#: The longest a task waits for its next attempt.
MAX_DELAY_S = 86400.0
#: Failed attempts in a row of the gateway lane's first call after which a pause still
#: underway reads as failing: "Pausing KEY …" for the hours of a gateway outage read as
#: being handled, and the on-call did not pause it by hand.
FAILING_AFTER = 3
#: Queue urgency by alert severity: critical alerts go first.
_URGENCY = {"critical": 2, "warning": 1, "info": 0}


def _restore(
    obj: Any,
    state: tuple[Any, dict[str, Any]] | dict[str, Any],
    legacy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Set a slots dataclass from its pickled state; a field the saved object did not have
    yet (an outbox.pkl from an older release) takes its default, or ``legacy(saved)``."""
    saved = state[1] if isinstance(state, tuple) else state
    saved = dict(saved or {})
    missing = {f.name for f in fields(obj)} - saved.keys()
    for f in fields(obj):
        if f.name not in missing:
            continue
        if f.default is not MISSING:
            setattr(obj, f.name, f.default)
        elif f.default_factory is not MISSING:
            setattr(obj, f.name, f.default_factory())
    if legacy is not None and missing:
        saved.update({k: v for k, v in legacy(saved).items() if k in missing})
    for name, value in saved.items():
        setattr(obj, name, value)


def _typed_alert(obj: Any) -> None:
    """An outbox pickled by a release whose alerts were dicts (the record as decoded from
    the topic, so well-formed) holds them typed once restored."""
    if isinstance(obj.alert, dict):
        obj.alert = msgspec.convert(obj.alert, Alert)


def _stand_in(incident_id: str) -> Alert:
    """The alert a resume click for an incident this outbox does not know is audited under:
    its id, no kind, no reason (the audit record says null for both)."""
    return Alert(kind="", id=incident_id, seq=0, severity="info", reason="")


def _blocked_from_incidents(saved: dict[str, Any]) -> dict[str, Any]:
    """``Outbox.blocked`` of an outbox saved before it was kept: its incidents' pauses."""
    blocked: dict[str, str] = {}
    for incident in saved.get("incidents", {}).values():
        for key in [*incident.paused, *incident.failed]:
            if key not in incident.resumed:
                blocked[key] = incident.id
    return {"blocked": blocked}


def scope_key(scope: dict[str, Any]) -> str:
    return ",".join(f"{k}={scope[k]}" for k in sorted(scope)) or "global"


@dataclass(slots=True)
class Task:
    """One effect to perform: a Slack message or a gateway call."""

    id: str
    lane: Lane
    op: Op
    incident: str
    alert: Alert
    target: str | None = None
    source: str = "policy"
    attempts: int = 0
    #: Set (and saved) before the first attempt: a later attempt searches from here.
    first_attempt_at: float | None = None
    next_at: float = 0.0
    last_error: str | None = None
    #: Some attempt may have had its effect (no answer, Slack's fatal_error, a kill
    #: mid-call): a Slack post's next attempt looks for it first; a gateway pause given up
    #: (refused by a reload, resumed before it went out) is undone. Set before each attempt
    #: and cleared only by an answer proving nothing was done by any attempt so far.
    unsure: bool = False
    #: The config problem this task waits on (``missing_scope chat:write``), if any: it is
    #: retried slowly, and at once when the config is reloaded.
    blocked_on: str | None = None
    #: The queue it keeps its order in (``Outbox.order_key``), set when planned.
    queue: str | None = None
    #: A block whose key was resumed before it went out: skipped if not yet sent, undone if
    #: it landed anyway (an attempt already in flight).
    cancelled: bool = False
    #: A message about one record: the keys whose outcome it tells (those the record
    #: names, refused or skipped ones included); None: the whole incident's (the parent).
    keys: list[str] | None = None

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        # Before ``unsure`` existed every repeat of a post looked first: keep that for
        # tasks restored mid-retry.
        _restore(self, state, lambda s: {"unsure": s.get("first_attempt_at") is not None})
        _typed_alert(self)


@dataclass(slots=True)
class Incident:
    """What Slack shows for one incident: its thread and the latest state."""

    id: str
    scope: str
    alert: Alert
    ts: str | None = None
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    opened_at: float = 0.0
    #: Posted inside another incident's thread (same scope, within the cooldown).
    thread: str | None = None
    #: Gateway tasks still open, per alert key: a thread reply goes out when it hits 0.
    open_calls: dict[str, int] = field(default_factory=dict)
    #: ``detected_at`` (event time) of the incident's first alert: when it was caught.
    #: ``alert`` is the latest record, whose time is that of the last escalation.
    detected_at: str | None = None
    #: Pause targets the stage's own keys config did not allow (never sent to the gateway).
    refused: list[str] = field(default_factory=list)
    #: Pause targets not paused because the alert was read too long after it was detected
    #: (``Outbox.pause_max_age_s``).
    late: list[str] = field(default_factory=list)
    #: Id of the Slack channel the parent went to: replies and updates follow it there
    #: even after ``slack.channel`` changes (None: posted before this was kept).
    channel: str | None = None
    #: Digest of the text and blocks the parent is known to show (the post, or the last
    #: update, as Slack confirmed it); None while unknown (an attempt in flight, a post
    #: found after a timeout). An update that would set the same is skipped: chat.update
    #: is rate limited (Tier 3), and two plans of one state sent it twice.
    shown: str | None = None
    #: Its parent was posted as history (caught long before it was read): a live record
    #: of it is posted as a message of its own, not hidden in that thread.
    historic: bool = False

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """An outbox saved before a field existed loads with that field's default."""
        _restore(self, state)
        _typed_alert(self)


def retry_worth_telling(attempts: int) -> bool:
    """Whether a retry is audited (and logged at INFO): the first three, then the 4th, 8th,
    16th... An outage of a day retried every minute wrote 1,440 audit records a waiting
    message (the key's latest wins, but the topic and a broker that never compacts keep
    them all); a new error is audited whatever its attempt."""
    return attempts <= 3 or attempts & (attempts - 1) == 0


def outcome_line(
    incident: Incident,
    alert: Alert,
    dry_run: bool,
    failing: str | None = None,
    keys: list[str] | None = None,
) -> str:
    """The "what was done" line of the Slack message, from the incident's state;
    ``failing``: why its pauses are not getting through (``Outbox.pause_failing``).
    ``keys``: a message about one record tells only these keys' outcome (``Task.keys``):
    a threshold's reply, posted after the incident's hard stop, said "Paused 1 key(s)"."""

    def own(listed: list[str]) -> list[str]:
        return listed if keys is None else [k for k in listed if k in keys]

    paused, resumed, failed = own(incident.paused), own(incident.resumed), own(incident.failed)
    refused, late = own(incident.refused), own(incident.late)
    parts = []
    verb = "Would pause" if dry_run else "Paused"
    # Each list is cut to its first keys and a count: a hard stop's 1,000 keys made a line
    # Slack cut mid-name at its block limit, and the parts after it were lost.
    if paused:
        parts.append(f"{verb} {len(paused)} key(s): " + _listed(paused))
    # A resumed key is settled too: listed as pending, "Pausing KEY …; Resumed KEY" read
    # as a pause underway after the on-call had resumed it.
    settled = {*incident.paused, *incident.failed, *incident.resumed}
    pending = [t for t in alert.targets if t not in settled]
    if alert.action == "pause" and pending:
        parts.append("Pausing " + _listed(pending) + " …")
        if failing:
            parts[-1] += (
                f" (the gateway is failing: {failing}; retried until it answers, "
                "pause by hand if it must stop now)"
            )
    if resumed:
        parts.append("Resumed " + _listed(resumed))
    if failed:
        parts.append("Gateway call FAILED for " + _listed(failed))
    if refused:
        parts.append(
            "Pause REFUSED for " + _listed(refused) + ": the keys config does not allow pausing it"
        )
    if late and alert.kind == "budget":
        # With auto_resume: false a stage that kept up would have left them paused until
        # resumed by hand: the operator must know they were not, to pause them if need be.
        parts.append(
            "NOT paused: " + _listed(late) + ": the budget's period had ended when "
            "this hard stop was read (SpendBrake catching up on history), so they were "
            "left running; a budget with auto_resume: false would have kept them paused, "
            "pause them by hand if they must stay stopped"
        )
    elif late:
        parts.append(
            "NOT paused: " + _listed(late) + ": this alert was read long after it was "
            "detected (SpendBrake catching up on history: gateway.pause_max_age_s); pause by "
            "hand if it still runs"
        )
    held = [k for k in alert.held_keys if k not in incident.paused]
    if held:
        until = min(alert.held_keys[k] for k in held)
        parts.append(
            f"Pause held: {_listed(held)} paused if still anomalous at "
            f"{until[11:16]} UTC (policy confirm_s)"
        )
    critical = alert.critical_keys
    protected = alert.protected_keys
    others = [k for k in protected if k not in critical]
    if parts and critical:
        parts.append("critical, alerted only: " + _listed(critical))
    if parts and others:
        parts.append("not pausable by the keys config, alerted only: " + _listed(others))
    if not parts:
        if alert.kind in ("budget", "projection", "burn_rate") and alert.action == "alert":
            # A threshold or burn-rate alert: no pause was asked for, whatever the keys are
            # ("the keys config does not allow pausing X" read as a stop refused).
            parts.append("Alert only: a budget pauses keys at its hard stop, not before")
        elif critical:
            parts.append(f"Alert only: critical keys are never paused ({_listed(critical)})")
            if others:
                parts.append("not pausable by the keys config: " + _listed(others))
        elif others:
            parts.append("Alert only: the keys config does not allow pausing " + _listed(others))
        elif alert.kind in NOTICES:
            parts.append("Nothing to pause: a notice about SpendBrake's own config")
        elif alert.kind == HISTORY_KIND:
            parts.append("Nothing done now: each alert above was read as history")
        elif on_a_sum(alert):
            parts.append("Alert only: a sum over keys pauses none; a looping key's own alert does")
        elif alert.kind == "budget" and (unknown := set(alert.scope) - set(KEY_DIMENSIONS)):
            parts.append(f"Alert only: keys are not known by {', '.join(sorted(unknown))}")
        else:
            parts.append("Alert only: no pause policy matches this scope")
    return "; ".join(parts)


def _listed(keys: list[str], most: int = 10) -> str:
    shown = ", ".join(map(_short, keys[:most]))
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


@dataclass(slots=True)
class ResumeAnswer:
    """What a resume request did with each key it named (``Outbox.command``)."""

    #: Unblocks queued now.
    queued: list[str] = field(default_factory=list)
    #: An unblock of the key was already queued (a double click): nothing more.
    underway: list[str] = field(default_factory=list)
    #: Already resumed for this incident.
    done: list[str] = field(default_factory=list)
    #: Not paused by SpendBrake for this incident (or an incident it does not know).
    refused: list[str] = field(default_factory=list)


def _asked_for(alert: Alert) -> bool:
    """A budget threshold the operator listed in ``alert_at`` (50 % is ``info``): posted,
    where a trend of ``info`` severity is the digest's alone. With the digest off (the
    example config) the 50 % alert was told nowhere."""
    return alert.kind == "budget" and alert.action == "alert" and alert.threshold is not None


@dataclass(slots=True)
class Outbox:
    """Accepted alerts, open incidents, and the two ordered task lanes."""

    slack_enabled: bool = True
    dry_run: bool = False
    cooldown_s: float = 3600.0
    #: An anomaly's pause read longer than this after its ``detected_at`` is not performed
    #: (``GatewayConfig.pause_max_age_s``; None: always).
    pause_max_age_s: float | None = None
    #: A message about an alert caught longer than ``history_after_s`` before it is read:
    #: posted, marked as history ("post"), or held for one summary ("summary"); None: never
    #: history (``SlackConfig.history`` and ``history_after_s``).
    history: Literal["post", "summary"] = "post"
    history_after_s: float | None = None
    #: Alerts held for the next history summary.
    held: HeldHistory | None = None
    #: Next alerts offset to read, per partition (saved with everything else).
    offsets: dict[int, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    #: scope -> (incident id, time its message was posted): later incidents on the same
    #: scope inside the cooldown go into that thread instead of a new message.
    threads: dict[str, tuple[str, float]] = field(default_factory=dict)
    snoozed: dict[str, float] = field(default_factory=dict)
    #: Alert messages held back in each snoozed scope so far: told when it is lifted early.
    snooze_held: dict[str, int] = field(default_factory=dict)
    lanes: dict[str, deque[Task]] = field(
        default_factory=lambda: {"slack": deque(), "gateway": deque()}
    )
    #: Audit records not yet acknowledged by the broker, by key.
    audit: dict[str, ActionRecord] = field(default_factory=dict)
    #: Slack channel ids learned from Slack's answers, by the configured name: a post
    #: that may have gone out is looked for by id (history calls take no names).
    channel_ids: dict[str, str] = field(default_factory=dict)
    #: Next offset to read per partition of the actions topic, where ``spendbrake resume``
    #: audits what it unblocked (the incident's thread is told).
    actions_offsets: dict[int, int] = field(default_factory=dict)
    #: Keys this outbox paused (or whose pause may have landed) and has not resumed since,
    #: with the incident that paused them: all that a resume record may unblock. Kept until
    #: resumed, however long (a month's budget stop), unlike incidents.
    blocked: dict[str, str] = field(default_factory=dict)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        _restore(self, state, _blocked_from_incidents)
        # Pickled when audit records were dicts (of these fields, times epoch seconds).
        self.audit = {
            key: msgspec.convert(record, ActionRecord) if isinstance(record, dict) else record
            for key, record in self.audit.items()
        }

    # -- planning --------------------------------------------------------------

    def accept(self, alert: Alert, now: float, keys: KeysConfig) -> bool:
        """Plan the effects of one alert record; False when it was seen before.

        Pause targets ``keys`` (the stage's own config) does not allow are refused here:
        audited, listed for Slack, and dropped from the alert the tasks carry (so no
        "Resume" button or undo line names them).

        A continuation record (``part`` > 0: more targets of an alert whose part 0 came
        first, ``schemas.alert_records``) adds its targets' gateway calls to the alert's
        and nothing else: the alert's message and history are part 0's.
        """
        if alert.record_key() in self.seen:
            return False
        self.seen[alert.record_key()] = now
        key = alert.ref()
        continued = alert.part > 0
        given = len(alert.targets)  # before any is refused: part 0 counted them so
        asked_pause = alert.action == "pause"
        acting = asked_pause or alert.action == "resume"
        refused: list[tuple[str, str]] = []
        late: list[str] = []
        history_only: list[str] = []  # a resume's keys its stop never paused (history)
        if asked_pause:
            allowed, denied = screen_pauses(alert.targets, keys)
            refused = [(target, refusal(cls)) for target, cls in denied]
            if self.history_skip(alert, now) is not None:
                late, allowed = allowed, []
            if denied or late:
                alert = msgspec.structs.replace(
                    alert,
                    targets=allowed,
                    action="pause" if allowed else "alert",
                    # A stop that pauses nothing here must not say it pauses: the
                    # outcome line says what happened to its keys instead.
                    reason=alert.reason if allowed else alert.reason.replace(STOP_PAUSING, ""),
                )
        incident = self.incidents.get(alert.id)
        follow_up = incident is not None
        if incident is None:
            incident = self.incidents[alert.id] = Incident(
                alert.id,
                scope_key(alert.scope),
                alert,
                opened_at=now,
                # An operator alert has no detection time: None, as it was kept before.
                detected_at=alert.detected_at or None,
            )
        if not continued:
            # An older record re-sent after a newer one (its first send failed, the detect
            # stage sends it again at its checkpoint) adds to the history, its targets are
            # still acted on, but the incident's latest state stays the newer one.
            if alert.seq >= incident.alert.seq or not follow_up:
                incident.alert = alert
            incident.history.append(f"#{alert.seq} {alert.severity}: {alert.reason}"[:300])
        op: Op = "block" if alert.action == "pause" else "unblock"
        calls = []
        if alert.action in ("pause", "resume"):
            done = set(incident.paused if op == "block" else incident.resumed)
            # A follow-up that arrives while the first pause is still queued (an
            # escalation minutes later, the gateway slow) must not queue it again.
            queued = {
                t.target for t in self.lanes["gateway"] if t.incident == incident.id and t.op == op
            }
            calls = [t for t in alert.targets if t not in done and t not in queued]
        if op == "block":
            # A record can only add protection: one naming a key critical never pauses it.
            critical = set(alert.critical_keys)
            calls = [t for t in calls if t not in critical]
        else:
            # A record can only undo SpendBrake's own pauses: a resume naming any other key
            # (a forgery, a key an operator blocked by hand) is refused.
            ours = self.blocked.keys() | self._queued_blocks()
            if alert.kind == "budget":
                # The resume after a stop read as history: it paused nothing to undo.
                never = self._history_stops(alert.budget)
                for target in [t for t in calls if t not in ours and t in never]:
                    self.record(
                        Task(
                            f"{key}/unblock/{target}", "gateway", "unblock", alert.id, alert, target
                        ),
                        "skipped",
                        "its hard stop was read after its period ended: never paused",
                        now,
                    )
                    history_only.append(target)
                calls = [t for t in calls if t in ours or t not in never]
            for target in [t for t in calls if t not in ours]:
                self.record(
                    Task(f"{key}/unblock/{target}", "gateway", "unblock", alert.id, alert, target),
                    "refused",
                    "not paused by SpendBrake",
                    now,
                )
            calls = [t for t in calls if t in ours]
            if alert.kind == "budget":
                # A budget's period ended: it lets go of its own pauses, not of a key another
                # incident paused too (a loop its anomaly caught: that incident counts it
                # paused and would not pause it again). Its operator's click resumes it.
                held = self._held_elsewhere(alert.budget)
                for target in [t for t in calls if t in held]:
                    self.record(
                        Task(
                            f"{key}/unblock/{target}", "gateway", "unblock", alert.id, alert, target
                        ),
                        "skipped",
                        f"still paused for {held[target]}",
                        now,
                    )
                calls = [t for t in calls if t not in held]
        # Pauses not sent: refused by the keys config, or skipped as history read late.
        not_sent = [(t, "refused", why, incident.refused) for t, why in refused]
        not_sent += [(t, "skipped", self._late_why(alert, now), incident.late) for t in late]
        for target, result, why, listed in not_sent:
            self.record(
                Task(f"{key}/block/{target}", "gateway", "block", alert.id, alert, target),
                result,
                why,
                now,
            )
            if target not in listed:
                listed.append(target)
        for target in calls:
            if op == "block" and target in incident.resumed:
                # A follow-up pauses a key resumed earlier in the incident: its state is
                # "Pausing" again, not "Resumed" while the block is underway.
                incident.resumed.remove(target)
            self._add(Task(f"{key}/{op}/{target}", "gateway", op, alert.id, alert, target))
        if acting:
            op_asked: Op = "block" if asked_pause else "unblock"
            self._count_calls(incident, alert, key, op_asked, len(calls), given)
        if history_only and not calls and len(history_only) == len(alert.targets):
            # "Resuming what the hard stop paused" of a stop that paused nothing: one such
            # message a period of history read at a new deployment, each saying nothing.
            task = Task(f"{key}/post", "slack", "post", incident.id, alert)
            self.record(task, "skipped", "nothing to resume: its hard stop was history", now)
        elif self.slack_enabled and not continued:
            # A refused pause is news for the operators even in a snoozed scope.
            mine = [*alert.targets, *(t for t, _ in refused), *late]
            self._plan_message(
                incident, alert, key, follow_up, now, mine, loud=asked_pause, acting=bool(calls)
            )
        return True

    def history_skip(self, alert: Alert, now: float) -> str | None:
        """Why the pauses ``alert`` asks for, read at ``now``, are skipped as history, in a
        few words for a log line ("3 d old", "its period had ended"); None: they are not
        (or it asks for none). ``accept`` skips them by this same judgement."""
        if alert.action != "pause":
            return None
        if self._period_over(alert, now):
            return "its period had ended"
        if self._read_late(alert, now):
            return f"{age_label(now - parse_ts(alert.detected_at))} old"
        return None

    @staticmethod
    def _late_why(alert: Alert, now: float) -> str:
        if alert.kind == "budget":
            return "its period had ended when it was read: history, not paused"
        age = now - parse_ts(alert.detected_at)
        return (
            f"read {age / 3600:.1f} h after it was detected (gateway.pause_max_age_s): "
            "history, not paused"
        )

    def _read_late(self, alert: Alert, now: float) -> bool:
        """A pause on runaway evidence (an anomaly, a budget's burn rate) read more than
        ``pause_max_age_s`` after it was detected. A hard stop is judged by its period
        (``_period_over``)."""
        return (
            self.pause_max_age_s is not None
            and alert.kind in PAUSE_KINDS
            and bool(alert.detected_at)
            and now - parse_ts(alert.detected_at) > self.pause_max_age_s
        )

    def _period_over(self, alert: Alert, now: float) -> bool:
        """A budget's hard stop read after its period ended (history: a new deployment
        reading the topic's retention, a stage back from an outage). Performed, it paused
        the keys now and its resume, read next, unpaused them a moment later. Without a
        ``pause_max_age_s`` (the demo, which plays a past afternoon) it is performed."""
        if self.pause_max_age_s is None or alert.kind != "budget" or not alert.window_end:
            return False
        try:
            return parse_ts(alert.window_end) <= now
        except InvalidEvent:  # a record only as trusted as its writer: acted on as before
            return False

    def _history_stops(self, budget: str | None) -> set[str]:
        """Keys that stops of ``budget`` read as history did not pause (``Incident.late``)."""
        return {
            target
            for incident in self.incidents.values()
            # Of the budget whatever its latest record (a burn-rate alert after the stop).
            if budget is not None and incident.alert.budget == budget
            for target in incident.late
        }

    def _count_calls(
        self, incident: Incident, alert: Alert, key: str, op: Op, calls: int, given: int
    ) -> None:
        """One count for an alert and its continuations: the thread hears when all of them
        are settled. Part 0 counts its continuations' targets too (``more_targets``), since
        its own calls may be settled before they are read; each continuation then lets go
        of those of its ``given`` targets it does not call (done, queued, critical,
        refused)."""
        count = incident.open_calls.get(key, 0)
        if alert.part == 0:
            count += calls + alert.more_targets
        else:
            count -= given - calls
        if count > 0:
            incident.open_calls[key] = count
        elif incident.open_calls.pop(key, None) is not None:
            # The last continuation called none: every call of the alert is settled.
            self._settled(incident, key, op, alert, "policy")

    def _plan_message(
        self,
        incident: Incident,
        alert: Alert,
        key: str,
        follow_up: bool,
        now: float,
        keys: list[str],
        loud: bool = False,
        acting: bool = False,
    ) -> None:
        """Plan the record's message: a post, or a reply and a parent update. ``keys``: those
        the record names, whose outcome its message tells (``Task.keys``)."""
        if alert.severity == "info" and not _asked_for(alert):
            # A trend (a creep, a launch's step) is for the digest, not a page: audited here,
            # listed by the digest from the store, never posted to the channel.
            task = Task(f"{key}/post", "slack", "post", incident.id, alert)
            self.record(task, "skipped", DIGEST_ONLY, now)
            return
        past = self.past_history(alert, now) if self.history == "summary" and not acting else None
        if past is not None and past > 0.0:
            still_true = alert.kind == "budget" and self._period_running(alert, now)
            if not still_true and not (follow_up and self._told(incident)):
                self._hold(incident, alert, key, follow_up, now)
                return
        elif past is not None:
            # Live again: what was held is told now (after this, if this is more urgent).
            self.flush_history(now, force=True)
        if self.snoozed.get(incident.scope, 0.0) > now and not loud:
            self.snooze_held[incident.scope] = self.snooze_held.get(incident.scope, 0) + 1
            self.record(
                Task(f"{key}/post", "slack", "post", incident.id, alert),
                "skipped",
                "scope snoozed",
                now,
            )
            return
        history = self._is_history(alert, now)
        if follow_up and self._told(incident):
            if not incident.historic or history:
                self._add(Task(f"{key}/reply", "slack", "reply", incident.id, alert, keys=keys))
                self._add(Task(f"{key}/update", "slack", "update", incident.id, alert))
                return
            # A new deployment read a month's budget: its 50 % and 80 % weeks old, its
            # hard stop today. Under a "[history, 14 d old]" parent the stop was a thread
            # reply no one is notified of: it is posted as the incident's new parent.
            incident.historic = False
            incident.thread = None
            self.threads[incident.scope] = (incident.id, now)
            self._add(Task(f"{key}/post", "slack", "post", incident.id, alert, keys=keys))
            return
        # A first message, or the first told of an incident whose earlier records were not
        # (skipped as digest items, snoozed): it is the parent its later ones thread under.
        # As a reply to no message, each became a message of its own, and every update of
        # the parent (a failing gateway's "pause by hand") went nowhere.
        previous = self.threads.get(incident.scope)
        if (
            previous is not None
            and now - previous[1] < self.cooldown_s
            and previous[0] in self.incidents
            and (history or not self.incidents[previous[0]].historic)
        ):
            # Same scope, inside the cooldown: one thread, not a second page (but a live
            # incident is not hidden under a message about history).
            incident.thread = previous[0]
            self._add(Task(f"{key}/reply", "slack", "reply", incident.id, alert, keys=keys))
            return
        self.threads[incident.scope] = (incident.id, now)
        incident.historic = history
        self._add(Task(f"{key}/post", "slack", "post", incident.id, alert, keys=keys))

    def _is_history(self, alert: Alert, now: float) -> bool:
        """Whether a message about ``alert`` read at ``now`` is marked as history."""
        past = self.past_history(alert, now)
        return past is not None and past > 0.0

    def past_history(self, alert: Alert, now: float) -> float | None:
        """Seconds the alert was read past ``history_after_s`` after it was caught (over 0:
        history); None when history is not judged (or an operator alert, never caught)."""
        if self.history_after_s is None or not alert.detected_at:
            return None
        try:
            return now - parse_ts(alert.detected_at) - self.history_after_s
        except InvalidEvent:  # a record only as trusted as its writer: posted as before
            return None

    @staticmethod
    def _period_running(alert: Alert, now: float) -> bool:
        """A budget threshold of a period still running: crossed then, crossed now."""
        try:
            return parse_ts(alert.window_end) > now
        except InvalidEvent:
            return True

    def _told(self, incident: Incident) -> bool:
        """A message of the incident is posted or on its way: its follow-ups go there (a
        first record held, or skipped, leaves none: they are held with it)."""
        if incident.ts is not None or incident.thread is not None:
            return True
        return any(t.incident == incident.id for t in self.lanes["slack"])

    def _hold(
        self, incident: Incident, alert: Alert, key: str, follow_up: bool, now: float
    ) -> None:
        """Count the alert into the next history summary instead of posting it; audited."""
        held = self.held = self.held or HeldHistory(first_read=now, last_read=now)
        held.add(alert, follow_up, incident.late, incident.refused, now)
        task = Task(f"{key}/post", "slack", "post", incident.id, alert)
        self.record(task, "skipped", HISTORY_HELD, now)

    def flush_history(self, now: float, force: bool = False) -> bool:
        """Plan the summary of the alerts held as history, once none has been read for
        ``HISTORY_QUIET_S`` or the first was held ``HISTORY_MOST_S`` ago (``force``: now);
        True when one was planned. Called as the stage reads, and when it has nothing to."""
        held = self.held
        if held is None or not (
            force
            or now - held.last_read >= HISTORY_QUIET_S
            or now - held.first_read >= HISTORY_MOST_S
        ):
            return False
        self.held = None
        alert = held.alert()
        incident = Incident(alert.id, scope_key({}), alert, opened_at=now)
        self.incidents[alert.id] = incident
        self._add(Task(f"{alert.ref()}/post", "slack", "post", incident.id, alert))
        return True

    def resumable(self, incident_id: str) -> set[str]:
        """Keys this outbox paused, or set out to pause, for the incident and has not resumed
        since: all that a resume button of it may unblock (a blocked key it never touched is
        not its own). An incident forgotten after ``REMEMBER_S`` still owns the pauses
        ``blocked`` keeps for it (a month's budget stop: its message's button still works)."""
        own = {key for key, by in self.blocked.items() if by == incident_id}
        incident = self.incidents.get(incident_id)
        if incident is None:
            return own
        queued = {
            t.target
            for t in self.lanes["gateway"]
            if t.incident == incident_id and t.op == "block" and t.target is not None
        }
        # A block that failed for good may still have landed (a timeout): ours to undo too.
        return own | set(incident.paused) | set(incident.failed) | queued

    def command(
        self, op: Op, targets: list[str], incident_id: str, source: str, now: float
    ) -> ResumeAnswer:
        """An operator's resume (a Slack button) for an incident's keys. Only keys this
        outbox paused for the incident are queued, each once: a key whose unblock is already
        queued (a double click, two on-calls at once) or done is audited as skipped, another
        key named by the click is refused; each audited with the clicker as source."""
        incident = self.incidents.get(incident_id)
        alert = incident.alert if incident else _stand_in(incident_id)
        stamp = f"{incident_id}#{source}@{now:.3f}"
        own = self.resumable(incident_id)
        why = (
            "not paused by SpendBrake for this incident"
            if incident is not None
            else "unknown incident (forgotten, or never seen by this stage)"
        )
        answer = ResumeAnswer()
        for target in targets:
            task = Task(
                f"{stamp}/{op}/{target}", "gateway", op, incident_id, alert, target, source=source
            )
            if target in own and self._unblocking(target):
                answer.underway.append(target)
                self.record(task, "skipped", "already being resumed (an earlier request)", now)
            elif target in own:
                self._add(task)
                answer.queued.append(target)
            elif incident is not None and target in incident.resumed:
                answer.done.append(target)
                self.record(task, "skipped", "already resumed", now)
            else:
                answer.refused.append(target)
                self.record(task, "refused", why, now)
        if incident is not None and answer.queued:
            incident.open_calls[stamp] = len(answer.queued)
        return answer

    def _unblocking(self, target: str) -> bool:
        """The last call queued for ``target`` is an unblock: another would repeat it."""
        last = None
        for task in self.lanes["gateway"]:
            if task.target == target and not task.cancelled:
                last = task.op
        return last == "unblock"

    def _held_elsewhere(self, budget: str | None) -> dict[str, str]:
        """Keys an incident this outbox knows paused and has not resumed, with it: one of
        an anomaly or of another budget, not of ``budget`` (whose earlier periods' stops
        its resume lets go of). A budget's incident is told by its records' ``budget``, not
        by the kind of its latest one: a burn-rate alert after the stop made the budget's own
        stop "another incident", and its resume left every key paused."""
        return {
            target: other.id
            for other in self.incidents.values()
            if other.alert.budget is None or other.alert.budget != budget
            for target in other.paused
            if target not in other.resumed
        }

    def _queued_blocks(self) -> set[str]:
        return {
            t.target
            for t in self.lanes["gateway"]
            if t.op == "block" and t.target is not None and not t.cancelled
        }

    def _cancel_blocks(self, target: str) -> None:
        """A resume of ``target`` done outside the lane overtakes its pauses still queued
        (see ``Task.cancelled``); one planned here needs none: the lane keeps their order."""
        for task in self.lanes["gateway"]:
            if task.op == "block" and task.target == target:
                task.cancelled = True

    def snooze(self, scope: dict[str, Any], until: float) -> None:
        key = scope_key(scope)
        self.snoozed[key] = until
        self.snooze_held.setdefault(key, 0)

    def unsnooze(self, scope: dict[str, Any], now: float) -> int | None:
        """Lift a scope's snooze early; the alert messages it held back, or None when the
        scope was not snoozed (never, ended, or already lifted)."""
        key = scope_key(scope)
        until = self.snoozed.pop(key, None)
        held = self.snooze_held.pop(key, 0)
        return held if until is not None and until > now else None

    def _add(self, task: Task) -> None:
        self.order_key(task)
        self.lanes[task.lane].append(task)

    # -- performing ------------------------------------------------------------

    def head(self, lane: Lane) -> Task | None:
        queue = self.lanes[lane]
        return queue[0] if queue else None

    def thread_of(self, task: Task) -> Incident | None:
        """The incident whose Slack message holds this task's thread."""
        incident = self.incidents.get(task.incident)
        while incident is not None and incident.thread is not None:
            incident = self.incidents.get(incident.thread)
        return incident

    def order_key(self, task: Task) -> str:
        """The queue a task keeps its order in: a Slack message's thread (the incident
        whose message holds it); the gateway lane is one queue."""
        if task.queue is None:  # planned by an older release
            if task.lane == "gateway":
                task.queue = "gateway"
            else:
                root = self.thread_of(task)
                task.queue = f"thread:{root.id if root is not None else task.incident}"
        return task.queue

    def _heads(self, lane: Lane) -> dict[str, tuple[Task, int]]:
        """Each queue's first task and the queue's urgency, queues in lane order."""
        heads: dict[str, tuple[Task, int]] = {}
        for task in self.lanes[lane]:
            key = self.order_key(task)
            urgency = _URGENCY.get(task.alert.severity, 0)
            head = heads.get(key)
            if head is None:
                heads[key] = (task, urgency)
            elif urgency > head[1]:
                heads[key] = (head[0], urgency)
        return heads

    def ready(self, lane: Lane, now: float, busy: Collection[str] = ()) -> Task | None:
        """The task to attempt next in ``lane``: among the queue heads that are due and not
        ``busy`` (order keys with an attempt in flight), the most urgent queue's, then the
        oldest. None: nothing is due."""
        best: tuple[int, int] | None = None
        chosen = None
        for position, (key, (task, urgency)) in enumerate(self._heads(lane).items()):
            if key in busy or task.next_at > now:
                continue
            rank = (-urgency, position)
            if best is None or rank < best:
                best, chosen = rank, task
        return chosen

    def next_due(self, lane: Lane, busy: Collection[str] = ()) -> float | None:
        """When the next queue head of ``lane`` falls due (None: nothing waits)."""
        due = [task.next_at for key, (task, _) in self._heads(lane).items() if key not in busy]
        return min(due) if due else None

    def unblock_waiting(self, lane: Lane, now: float) -> int:
        """Tasks waiting on a config problem are due now (the config was reloaded)."""
        woken = 0
        for task in self.lanes[lane]:
            if task.blocked_on is not None:
                task.next_at = min(task.next_at, now)
                woken += 1
        return woken

    def finish(
        self,
        task: Task,
        result: Result,
        detail: str,
        now: float,
        ts: str | None = None,
        channel: str | None = None,
    ) -> None:
        """A task is over (ok, failed for good, dry run, skipped); it leaves its lane."""
        queue = self.lanes[task.lane]
        for index, queued in enumerate(queue):
            if queued is task:
                del queue[index]
                break
        incident = self.incidents.get(task.incident)
        if incident is not None:
            if task.op == "post" and ts is not None:
                incident.ts = ts
                incident.channel = channel or incident.channel
            if task.lane == "gateway":
                self._gateway_done(incident, task, result, now)
        elif task.op == "unblock" and result in ("ok", "dry_run") and task.target is not None:
            # A resume of a forgotten incident's pause (``resumable``): no longer ours.
            self.blocked.pop(task.target, None)
        self.record(task, result, detail, now)

    def _gateway_done(self, incident: Incident, task: Task, result: Result, now: float) -> None:
        assert task.target is not None
        done = result in ("ok", "dry_run")
        if task.op == "block":
            if result == "refused":
                settled = incident.refused
                if task.unsure:
                    # Refused at a later attempt (a reload made the key critical while the
                    # gateway timed out): an earlier one may have landed. Undone, not left:
                    # seen, a critical key blocked with its pause audited "refused".
                    self.blocked[task.target] = incident.id
                    self._undo(task, now, "refused after an attempt that may have landed")
            elif result == "skipped":
                settled = incident.resumed  # resumed before it went out again
                if task.unsure:
                    # An earlier call went out and timed out: it may land after the resume
                    # (seen: a block held 3 s at the gateway, the resume's unblock first).
                    self.blocked[task.target] = incident.id
                    self._undo(task, now)
            else:
                settled = incident.paused if done else incident.failed
                if done and task.target in incident.resumed:
                    # Paused again after a resume, queued by a release that kept it listed
                    # as resumed (``accept`` now unlists it): its latest state is paused.
                    incident.resumed.remove(task.target)
                # Failed for good may still have landed (a timeout): ours to undo too.
                self.blocked[task.target] = incident.id
                if task.cancelled:
                    self._undo(task, now)
            if task.target not in settled:
                settled.append(task.target)
        elif done:
            if task.target not in incident.resumed:  # two resumes of one key: listed once
                incident.resumed.append(task.target)
            for settled in (incident.paused, incident.failed):
                if task.target in settled:
                    settled.remove(task.target)
            self.blocked.pop(task.target, None)
            self._tell_resumed(task.target, task.id, task.source, but=incident.id)
        else:
            incident.failed.append(task.target)
        group = task.id.rsplit("/", 2)[0]
        left = incident.open_calls.get(group, 1) - 1
        if left > 0:
            incident.open_calls[group] = left
            return
        incident.open_calls.pop(group, None)
        self._settled(incident, group, task.op, task.alert, task.source)

    def _settled(self, incident: Incident, group: str, op: Op, alert: Alert, source: str) -> None:
        """Every call of ``group`` (an alert's ref, or an operator's command) is settled:
        say so in the thread, refresh the parent.

        Not in the thread when the alert's own message has not been tried yet: rendered
        when it is sent, it says what was done itself, and a reply would repeat it word
        for word (seen when a backlog's pauses landed before the Slack lane reached it).
        """
        if self.slack_enabled:
            unsent = {f"{group}/post", f"{group}/reply"}
            told = any(t.id in unsent and not t.attempts for t in self.lanes["slack"])
            for kind in ("update",) if told else ("reply", "update"):
                self._add(
                    Task(
                        f"{group}/{op}-done/{kind}",
                        "slack",
                        kind,
                        incident.id,
                        alert,
                        source=source,
                    )
                )

    def _undo(
        self, task: Task, now: float, why: str = "resumed while the pause was in flight"
    ) -> None:
        """A pause that may have landed but must not stand (its key was resumed while it was
        in flight, or a later attempt was refused): resume it again."""
        assert task.target is not None
        self._add(
            Task(
                f"{task.id}/undo",
                "gateway",
                "unblock",
                task.incident,
                task.alert,
                task.target,
                source=why,
            )
        )

    def retry(
        self, task: Task, detail: str, delay_s: float, now: float, blocked_on: str | None = None
    ) -> None:
        changed = detail != task.last_error
        task.last_error = detail
        # Bounded: a Retry-After of 400 digits reads as infinity, which a JSON outbox file
        # cannot hold; past a day, the lane is tried again a day later.
        task.next_at = now + min(delay_s, MAX_DELAY_S)
        task.blocked_on = blocked_on
        if changed or retry_worth_telling(task.attempts):
            self.record(task, "retrying", detail, now)
        if task.lane == "gateway" and task.attempts == FAILING_AFTER and self.slack_enabled:
            # The gateway lane is stuck: every incident with a pause waiting in it says so
            # in its parent (an update, no new message), once per stuck call.
            waiting = {t.incident for t in self.lanes["gateway"] if t.op == "block"}
            for incident in sorted(waiting & self.incidents.keys()):
                alert = self.incidents[incident].alert
                self._add(Task(f"{task.id}/failing/{incident}", "slack", "update", incident, alert))

    def pause_failing(self, incident_id: str) -> str | None:
        """Why the incident's pauses waiting in the gateway lane are not getting through:
        the lane's first call has failed ``FAILING_AFTER`` times or more (None: they are
        not waiting, or the lane is moving)."""
        head = self.head("gateway")
        if head is None or head.attempts < FAILING_AFTER or not head.last_error:
            return None
        waiting = any(t.incident == incident_id and t.op == "block" for t in self.lanes["gateway"])
        return head.last_error if waiting else None

    def resumed_elsewhere(self, key: str, target: str, source: str, now: float) -> int:
        """An operator unblocked ``target`` outside the stage (``spendbrake resume``): every
        incident that paused it says so in its thread and its parent, as after a "Resume
        key" click. ``key`` (the resume's audit id) makes a re-read record a no-op."""
        if key in self.seen:
            return 0
        self.seen[key] = now
        self.blocked.pop(target, None)
        self._cancel_blocks(target)
        return self._tell_resumed(target, key, source)

    def _tell_resumed(self, target: str, key: str, source: str, but: str | None = None) -> int:
        """Every incident (but ``but``) that lists ``target`` paused now lists it resumed, and
        says so in its thread and parent; how many. ``key`` makes the tasks' ids.

        A resume in one incident (the next period's, a stop a reload lifted, an operator's)
        left the others listing the key paused: their messages said "Paused" for ever, and
        a stop of the same period firing again skipped the key as paused already."""
        told = 0
        for incident in list(self.incidents.values()):
            if incident.id == but or target not in incident.paused:
                continue
            incident.paused.remove(target)
            if target not in incident.resumed:
                incident.resumed.append(target)
            told += 1
            if self.slack_enabled:
                for op in ("reply", "update"):
                    self._add(
                        Task(
                            f"{key}/{incident.id}/{op}",
                            "slack",
                            op,  # type: ignore[arg-type]
                            incident.id,
                            incident.alert,
                            target,
                            source=source,
                        )
                    )
        return told

    def record(self, task: Task, result: Result, detail: str, now: float) -> None:
        """The audit record of a task's latest state (same key: the latest wins)."""
        self.note(
            task.id,
            task.op,
            result,
            detail,
            now,
            alert=task.alert,
            incident=task.incident,
            target=task.target,
            source=task.source,
            attempts=task.attempts,
            requested_at=task.first_attempt_at,
            lane=task.lane,
        )

    def note(
        self,
        key: str,
        action: str,
        result: str,
        detail: str,
        now: float,
        *,
        alert: Alert | None = None,
        incident: str | None = None,
        target: str | None = None,
        source: str = "policy",
        attempts: int = 0,
        requested_at: float | None = None,
        lane: str | None = None,
    ) -> None:
        """Queue one audit record for the actions topic: what, why (the alert), target,
        when, result, attempts."""
        # An unknown incident's stand-in (``_stand_in``) has no kind and no reason.
        known = alert is not None and alert.kind != ""
        self.audit[key] = ActionRecord(
            id=key,
            action=action,
            lane=lane,
            alert=None if alert is None else alert.ref(),
            incident=incident,
            kind=alert.kind if known else None,
            scope=None if alert is None else alert.scope,
            target=target,
            reason=alert.reason if known else None,
            source=source,
            result=result,
            detail=detail,
            attempts=attempts,
            requested_at=requested_at,
            at=now,
        )

    def prune(self, now: float) -> None:
        """Forget what is older than REMEMBER_S (a re-delivered month-old alert is noise)."""
        for key, at in list(self.seen.items()):
            if now - at > REMEMBER_S:
                del self.seen[key]
        open_incidents = {t.incident for lane in self.lanes.values() for t in lane}
        for incident_id, incident in list(self.incidents.items()):
            if now - incident.opened_at > REMEMBER_S and incident_id not in open_incidents:
                del self.incidents[incident_id]
        for scope, until in list(self.snoozed.items()):
            if until < now:
                del self.snoozed[scope]
                self.snooze_held.pop(scope, None)
