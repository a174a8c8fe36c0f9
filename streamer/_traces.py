"""Cost per trace (one agent task): totals per ``trace_id``, emitted once idle.

A trace's calls are spread over input partitions (events are keyed by
``event_id``), so each partition emits its own *partial*, keyed by the trace,
the partition and the partial's first event id; readers add partials of one
trace (``TraceTotals``). The worker sends the partials of one flush as one
``spend.traces`` record (``{"traces": [...]}``). A partial is emitted when the watermark is
``idle_s`` past its last call. A call that arrives after its trace was emitted
starts a new partial with a new key, so nothing is overwritten or lost.

Where a partial ends depends on the events alone, never on when flushes came: a call
whose trace's partial is idle at the watermark (after the call) closes that partial and
starts a new one, whether or not a flush has emitted it yet. After a crash the events
since the last snapshot are processed again and flushed at other moments; each partial
they make is the one sent before, whole, under the same key, so a reader's last write
wins (it was merged into the partial before it, and its trace was counted twice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
import orjson

from spendbrake.schemas import NUSD, OTHER, UsageEvent, format_ts

#: Partials per ``spend.traces`` record, at most: about 400 bytes each with ids of usual
#: lengths.
TRACE_BATCH = 1000
#: Bytes of a ``spend.traces`` record's value, at most (``trace_records``): under Apache
#: Kafka's default 1 MB, with room for the key and the record's overhead. Ids and names run
#: to 512 characters each: 1,000 partials of such made a 2.7 MB record, which Apache Kafka
#: refuses (the ingest then stops, ``RecordTooLarge``).
TRACE_RECORD_BYTES = 900_000
#: Model and outcome names a partial counts calls under; the calls of any other under
#: ``OTHER``. Names are the caller's (up to 512 characters each), so this bounds a partial.
MAX_NAMES = 100


class TracePartial(msgspec.Struct, gc=False):
    """The calls of one trace seen in one input partition since its partial opened.

    A msgspec struct rather than a dataclass: one is built (and later freed) per trace,
    about one per event in agent traffic, and its ``__init__`` runs in C. ``gc=False``:
    it holds only strings, numbers and dicts of those, so it is never part of a cycle.
    """

    trace_id: str
    partition: int
    first_event_id: str
    team: str
    feature: str | None
    customer: str | None
    cost_nusd: int = 0
    calls: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    models: dict[str, int] = msgspec.field(default_factory=dict)
    outcomes: dict[str, int] = msgspec.field(default_factory=dict)

    def key(self) -> bytes:
        return orjson.dumps([self.trace_id, self.partition, self.first_event_id])

    def to_wire(self) -> dict[str, Any]:
        start = format_ts(self.first_ts)
        return {
            "trace_id": self.trace_id,
            "partition": self.partition,
            "first_event_id": self.first_event_id,
            "team": self.team,
            "feature": self.feature,
            "customer": self.customer,
            "cost_usd": self.cost_nusd / NUSD,
            "cost_nusd": self.cost_nusd,
            "calls": self.calls,
            "models": self.models,
            "outcomes": self.outcomes,
            "start": start,
            # Most traces are a single call: format its one timestamp once.
            "end": start if self.last_ts == self.first_ts else format_ts(self.last_ts),
            "start_ts": self.first_ts,
            "end_ts": self.last_ts,
            "duration_s": self.last_ts - self.first_ts,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TracePartial:
        return cls(
            trace_id=data["trace_id"],
            partition=data["partition"],
            first_event_id=data["first_event_id"],
            team=data["team"],
            feature=data["feature"],
            customer=data["customer"],
            cost_nusd=data["cost_nusd"],
            calls=data["calls"],
            first_ts=data["start_ts"],
            last_ts=data["end_ts"],
            models=dict(data["models"]),
            outcomes=dict(data["outcomes"]),
        )


class _WirePartial(msgspec.Struct, gc=False):
    """``TracePartial.to_wire()`` as a struct: same fields in the same order, encoded in C."""

    trace_id: str
    partition: int
    first_event_id: str
    team: str
    feature: str | None
    customer: str | None
    cost_usd: float
    cost_nusd: int
    calls: int
    models: dict[str, int]
    outcomes: dict[str, int]
    start: str
    end: str
    start_ts: float
    end_ts: float
    duration_s: float


_encode = msgspec.json.Encoder().encode


def encode_traces(partials: Sequence[TracePartial]) -> bytes:
    """One ``spend.traces`` record value: ``{"traces": [partial.to_wire(), ...]}``.

    Partials are about as many as events (most traces are one or two calls),
    so this skips the dicts ``to_wire`` builds.
    """
    rows = []
    for p in partials:
        start = format_ts(p.first_ts)
        rows.append(
            _WirePartial(
                p.trace_id,
                p.partition,
                p.first_event_id,
                p.team,
                p.feature,
                p.customer,
                p.cost_nusd / NUSD,
                p.cost_nusd,
                p.calls,
                p.models,
                p.outcomes,
                start,
                start if p.last_ts == p.first_ts else format_ts(p.last_ts),
                p.first_ts,
                p.last_ts,
                p.last_ts - p.first_ts,
            )
        )
    return _encode({"traces": rows})


def trace_records(partials: Sequence[TracePartial]) -> Iterator[tuple[TracePartial, bytes]]:
    """The ``spend.traces`` record values carrying ``partials``, each with its first partial
    (whose key keys the record): up to ``TRACE_BATCH`` partials a record, fewer when their
    value would pass ``TRACE_RECORD_BYTES`` (halved until it does not)."""
    for i in range(0, len(partials), TRACE_BATCH):
        yield from _fitted(partials[i : i + TRACE_BATCH])


def _fitted(chunk: Sequence[TracePartial]) -> Iterator[tuple[TracePartial, bytes]]:
    value = encode_traces(chunk)
    if len(value) <= TRACE_RECORD_BYTES or len(chunk) == 1:
        # One partial is bounded (``MAX_NAMES``, 512-character fields): it goes as it is.
        yield chunk[0], value
        return
    half = len(chunk) // 2
    yield from _fitted(chunk[:half])
    yield from _fitted(chunk[half:])


def _count(names: dict[str, int], name: str) -> None:
    if name in names or len(names) < MAX_NAMES:
        names[name] = names.get(name, 0) + 1
    else:
        names[OTHER] = names.get(OTHER, 0) + 1


class TraceState:
    """Open trace partials of one partition."""

    def __init__(self, partition: int = 0, idle_s: float = 300.0) -> None:
        self.partition = partition
        self.idle_s = idle_s
        self.open: dict[str, TracePartial] = {}
        #: Minute of a partial's last call -> ids of the partials whose last call fell in it,
        #: plus stale ids (partials since emitted, or extended into a later minute, where
        #: they are listed again). ``flush`` reads only minutes old enough to hold an idle
        #: partial instead of every open partial at every flush.
        self.idle_at: dict[float, list[str]] = {}
        #: Partials a call closed (``add``), emitted at the next flush.
        self.closed: list[TracePartial] = []

    def add(self, event: UsageEvent, cost_nusd: int, watermark: float) -> None:
        """Count a call into its trace's partial; ``watermark`` is the partition's, with
        the call counted. A partial idle at it is closed first (see the module's doc)."""
        trace_id = event.trace_id
        if trace_id is None:
            return
        ts = event.ts
        partial = self.open.get(trace_id)
        if partial is not None and watermark - partial.last_ts >= self.idle_s:
            self.closed.append(self.open.pop(trace_id))
            partial = None
        if partial is None:
            # Most traces are one or two calls: build the partial complete at once.
            outcome = event.outcome
            self.open[trace_id] = TracePartial(
                trace_id,
                self.partition,
                event.event_id,
                event.team,
                event.feature,
                event.customer,
                cost_nusd,
                1,
                ts,
                ts,
                {event.model: 1},
                {} if outcome is None else {outcome: 1},
            )
            ids = self.idle_at.get(ts // 60)
            if ids is None:
                self.idle_at[ts // 60] = [trace_id]
            else:
                ids.append(trace_id)
            return
        partial.cost_nusd += cost_nusd
        partial.calls += 1
        if ts < partial.first_ts:
            partial.first_ts = ts
        elif ts > partial.last_ts:
            if ts // 60 != partial.last_ts // 60:
                self._index(trace_id, ts)
            partial.last_ts = ts
        _count(partial.models, event.model)
        if event.outcome is not None:
            _count(partial.outcomes, event.outcome)

    def _index(self, trace_id: str, last_ts: float) -> None:
        minute = last_ts // 60
        ids = self.idle_at.get(minute)
        if ids is None:
            self.idle_at[minute] = [trace_id]
        else:
            ids.append(trace_id)

    def flush(self, watermark: float) -> list[TracePartial]:
        """Partials calls closed since the last flush, then those idle for ``idle_s`` of
        event time, removed from memory.

        Oldest minute of last call first. A partial whose last call fell in a minute
        starting after ``watermark - idle_s + 1`` cannot be idle, so only earlier minutes
        are read; each partial found there is checked exactly as before.
        """
        done, self.closed = self.closed, []
        if watermark == -math.inf:
            return done
        idle_s = self.idle_s
        open_ = self.open
        idle_at = self.idle_at
        limit = (watermark - idle_s + 1.0) // 60
        for minute in sorted(m for m in idle_at if m <= limit):
            keep = []
            for trace_id in idle_at.pop(minute):
                partial = open_.get(trace_id)
                if partial is None or partial.last_ts // 60 != minute:
                    continue  # emitted, or listed again under a later minute
                if watermark - partial.last_ts >= idle_s:
                    done.append(open_.pop(trace_id))
                else:
                    keep.append(trace_id)
            if keep:
                idle_at[minute] = keep
        return done

    def snapshot(self) -> list[list[Any]]:
        """Open partials as plain rows (no text timestamps: a checkpoint writes them all),
        then closed ones not yet flushed, marked so (none, after a checkpoint's flush)."""
        open_rows = [_row(p) for p in self.open.values()]
        return open_rows + [[*_row(p), "closed"] for p in self.closed]

    def restore(self, data: Iterable[list[Any] | dict[str, Any]]) -> None:
        """Rows from ``snapshot``; wire dicts (the older snapshot form) are read too."""
        self.open = {}
        self.idle_at = {}
        self.closed = []
        for row in data:
            if isinstance(row, dict):
                partial = TracePartial.from_wire(row)
            else:
                trace_id, first_id, team, feature, customer, cost, calls, first, last = row[:9]
                partial = TracePartial(
                    trace_id,
                    self.partition,
                    first_id,
                    team,
                    feature,
                    customer,
                    cost,
                    calls,
                    first,
                    last,
                    dict(row[9]),
                    dict(row[10]),
                )
                if row[11:] == ["closed"]:
                    self.closed.append(partial)
                    continue
            self.open[partial.trace_id] = partial
            self._index(partial.trace_id, partial.last_ts)


def _row(p: TracePartial) -> list[Any]:
    return [
        p.trace_id,
        p.first_event_id,
        p.team,
        p.feature,
        p.customer,
        p.cost_nusd,
        p.calls,
        p.first_ts,
        p.last_ts,
        p.models,
        p.outcomes,
    ]


class TraceTotals:
    """Reader side: latest partial per key, summed per trace."""

    def __init__(self) -> None:
        self.latest: dict[bytes, TracePartial] = {}

    def update(self, partials: Iterable[TracePartial]) -> None:
        for partial in partials:
            self.latest[partial.key()] = partial

    def update_from_record(self, value: bytes) -> None:
        """Apply one ``spend.traces`` record (a batch of partials)."""
        self.update(TracePartial.from_wire(d) for d in orjson.loads(value)["traces"])

    def totals(self) -> dict[str, tuple[int, int]]:
        """trace_id -> (cost in nano-dollars, calls)."""
        out: dict[str, list[int]] = {}
        for partial in self.latest.values():
            total = out.setdefault(partial.trace_id, [0, 0])
            total[0] += partial.cost_nusd
            total[1] += partial.calls
        return {k: (v[0], v[1]) for k, v in out.items()}
