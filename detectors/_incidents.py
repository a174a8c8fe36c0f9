"""One incident, one alert: fold anomalies seen at several scopes into the most specific one.

A looping agent shows in its key's series, its feature's, its team's and the global total
at once. Paging four times for one cause teaches on-call to mute. So the anomalies found at
one evaluation are sorted most specific first; a broader anomaly whose excess is mostly
explained (at least ``explain`` of it) by an already-chosen narrower one inside it, or by
several of the same kind together, becomes a parent scope (``also``) of those alerts. An
incident then stays open while its scopes keep firing; follow-ups reuse its ``id`` and are
only sent when the severity rises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from spendbrake.schemas import Alert, KeyInfo, format_ts, more_severe

__all__ = ["Candidate", "IncidentBook", "group", "inside", "narrowed", "rank"]

Scope = tuple[tuple[str, str | None], ...]
HOUR = 3600


@dataclass(slots=True)
class Candidate:
    """One anomalous series at one evaluation, before grouping."""

    scope: Scope
    kind: str
    detector: str
    window_start: float
    window_end: float
    observed_usd: float
    expected_usd: float | None
    excess_usd: float
    score: float
    severity: str
    reason: str
    #: Known attributes of the series (a key's team and feature from the directory).
    known: dict[str, str | None] = field(default_factory=dict)
    also: list[Scope] = field(default_factory=list)


def rank(scope: Scope) -> tuple[bool, int]:
    """Specificity: a key's series first (keys are what actions act on), then more fields."""
    names = {name for name, _ in scope}
    return ("api_key" in names, len(names))


def inside(known: dict[str, str | None], scope: Scope, broad: Scope) -> bool:
    """A series (its ``scope`` and ``known`` attributes) lies within ``broad``, as far as known.

    Cross-cutting fields (model, customer) are not in the key directory: an unknown value
    does not contradict, so a key's runaway can explain its model's surge.
    """
    if scope == broad or rank(scope) <= rank(broad):
        return False
    return all(known.get(name, value) == value for name, value in broad)


def group(candidates: Iterable[Candidate], explain: float = 0.5) -> list[Candidate]:
    """Roots of the anomalies, each with the broader scopes it explains in ``also``."""
    roots: list[Candidate] = []
    # Ties (one excess seen at a feature and a model alike) broken by scope and detector,
    # so ``also`` lists the same scopes in the same order whatever order they came in.
    ordered = sorted(
        candidates,
        key=lambda c: (*rank(c.scope), c.excess_usd, repr(c.scope), c.kind, c.detector),
        reverse=True,
    )
    for c in ordered:
        for root in roots:
            if root.scope == c.scope or (
                inside(root.known, root.scope, c.scope)
                and root.excess_usd >= explain * c.excess_usd
            ):
                if root.scope != c.scope and c.scope not in root.also:
                    root.also.append(c.scope)  # once, whichever detectors found it
                break
        else:
            # Several narrower anomalies that together explain it (batch keys looping on
            # one night lift the global sum): each names it, none pages it again. Only
            # those known to lie in it: whether a key calls a model or serves a customer
            # is unknown, and unrelated keys must not silence a model's surge.
            inner = [
                r
                for r in roots
                if r.kind == c.kind
                and inside(r.known, r.scope, c.scope)
                and all(name in r.known for name, _ in c.scope)
            ]
            if len(inner) > 1 and sum(r.excess_usd for r in inner) >= explain * c.excess_usd:
                for root in inner:
                    if c.scope not in root.also:
                        root.also.append(c.scope)
            else:
                roots.append(c)
    return roots


def narrowed(root: Candidate, child: Candidate) -> Candidate:
    """``root`` re-stated at a narrower ``child`` series that explains its excess."""
    child.kind, child.detector = root.kind, root.detector
    child.score, child.severity = root.score, root.severity
    child.window_start, child.window_end = root.window_start, root.window_end
    child.reason = f"{child.reason}; explains {scope_text(root.scope)}: {root.reason}"
    child.also = [root.scope, *root.also]
    return child


