"""The alert record: what the detector stage writes to ``spend.alerts`` and replay prints.

One JSON object per alert. ``id`` names the incident and stays the same for its
follow-ups (``seq`` 1, 2 ...), so (id, seq) is the record's key: a stage that
re-emits after a restart overwrites, and the action stage acts once per key.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Annotated, Any, Literal

import msgspec
import orjson

from ._time import format_ts

__all__ = ["ALERT_KINDS", "Alert", "AlertRecord", "KeyInfo", "decode_alert"]

ALERT_KINDS = ("anomaly", "wow", "budget", "projection", "burn_rate", "cost_per_call")
Severity = Literal["info", "warning", "critical"]
Action = Literal["alert", "pause", "resume"]
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
#: A global-scope alert can hold every key: the record names this many protected ones.
MAX_PROTECTED_LISTED = 100


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


@dataclass(slots=True)
class Alert:
    """One alert or follow-up. Times are epoch seconds; ``to_wire`` renders RFC 3339."""

    kind: str
    detector: str
    scope: dict[str, str | None]
    window_start: float
    window_end: float
    detected_at: float
    observed_usd: float
    expected_usd: float | None
    severity: Severity
    reason: str
    id: str
    seq: int = 0
    score: float = 1.0
    action: Action = "alert"
    targets: list[str] = field(default_factory=list)
    budget: str | None = None
    threshold: float | None = None
    also: list[dict[str, str | None]] = field(default_factory=list)
    #: Keys in scope with spend in the window; the policy step reads it, the wire omits it.
    keys: list[KeyInfo] = field(default_factory=list)
    #: Keys in scope the config's ``keys`` section does not let be paused, and why
    #: (``KeyClass.protection``); set with the policies.
    protected: dict[str, str] = field(default_factory=dict)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """An alert pickled before a field existed loads with that field's default."""
        for f in fields(self):
            if f.default is not MISSING:
                setattr(self, f.name, f.default)
            elif f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())
        for name, value in state[1].items():
            setattr(self, name, value)

    def key(self) -> bytes:
        return f"{self.id}#{self.seq}".encode()

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detector": self.detector,
            "scope": self.scope,
            "also": self.also,
            "window_start": format_ts(self.window_start),
            "window_end": format_ts(self.window_end),
            "detected_at": format_ts(self.detected_at),
            "observed_usd": round(self.observed_usd, 6),
            "expected_usd": None if self.expected_usd is None else round(self.expected_usd, 6),
            "severity": self.severity,
            "action": self.action,
            "targets": self.targets,
            # Named so Slack can say why they were alerted and not paused. For people only:
            # the action stage decides from its own config.
            "critical_keys": sorted(k for k, why in self.protected.items() if why == "critical"),
            "protected_keys": dict(list(self.protected.items())[:MAX_PROTECTED_LISTED]),
            "budget": self.budget,
            "threshold": self.threshold,
            "id": self.id,
            "seq": self.seq,
            "score": round(self.score, 4),
            "reason": self.reason,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_wire())


def more_severe(a: str, b: str) -> bool:
    """True when severity ``a`` outranks ``b``."""
    return _SEVERITY_RANK[a] > _SEVERITY_RANK[b]


class AlertRecord(msgspec.Struct, kw_only=True, frozen=True):
    """An alert as the alerts topic carries it, typed: what ``decode_alert`` returns and the
    action stage plans, renders and saves in its outbox file.

    The fields are ``Alert.to_wire()``'s, in its order (times RFC 3339, money rounded), so
    a record reads back with the values that were written. Optional ones default as an
    operator alert (``unpriced_model``) leaves them; fields it does not know are ignored.
    Records are written with orjson from ``Alert.to_wire()`` (the contract's bytes), not
    from this type.
    """

    kind: str
    detector: str = ""
    scope: dict[str, str | None] = {}
    also: list[dict[str, str | None]] = []
    window_start: str = ""
    window_end: str = ""
    detected_at: str = ""
    observed_usd: float | None = None
    expected_usd: float | None = None
    severity: Severity
    action: Action = "alert"
    targets: list[str] = []
    #: Keys in scope the detector stage named critical: never paused, whatever ``targets``.
    critical_keys: list[str] = []
    #: Keys in scope the detector stage's keys config does not let be paused, and why.
    protected_keys: dict[str, str] = {}
    budget: str | None = None
    threshold: float | None = None
    id: Annotated[str, msgspec.Meta(min_length=1)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    score: float = 1.0
    reason: str

    def ref(self) -> str:
        """``id#seq``: the record's key (``Alert.key()``) as text, as audit records name it."""
        return f"{self.id}#{self.seq}"


_decode_alert = msgspec.json.Decoder(AlertRecord).decode


def decode_alert(value: bytes) -> AlertRecord:
    """An alerts-topic value as a typed record; ``ValueError`` naming the field if it is not
    one (a hand-written record, another version): acting on it would fail later, in the
    middle of an effect, and again at every restart."""
    try:
        return _decode_alert(value)
    except msgspec.DecodeError as exc:  # ValidationError too: "... - at `$.targets`"
        raise ValueError(f"not an alert record: {exc}") from None
