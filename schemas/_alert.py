"""The alert record: what the detectors build, the policy step completes, the detector
stage writes to ``spend.alerts``, replay prints and the action stage reads.

One JSON object per alert. ``id`` names the incident and stays the same for its
follow-ups (``seq`` 1, 2 ...), so (id, seq) is the record's key: a stage that
re-emits after a restart overwrites, and the action stage acts once per key.

An alert with more than ``MAX_TARGETS`` targets (a budget's hard stop on every key of a
team) goes out as several records (``alert_records``): the alert with the first
``MAX_TARGETS`` and ``more_targets`` saying how many follow, then continuations (``part``
1, 2 ..., key ``id#seq/part``) of ``MAX_TARGETS`` more each, which only the action stage
reads: every target is paused, and no record passes Kafka's default 1 MB limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import orjson

__all__ = [
    "ALERT_KINDS",
    "MAX_TARGETS",
    "STOP_PAUSING",
    "Alert",
    "KeyInfo",
    "alert_records",
    "decode_alert",
    "encode_alert",
    "more_severe",
]

ALERT_KINDS = ("anomaly", "wow", "budget", "projection", "burn_rate", "cost_per_call")
Severity = Literal["info", "warning", "critical"]
Action = Literal["alert", "pause", "resume"]
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
#: Targets one alert record names; the rest go in continuation records (``alert_records``).
#: A budget's hard stop on 16,000 keys once made a 1.07 MB record, over Kafka's default
#: 1 MB limit: the detect stage retried it forever and sent no other alert. 1,000 keys of
#: the longest an event may carry (512 characters) are about 0.5 MB.
MAX_TARGETS = 1000
#: What a budget's hard stop says it does, in its reason. Whoever finds it will not pause
#: (the detect stage: no key it may pause; the act stage: none its keys config allows, or
#: the stop read as history) swaps it for what happens instead: a "Why:" line claiming a
#: pause above a "Done:" line saying none was done reads as spend stopped.
STOP_PAUSING = ", pausing non-critical keys in scope"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the engine knows about one api key, from the first spend it saw of it.

    Attribution, not authority: ``team``, ``feature``, ``environment`` and ``workload`` are
    what the events said. Whether the key may be paused, and the ``workload`` policies
    match on, come from the config's ``keys`` section (``actions.apply_policies``).
    """

    api_key: str
    team: str | None = None
    feature: str | None = None
    environment: str | None = None
    workload: str | None = None

    def attrs(self) -> dict[str, str]:
        return {
            name: value
            for name in ("api_key", "team", "feature", "environment", "workload")
            if (value := getattr(self, name)) is not None
        }