@dataclass(slots=True)
class Incident:
    id: str
    seq: int
    severity: str
    last_ts: float
    scopes: set[Scope]
    keys: list[KeyInfo] = field(default_factory=list)
    #: The scope it was opened at (None in snapshots from before it was kept).
    origin: Scope | None = None
    #: Its family (``family``); None in snapshots from before digest items (read off its id).
    family: str | None = None
    #: When it was opened (event time) and the most specific scope it was stated at; None
    #: in snapshots from before they were kept.
    opened: float | None = None
    at: Scope | None = None
    #: None, unless a pause policy holds a key of it (``IncidentBook.hold``): then the
    #: largest of ``IncidentBook.confirm_after`` it has been stated again at (0.0: none yet).
    confirm: float | None = None


def family(kind: str, severity: str = "warning") -> str:
    """Runaway evidence (a window far above its baseline) versus a trend (a weekly rise, a
    dearer prompt) versus a digest item (severity ``info``: a creep, a launch's step). A
    trend never hides a runaway: the runaway opens its own incident, with its own action;
    a trend seen while a runaway is open is part of it. Likewise a page never continues a
    digest item (that was never posted): it opens its own incident."""
    if severity == "info":
        return "digest"
    return "runaway" if kind == "anomaly" else "trend"


#: The families whose open incidents a root of each family may continue.
_CONTINUES = {
    "runaway": ("runaway",),
    "trend": ("runaway", "trend"),
    "digest": ("runaway", "trend", "digest"),
}


#: A root continues an incident opened at a parent whose membership is unknown (a model,
#: a customer) only this soon after it opened: "seen first at the model, now at its key"
#: happens within minutes; a day later it is another key's runaway on the same model.
RESTATE_S = 3600.0


class IncidentBook:
    """Open incidents by family and scope; decides whether a root is news, a follow-up, or noise.

    An incident first stated at a broad scope (a team's or a model's sum often crosses before
    the looping key does) is re-stated at the key when the key's own anomaly joins it: a
    follow-up naming the key, the one thing to act on.

    Parameters
    ----------
    quiet_s
        An incident closes after this long without an anomaly in any of its scopes.
    confirm_after
        Ages (in event time of the evidence, since it opened) at which an incident a pause
        policy holds keys of (``hold``) is stated again, once each, if it is still anomalous
        at its key: the pause policies' ``confirm_s`` (``Config.confirm_after``).
    """

    def __init__(self, quiet_s: float = 6 * 3600.0, confirm_after: Sequence[float] = ()) -> None:
        self.quiet_s = quiet_s
        self.confirm_after = tuple(confirm_after)
        self.open: dict[tuple[str, Scope], Incident] = {}

    def _find(self, families: tuple[str, ...], root: Candidate, now: float) -> Incident | None:
        # The root's own scope: an incident already covers it (its origin, or a broader
        # scope it was seen in).
        for fam in families:
            incident = self.open.get((fam, root.scope))
            if incident is not None:
                return incident
        # A broader scope the root explains: only the incident that was OPENED there is
        # this one (seen first at the team, now at its key). Two runaways that merely
        # share a parent (the global total, a model both use) are two incidents.
        for fam in families:
            for scope in root.also:
                incident = self.open.get((fam, scope))
                if incident is None or _origin(incident, scope) != scope:
                    continue
                known = all(name in root.known for name, _ in scope)
                opened = getattr(incident, "opened", None)
                if not known and (opened is None or now - opened > RESTATE_S):
                    continue  # not shown to be inside it, and not just opened: another cause
                return incident
        return None

    def _register(self, fam: str, scope: Scope, incident: Incident) -> None:
        """Map ``scope`` to ``incident``, never over the incident that was opened there."""
        current = self.open.get((fam, scope))
        if current is None or current is incident or _origin(current, None) != scope:
            self.open[(fam, scope)] = incident

    def admit(self, root: Candidate, now: float) -> tuple[Incident, bool] | None:
        """(incident, is_new) when ``root`` must be sent, None when it is already known."""
        # Event time of the evidence, not of the evaluation: hours closed late in a catch-up
        # still belong to the incident they are part of.
        now = min(now, root.window_end)
        self._expire(now)
        fam = family(root.kind, root.severity)
        incident = self._find(_CONTINUES[fam], root, now)
        if incident is None:
            incident = Incident(
                id=incident_id(root.kind, root.scope, root.window_start),
                seq=0,
                severity=root.severity,
                last_ts=now,
                scopes={root.scope, *root.also},
                origin=root.scope,
                family=fam,
                opened=now,
                at=root.scope,
            )
            for scope in (root.scope, *root.also):
                self._register(fam, scope, incident)
            return incident, True
        incident.last_ts = max(incident.last_ts, now)
        owner = getattr(incident, "family", None) or family(incident.id.split("/", 1)[0])
        for scope in (root.scope, *root.also):
            if scope not in incident.scopes:
                incident.scopes.add(scope)
                self._register(owner, scope, incident)
        stated = getattr(incident, "at", None) or _origin(incident, None) or root.scope
        narrower = owner == fam and rank(root.scope) > rank(stated)
        if narrower:
            incident.at = root.scope  # re-stated at the narrower scope (the key)
        # A held pause's incident anomalous again at its most specific scope (the key) past
        # a confirmation age not yet stated: it lasted that long, which the policy waits for.
        opened, confirm = getattr(incident, "opened", None), getattr(incident, "confirm", None)
        lasted = [
            age
            for age in self.confirm_after
            if opened is not None
            and confirm is not None
            and confirm < age <= now - opened
            and rank(root.scope) >= rank(stated)
        ]
        if lasted:
            incident.confirm = lasted[-1]
        if more_severe(root.severity, incident.severity) or narrower or lasted:
            if more_severe(root.severity, incident.severity):
                incident.severity = root.severity
            incident.seq += 1
            return incident, False
        return None

    def hold(self, incident_id: str) -> None:
        """A pause policy holds keys of this incident until it has lasted: state it again at
        the confirmation ages it reaches while still anomalous (a no-op once it has closed)."""
        for incident in self.open.values():
            if incident.id == incident_id and getattr(incident, "confirm", None) is None:
                incident.confirm = 0.0

    def alerts(
        self,
        roots: Iterable[Candidate],
        at: float,
        keys_in: Callable[[dict[str, str | None], float], list[KeyInfo]],
    ) -> list[tuple[Alert, list[KeyInfo]]]:
        """One alert per new or escalated incident among ``roots``, dated ``at`` (event time),
        each with the keys in its scope that spent in its window (what the policy step reads).

        Roots restated at the same scope are one: their parent scopes are merged.
        """
        alerts = []
        by_scope: dict[Scope, Candidate] = {}
        for root in roots:
            if root.scope in by_scope:
                also = by_scope[root.scope].also
                also.extend(s for s in root.also if s not in also)
            else:
                by_scope[root.scope] = root
        for root in by_scope.values():
            admitted = self.admit(root, at)
            if admitted is None:
                continue
            incident, _ = admitted
            opened = getattr(incident, "opened", None)
            alert = Alert(
                kind=root.kind,
                detector=root.detector,
                scope=dict(root.scope),
                also=[dict(s) for s in root.also],
                window_start=format_ts(root.window_start),
                window_end=format_ts(root.window_end),
                detected_at=format_ts(at),
                observed_usd=root.observed_usd,
                expected_usd=root.expected_usd,
                severity=root.severity,  # type: ignore[arg-type]
                opened_at="" if opened is None else format_ts(opened),
                reason=f"{scope_text(root.scope)}: {root.reason}",
                id=incident.id,
                seq=incident.seq,
                score=root.score,
            )
            alerts.append((alert, keys_in(dict(root.scope), root.window_start - HOUR)))
        return alerts

    def _expire(self, now: float) -> None:
        stale = [s for s, inc in self.open.items() if now - inc.last_ts > self.quiet_s]
        for scope in stale:
            del self.open[scope]


def _origin(incident: Incident, default: Scope | None) -> Scope | None:
    # Incidents restored from an older snapshot do not know their origin.
    return getattr(incident, "origin", default)


def scope_text(scope: Scope) -> str:
    return ",".join(f"{k}={v}" for k, v in scope) or "global"


def incident_id(kind: str, scope: Scope, start: float) -> str:
    """Readable and stable: the same input replays to the same id."""
    return f"{kind}/{scope_text(scope)}/{int(start)}"