class Alert(msgspec.Struct, kw_only=True, frozen=True):
    """One alert or follow-up, in memory as on the alerts topic: the record's fields, in
    its order, with its values.

    - Times are RFC 3339 text, as ``format_ts`` writes them: the detectors format them once
      when they build the alert (a few an hour); after them only the policy step reads
      some as numbers (a pause's confirmation age), and the action stage and its outbox
      file keep the text.
    - Money is rounded to 6 places and ``score`` to 4 when the alert is built or read
      (``__post_init__``), so a built alert equals its copy read back from the topic.
    - The keys in scope the policy step reads are not a field: ``SpendWatch.advance``
      hands them beside each alert. What only memory needs then cannot reach the wire,
      and the type needs no second, wire-only shape.

    Frozen: the policy step and the action stage make changed copies
    (``msgspec.structs.replace``). Optional fields default as an operator alert
    (``unpriced_model``) leaves them; fields a reader does not know are ignored.
    """

    kind: str
    detector: str = ""
    scope: dict[str, str | None] = {}
    #: Broader scopes the same incident showed in (``detectors.group``).
    also: list[dict[str, str | None]] = []
    window_start: str = ""
    window_end: str = ""
    #: Event time the engine raised it ("" in an operator alert).
    detected_at: str = ""
    observed_usd: float | None = None
    expected_usd: float | None = None
    severity: Severity
    action: Action = "alert"
    #: Keys to pause (or resume), set by the policy step.
    targets: list[str] = []
    #: Keys in scope the detector stage named critical: never paused, whatever ``targets``.
    critical_keys: list[str] = []
    #: Keys in scope the detector stage's keys config does not let be paused, and why
    #: (``KeyClass.protection``). Named so Slack can say why they were alerted and not
    #: paused; for people only: the action stage decides from its own config.
    protected_keys: dict[str, str] = {}
    #: Event time of the evidence its incident was first alerted on (the early look's time,
    #: or the end of an hour judged at its close; "" for budgets' and operator alerts): a
    #: pause policy's ``confirm_s`` counts from it.
    opened_at: str = ""
    #: Keys a pause policy holds until the incident has lasted its ``confirm_s``, each with
    #: the event time from which a follow-up that still finds it anomalous pauses it.
    held_keys: dict[str, str] = {}
    #: Targets past ``targets``, in the continuation records that follow this one (0: none).
    more_targets: int = 0
    #: 0: the alert; n > 0: its n-th continuation, the same alert with ``MAX_TARGETS`` more
    #: ``targets`` (and no ``also``, ``protected_keys`` or ``held_keys``), for the action
    #: stage alone: Slack, the store and reports take the alert from part 0.
    part: Annotated[int, msgspec.Meta(ge=0)] = 0
    budget: str | None = None
    threshold: float | None = None
    id: Annotated[str, msgspec.Meta(min_length=1)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    score: float = 1.0
    reason: str

    def __post_init__(self) -> None:
        # The contract's precision, kept in memory too: what is written is what is held.
        if self.observed_usd is not None:
            msgspec.structs.force_setattr(self, "observed_usd", round(self.observed_usd, 6))
        if self.expected_usd is not None:
            msgspec.structs.force_setattr(self, "expected_usd", round(self.expected_usd, 6))
        msgspec.structs.force_setattr(self, "score", round(self.score, 4))

    def ref(self) -> str:
        """``id#seq``: the alert's name, as text (audit records name alerts so)."""
        return f"{self.id}#{self.seq}"

    def record_key(self) -> str:
        """The record's key on the alerts topic: ``ref()``, ``id#seq/part`` for a
        continuation (``alert_records``)."""
        return f"{self.id}#{self.seq}/{self.part}" if self.part else f"{self.id}#{self.seq}"


def alert_records(alert: Alert, most: int = MAX_TARGETS) -> list[Alert]:
    """The records that carry ``alert`` to the alerts topic, in the order to send them:
    the alert itself when it names at most ``most`` targets; else the alert with its first
    ``most`` (``more_targets``: how many follow), then its continuations of ``most`` more
    each (``part`` 1, 2 ...).

    >>> big = Alert(kind="budget", severity="critical", action="pause", id="b", seq=0,
    ...             reason="over", targets=[f"k{i}" for i in range(5)])
    >>> [(r.record_key(), r.targets, r.more_targets) for r in alert_records(big, most=2)]
    [('b#0', ['k0', 'k1'], 3), ('b#0/1', ['k2', 'k3'], 0), ('b#0/2', ['k4'], 0)]
    """
    targets = alert.targets
    if len(targets) <= most:
        return [alert]
    replace = msgspec.structs.replace
    records = [replace(alert, targets=targets[:most], more_targets=len(targets) - most)]
    for part, start in enumerate(range(most, len(targets), most), start=1):
        records.append(
            replace(
                alert,
                targets=targets[start : start + most],
                part=part,
                also=[],
                protected_keys={},
                held_keys={},
            )
        )
    return records


def more_severe(a: str, b: str) -> bool:
    """True when severity ``a`` outranks ``b``."""
    return _SEVERITY_RANK[a] > _SEVERITY_RANK[b]


def encode_alert(alert: Alert) -> bytes:
    """The alerts-topic value: the fields in order, written by orjson.

    orjson, not msgspec's encoder, because the contract's bytes are orjson's: the two
    spell floats of 1e16 and up differently (``1e+16`` against ``1e16``).
    """
    return orjson.dumps(alert, default=msgspec.structs.asdict)


_decode_alert = msgspec.json.Decoder(Alert).decode


def decode_alert(value: bytes) -> Alert:
    """An alerts-topic value as a typed record; ``ValueError`` naming the field if it is not
    one (a hand-written record, another version): acting on it would fail later, in the
    middle of an effect, and again at every restart."""
    try:
        return _decode_alert(value)
    except msgspec.DecodeError as exc:  # ValidationError too: "... - at `$.targets`"
        raise ValueError(f"not an alert record: {exc}") from None
