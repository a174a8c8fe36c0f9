"""Everything that happens to one record of one input partition: pure, no I/O.

parse (orjson) -> validate (contract v1) -> dedupe by event_id -> price -> roll up.
A record that fails any check becomes a ``DeadLetter`` with the field and the
reason; nothing raises, nothing blocks the partition. The live worker, replay
and the tests all drive this same class: the worker a record at a time
(``process_many``), replay a run of lines at a time as arrays (``process_lines``,
which hands every record it is not sure of to the per-event path).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from spendbrake.schemas import (
    CALLS,
    COST,
    MAX_EVENT_BYTES,
    MAX_FUTURE_S,
    METRICS,
    NUSD,
    OTHER,
    Alert,
    InvalidEvent,
    PriceTable,
    RollupRecord,
    RunDecoder,
    UsageEvent,
    decode_event,
    fast_decode,
    format_ts,
    gc_paused,
)

from ._dedupe import BUCKET_S, Deduper
from ._lines import EventRows, rows_of_cells, vouched
from ._rollup import ATTRS, WINDOWS_S, RollupState, SeriesTable
from ._traces import TracePartial, TraceState

#: Bytes of a bad record's payload kept in its DLQ record.
RAW_LIMIT = 4096
#: Dead letters a processor remembers the offset and reason of (``first_dead``).
FIRST_DEAD = 5


class KafkaMessage(Protocol):
    """What ``process_batch`` reads of an aiokafka ``ConsumerRecord``."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(slots=True)
class DeadLetter:
    reason: str
    field: str
    topic: str
    partition: int
    offset: int
    raw: str
    raw_bytes: int

    def key(self) -> bytes:
        """One key per source record, so a re-sent dead letter overwrites itself."""
        return f"{self.topic}/{self.partition}/{self.offset}".encode()

    def to_wire(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "field": self.field,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "raw": self.raw,
            "raw_bytes": self.raw_bytes,
            "truncated": self.raw_bytes > RAW_LIMIT,
        }


#: Most lines in one run of ``process_lines``: its events stay in the core's cache between
#: its passes over them (runs of 4,096 were slower).
RUN_LINES = 1024
#: What ``process_lines`` reads of each event of a run, a C call each.
_id_of = operator.attrgetter("event_id")
_cost_of = operator.attrgetter("cost_usd")
_model_of = operator.attrgetter("provider", "model")
_attrs_of = operator.attrgetter(*ATTRS)
_NO_TIMESTAMPS = itertools.repeat(math.inf)

#: Distinct unpriced model names counted by name; the rest are counted together.
MAX_UNPRICED_MODELS = 1000


class Outputs(NamedTuple):
    """What one flush of a partition produces."""

    rollups: list[RollupRecord]
    dead: list[DeadLetter]
    traces: list[TracePartial]
    #: Operator alerts (unpriced models), keyed so each is sent once per model per day.
    alerts: list[Alert]


def unpriced_model_alert(provider: str, model: str, day_start: int, daily: bool = False) -> Alert:
    """The operator notice for a model the price table does not know, once per model a day.

    Model names are the caller's, so their number is too: each model's notice is ``info``
    (the digest's, never a post of its own), and only the first of a UTC day (``daily``:
    id ``unpriced:<day>``, one for every partition) is a ``warning`` that reaches Slack.
    """
    day = format_ts(day_start)[:10]
    if daily:
        message = (
            f"{provider}/{model} has no price: its calls and tokens are counted, its cost is not. "
            "Add it under pricing.models in the config. Other models without a price today go "
            "to the digest; spendbrake_unpriced_events_by_model_total{model} counts them all."
        )
    else:
        message = (
            f"{provider}/{model} has no price: its calls and tokens are counted, its cost is not. "
            "Add it under pricing.models in the config."
        )
    return Alert(
        kind="unpriced_model",
        detector="pricing",
        scope={"provider": provider, "model": model},
        window_start=format_ts(day_start),
        window_end=format_ts(day_start + 86400),
        severity="warning" if daily else "info",
        id=f"unpriced:{day}" if daily else f"unpriced:{provider}/{model}:{day}",
        seq=0,
        reason=message,
    )


class StepCut(NamedTuple):
    """One step of ``process_lines``: its events, the watermark that ended it, and the
    offset after its last record."""

    rows: EventRows
    watermark: float
    next_offset: int


@dataclass(slots=True)
class ProcessorStats:
    records: int = 0
    valid: int = 0
    duplicates: int = 0
    late: int = 0
    unpriced: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    unpriced_models: dict[str, int] = field(default_factory=dict)


class PartitionProcessor:
    """State and logic for one input partition.

    Parameters
    ----------
    max_future_s
        An event stamped this far after its Kafka record's own timestamp is
        refused: one bogus future ``ts`` would otherwise push the watermark
        ahead and make every later event "late". The record timestamp is used,
        not a clock, so reprocessing after a restart decides the same way.
    windows_s, dim_windows_s, finals, minute_values, series_table
        Which windows are rolled up (of which series), whether closing ones are emitted
        again as final, and the series table shared with the process' other partitions:
        see ``RollupState``.
    traces
        Keep per-trace partials (the store's trace table). Off for a reader that never
        reads them (replay's detectors): about a tenth of the per-event work.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        dimensions: list[list[str]] | list[tuple[str, ...]],
        prices: PriceTable,
        lateness_s: float = 600.0,
        dedupe_horizon_s: float = 7 * 86400,
        max_future_s: float = MAX_FUTURE_S,
        trace_idle_s: float = 300.0,
        windows_s: tuple[int, ...] = WINDOWS_S,
        dim_windows_s: Sequence[Sequence[int]] | None = None,
        finals: bool = True,
        minute_values: Sequence[Collection[tuple[str | None, ...]] | None] | None = None,
        traces: bool = True,
        series_table: SeriesTable | None = None,
    ) -> None:
        self.topic = topic
        self.keep_traces = traces
        self.partition = partition
        self.prices = prices
        self.max_future_s = max_future_s
        self.rollups = RollupState(
            dimensions,
            partition=partition,
            lateness_s=lateness_s,
            windows_s=windows_s,
            dim_windows_s=dim_windows_s,
            finals=finals,
            minute_values=minute_values,
            series_table=series_table,
        )
        self.dedupe = Deduper(dedupe_horizon_s)
        self.traces = TraceState(partition, trace_idle_s)
        #: Next input offset to read; stored with the snapshot.
        self.next_offset: int | None = None
        self.stats = ProcessorStats()
        self.dead: list[DeadLetter] = []
        #: (offset, reason) of the first ``FIRST_DEAD`` dead letters since it was made: what
        #: replay shows of a file's bad lines (its dead letters go nowhere).
        self.first_dead: list[tuple[int, str]] = []
        #: How many of them it keeps (replay's ``--max-errors``).
        self.first_dead_max = FIRST_DEAD
        #: Replay's clock (epoch seconds): its lines carry no record timestamp, so their
        #: event times are checked against it, ``max_future_s`` ahead at most. One line
        #: dated 2030 otherwise pushed the watermark four years on, and every line after it
        #: was rejected as past the dedupe horizon. None: no such check (``process_lines``
        #: as a reader of a topic's records, which pass their own timestamps).
        self.clock_s: float | None = None
        self.alerts: list[Alert] = []
        #: (provider, model, UTC day) already alerted as unpriced, kept for 8 days.
        self.unpriced_seen: set[tuple[str, str, int]] = set()
        #: Events counted since the last cut, as rows, and where the open step ends
        #: (``process_lines``).
        self._rows: list[EventRows] = []
        self._step_end = math.inf
        #: Decodes ``process_lines``' runs, sharing the attribution strings they repeat.
        self._decoder = RunDecoder()

    def process(self, raw: bytes | None, offset: int, record_ts: float | None = None) -> None:
        """Handle the record at ``offset``; ``record_ts`` is its Kafka timestamp in seconds."""
        self.stats.records += 1
        self.next_offset = offset + 1
        self._handle(raw, offset, record_ts)

    def process_batch(self, messages: Sequence[KafkaMessage]) -> None:
        """``process`` each message of one fetch, in order: the worker's hot path."""
        self.process_many(
            [m.value for m in messages],
            [m.offset for m in messages],
            [m.timestamp for m in messages],
        )

    def process_many(
        self,
        values: Sequence[bytes | None],
        offsets: Sequence[int],
        timestamps_ms: Iterable[float],
        until: float = math.inf,
    ) -> int:
        """``process`` each record (value, offset, Kafka timestamp in ms), in order.

        The common case, a record msgspec vouches for (``fast_decode``), is counted
        straight from the event it decoded, with the dedupe memory's id list of the
        current hour at hand. Every other case goes to the same methods ``process`` uses;
        ``tests/streamer/test_processor.py`` holds both entry points to the same state
        and outputs.

        Parallel sequences, not message objects: replay reads lines, and building an
        object per line costs more than parsing it. A line has no record timestamp:
        ``inf`` turns the future-timestamp check off, as ``process(record_ts=None)``
        does. Stops after the record that brings the watermark to ``until`` (replay
        flushes there, at the event-time step the live watch looks at); returns how
        many records it took.
        """
        if not values:
            return 0
        rollups = self.rollups
        dedupe = self.dedupe
        traces = self.traces
        add_trace = traces.add
        price = self.prices.price
        max_future_s = self.max_future_s
        horizon_s = dedupe.horizon_s
        # RollupState.add and the new-trace case of TraceState.add are inlined below (a
        # call and a dozen attribute reads less per event), with the watermark in a local
        # that is written back around every call that reads or moves it.
        fine = rollups.fine
        lateness_s = rollups.lateness_s
        smallest = rollups.min_window_s
        late_after_s = smallest + lateness_s
        watermark = rollups.watermark
        open_traces = traces.open
        keep_traces = self.keep_traces
        idle_at = traces.idle_at
        partition = traces.partition
        seen = dedupe.seen
        bucket_no = None
        fresh: list[str] = []
        valid = duplicates = late = 0
        i = -1  # the index of the last record taken
        for i, (raw, offset, timestamp_ms) in enumerate(
            zip(values, offsets, timestamps_ms, strict=False)  # timestamps may be endless
        ):
            if watermark >= until:
                i -= 1
                break
            event = fast_decode(raw) if raw is not None and len(raw) <= MAX_EVENT_BYTES else None
            if event is None:
                rollups.watermark = watermark
                self._handle(raw, offset, timestamp_ms / 1000.0)
                watermark = rollups.watermark
                continue
            ts = event.ts
            if ts > timestamp_ms / 1000.0 + max_future_s or ts < watermark - horizon_s:
                rollups.watermark = watermark
                self._count(event, raw, offset, timestamp_ms / 1000.0)
                watermark = rollups.watermark
                continue
            size = len(seen)
            seen.add(event.event_id)
            if len(seen) == size:
                duplicates += 1
                continue
            if int(ts // BUCKET_S) != bucket_no:
                bucket_no = int(ts // BUCKET_S)
                fresh = dedupe.bucket(bucket_no)
            fresh.append(event.event_id)
            cost = event.cost_usd
            priced = True
            if cost is None:
                cost = price(event)
                if cost is None:
                    priced = False
                    cost = 0.0
                    self._unpriced(event.provider, event.model, ts)
            cost_nusd = round(cost * NUSD)
            # -- RollupState.add
            minute = int(ts // 60) * 60
            if int(ts // smallest) * smallest + late_after_s <= watermark:
                epoch = 1 + int(watermark // lateness_s)
                late += 1
            else:
                epoch = 0
                if ts > watermark:
                    watermark = ts
            key = (
                minute,
                epoch,
                event.team,
                event.feature,
                event.api_key,
                event.customer,
                event.environment,
                event.workload,
                event.model,
                event.provider,
            )
            cell = fine.get(key)
            if cell is None:
                cell = fine[key] = [0, 0, 0, 0, 0, 0, 0, 0, None]
            cell[0] += cost_nusd
            cell[1] += 1
            cell[2] += event.input_tokens
            cell[3] += event.cache_read_tokens
            cell[4] += event.cache_write_tokens
            cell[5] += event.output_tokens
            cell[6] += event.reasoning_tokens
            if not priced:
                cell[7] += 1
            outcome = event.outcome
            if outcome is not None:
                outcomes = cell[8]
                if outcomes is None:
                    cell[8] = {outcome: 1}
                else:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            # -- TraceState.add
            trace_id = event.trace_id
            if trace_id is not None and keep_traces:
                if trace_id in open_traces:
                    add_trace(event, cost_nusd, watermark)
                else:
                    open_traces[trace_id] = TracePartial(
                        trace_id,
                        partition,
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
                    ids = idle_at.get(ts // 60)
                    if ids is None:
                        idle_at[ts // 60] = [trace_id]
                    else:
                        ids.append(trace_id)
            valid += 1
        rollups.watermark = watermark
        rollups.late_events += late
        stats = self.stats
        taken = i + 1
        stats.records += taken
        stats.valid += valid
        stats.duplicates += duplicates
        stats.late += late
        if taken:
            self.next_offset = offsets[taken - 1] + 1
        return taken

    def process_lines(
        self, values: Sequence[bytes | None], offsets: Sequence[int], step_s: float
    ) -> list[StepCut]:
        """``process_many`` for records with no timestamp (replay's lines), a run of them at
        a time in arrays, cut where the watermark reaches each multiple of ``step_s``; for a
        reader of cuts (no traces, no calls by outcome). Returns the steps these records
        completed; the open step's events wait for the next call, or ``cut``.

        A step ends after the record that brings the watermark to its end (as
        ``process_many(until=...)``); the first ends at the step after the first event's.
        A run is the records up to the first that needs the per-event path: one msgspec
        refuses, whose ``ts`` text is not ``epoch_seconds``' shape or that breaks a
        cross-field rule, or past the dedupe horizon. That record goes through
        ``process_many``, alone, and the next run starts after it; so the counts, dead
        letters, dedupe memory, watermark and rows are the per-event path's
        (``tests/streamer/test_lines.py``).
        """
        if self.keep_traces:
            raise ValueError("process_lines keeps no traces: make the processor with traces=False")
        self._rows_from_cells()  # cells counted before, by the per-event path, come first
        cuts: list[StepCut] = []
        taken = 0
        misses = 0  # runs in a row that could not start
        while taken < len(values):
            at = self._run(values, offsets, taken, step_s, cuts)
            if at > taken:
                taken, misses = at, 0
                continue
            # The line the run stopped at, by the per-event path; after runs that kept
            # stopping at once (every line with a field msgspec refuses, say: the checked path
            # keeps it), the next few lines too, so a failed run costs about one line's time.
            upto = min(len(values), taken + (1 << min(misses, 8)))
            misses += 1
            while taken < upto:
                one = self._step_end == math.inf  # until a watermark, a line at a time
                end = taken + 1 if one else upto
                clock = (
                    _NO_TIMESTAMPS
                    if self.clock_s is None
                    else itertools.repeat(self.clock_s * 1000.0)
                )
                taken += self.process_many(
                    values[taken:end], offsets[taken:end], clock, self._step_end
                )
                self._rows_from_cells()
                self._end_step(step_s, cuts)
        return cuts

    def _end_step(self, step_s: float, cuts: list[StepCut]) -> None:
        """Cut the open step if the watermark has reached its end (and set the next end)."""
        watermark = self.rollups.watermark
        if watermark >= self._step_end:
            cuts.append(self._cut(watermark))
        elif self._step_end != math.inf or watermark == -math.inf:
            return
        self._step_end = (watermark // step_s + 1) * step_s

    def _cut(self, watermark: float) -> StepCut:
        rows, self._rows = EventRows.joined(self._rows), []
        self._outputs([])
        return StepCut(rows, watermark, self.next_offset or 0)

    def _run(
        self,
        values: Sequence[bytes | None],
        offsets: Sequence[int],
        start: int,
        step_s: float,
        cuts: list[StepCut],
    ) -> int:
        """Count the run of records from ``start`` (``process_lines``); where it ended."""
        events, ts, tokens = vouched(values[start : start + RUN_LINES], self._decoder.decode)
        n = len(ts)
        if not n:
            return start
        ids = list(map(_id_of, events[:n]))
        buckets = (ts // BUCKET_S).astype(np.int64)
        repeated = self._repeated(ids)
        # The watermark before each record: the running most of the counted events' times
        # (a late event is before it, so counting it in changes nothing).
        counted_ts = ts if repeated is None else np.where(repeated, -math.inf, ts)
        watermark = self.rollups.watermark
        before = np.maximum.accumulate(np.concatenate(([watermark], counted_ts[:-1])))
        stale = ts < before - self.dedupe.horizon_s
        if self.clock_s is not None:  # too far ahead, as the per-event path judges it
            stale |= ts > self.clock_s + self.max_future_s
        if stale.any():  # the run ends before it: the per-event path dead-letters it
            n = int(stale.argmax())
            if not n:
                return start
            ts, tokens, before, buckets = ts[:n], tokens[:n], before[:n], buckets[:n]
        counted = np.ones(n, dtype=bool) if repeated is None else ~repeated[:n]
        self._remember(ids[:n], buckets, counted)
        kept = np.flatnonzero(counted)
        if len(kept) == n:  # no duplicate: the run's columns as they are
            rows = self._rows_of(events[:n], ts, tokens, before)
        else:
            rows = self._rows_of(
                list(map(events.__getitem__, kept.tolist())), ts[kept], tokens[kept], before[kept]
            )
        stats = self.stats
        stats.records += n
        stats.valid += len(kept)
        stats.duplicates += n - len(kept)
        self._cut_steps(rows, kept, before, offsets[start : start + n], step_s, cuts)
        if len(kept):
            self.rollups.watermark = max(watermark, float(ts[kept].max()))
        self.next_offset = offsets[start + n - 1] + 1
        self._end_step(step_s, cuts)  # the run's last record may end the open step
        return start + n

    def _rows_of(
        self, events: list[UsageEvent], ts: np.ndarray, tokens: np.ndarray, before: np.ndarray
    ) -> EventRows:
        """Counted events as rows: priced, in their minute and epoch (late ones, by the
        watermark ``before`` each, in a late epoch as ``RollupState.add`` puts them)."""
        cost, unpriced = self._costs(events, ts, tokens)
        rollups = self.rollups
        smallest, lateness_s = rollups.min_window_s, rollups.lateness_s
        late = (ts // smallest).astype(np.int64) * smallest + (smallest + lateness_s) <= before
        epoch = np.zeros(len(ts), dtype=np.int64)
        if late.any():
            epoch[late] = 1 + (before[late] // lateness_s).astype(np.int64)
            late_count = int(late.sum())
            rollups.late_events += late_count
            self.stats.late += late_count
        metrics = np.empty((len(ts), len(METRICS)), dtype=np.int64)
        metrics[:, COST] = np.rint(cost * NUSD)
        metrics[:, CALLS] = 1
        metrics[:, 2:7] = tokens  # input, cache read, cache write, output, reasoning
        metrics[:, 7] = unpriced
        return EventRows(
            (ts // 60).astype(np.int64) * 60, epoch, list(map(_attrs_of, events)), metrics
        )

    def _cut_steps(
        self,
        rows: EventRows,
        kept: np.ndarray,
        before: np.ndarray,
        offsets: Sequence[int],
        step_s: float,
        cuts: list[StepCut],
    ) -> None:
        """Add a run's rows (of its records ``kept``) to the open step, cutting it where the
        watermark ``before`` a record reaches the step's end."""
        end = self._step_end
        if end == math.inf:  # no watermark yet: the first step ends after the first event's
            first = int(np.searchsorted(before, -math.inf, side="right"))
            if first < len(before):
                end = (before[first] // step_s + 1) * step_s
        at = 0  # the open step's first row
        while (cut := int(np.searchsorted(before, end))) < len(before):
            upto = int(np.searchsorted(kept, cut))
            self._rows.append(rows.slice(at, upto))
            self.rollups.watermark = float(before[cut])
            self.next_offset = offsets[cut - 1] + 1
            cuts.append(self._cut(self.rollups.watermark))
            end = (before[cut] // step_s + 1) * step_s
            at = upto
        self._step_end = end
        self._rows.append(rows.slice(at, len(kept)))

    def _repeated(self, ids: list[str]) -> np.ndarray | None:
        """Which ids of a run are duplicates (seen before, whatever their hour, or earlier
        in the run), or None when none is; the dedupe memory is not changed."""
        seen = self.dedupe.seen
        if len(set(ids)) == len(ids) and seen.isdisjoint(ids):
            return None
        repeated = np.zeros(len(ids), dtype=bool)
        run: set[str] = set()
        for i, event_id in enumerate(ids):
            if event_id in run or event_id in seen:
                repeated[i] = True
            else:
                run.add(event_id)
        return repeated

    def _remember(self, ids: list[str], buckets: np.ndarray, counted: np.ndarray) -> None:
        """The counted ids into the dedupe memory, in order, each under its hour."""
        dedupe = self.dedupe
        if buckets.min() == buckets.max():  # a run within one hour (np.unique sorts)
            new = ids if counted.all() else list(itertools.compress(ids, counted.tolist()))
            dedupe.seen.update(new)
            dedupe.bucket(int(buckets[0])).extend(new)
            return
        for hour in np.unique(buckets).tolist():
            new = list(itertools.compress(ids, ((buckets == hour) & counted).tolist()))
            dedupe.seen.update(new)
            dedupe.bucket(hour).extend(new)

    def _costs(
        self, events: list[UsageEvent], ts: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each event's cost in dollars (its own, else the price table's, as ``price``
        computes it) and whether it is unpriced; unpriced models noted in order."""
        # None (no cost on the wire) reads as NaN, which a wire cost never is (msgspec
        # bounds it).
        cost = np.array(list(map(_cost_of, events)), dtype=np.float64)
        unpriced = np.zeros(len(events), dtype=np.int64)
        needed = np.flatnonzero(np.isnan(cost))
        if not len(needed):
            return cost, unpriced
        models = list(map(_model_of, map(events.__getitem__, needed.tolist())))
        numbers = {model: k for k, model in enumerate(dict.fromkeys(models))}
        model_at = np.array(list(map(numbers.__getitem__, models)), dtype=np.int64)
        # Each model's latest price as a row of ``rates`` (input, cache read, cache write,
        # output, reasoning, from when), gathered per event: one pass for every model.
        # NaN for a model with no price.
        rates = np.full((len(numbers), 6), np.nan)
        for (provider, model), k in numbers.items():
            latest = self.prices.lookup(provider, model, math.inf)
            if latest is not None:
                reasoning = latest.output if latest.reasoning is None else latest.reasoning
                rates[k] = (
                    latest.input,
                    latest.cache_read,
                    latest.cache_write,
                    latest.output,
                    reasoning,
                    latest.effective_from,
                )
        rate = rates[model_at]
        t = tokens[needed]
        uncached = np.maximum(t[:, 0] - t[:, 1] - t[:, 2], 0)
        visible = np.maximum(t[:, 3] - t[:, 4], 0)
        # The terms in ``ModelPrice.cost``'s order: the same float.
        cost[needed] = (
            uncached * rate[:, 0]
            + t[:, 1] * rate[:, 1]
            + t[:, 2] * rate[:, 2]
            + visible * rate[:, 3]
            + t[:, 4] * rate[:, 4]
        ) / 1_000_000
        missing = needed[np.isnan(rate[:, 5])]
        cost[missing] = 0.0
        # Before its model's latest price: each at its own date, as ``price`` does.
        for i in needed[ts[needed] < rate[:, 5]].tolist():
            row = self.prices.lookup(*_model_of(events[i]), float(ts[i]))
            assert row is not None
            cost[i] = row.cost(*tokens[i, [0, 3, 1, 2, 4]].tolist())
        for i in missing.tolist():
            unpriced[i] = 1
            self._unpriced(events[i].provider, events[i].model, float(ts[i]))
        return cost, unpriced

    def _handle(self, raw: bytes | None, offset: int, record_ts: float | None) -> None:
        if raw is None:
            self._dead("payload", "record has no value (tombstone)", b"", offset)
            return
        try:
            event = decode_event(raw)
        except InvalidEvent as exc:
            self._dead(exc.field, exc.reason, raw, offset)
            return
        self._count(event, raw, offset, record_ts)

    def _count(self, event: UsageEvent, raw: bytes, offset: int, record_ts: float | None) -> None:
        """Check event time, dedupe, price and roll up one valid event."""
        ts = event.ts
        # A record timestamp of -1 ms is Kafka's "none" (message format v0): no check.
        if record_ts is not None and record_ts >= 0 and ts > record_ts + self.max_future_s:
            than = (
                "after the record was written"
                if self.clock_s is None
                else "ahead of this machine's clock"
            )
            self._dead(
                "ts",
                f"is {ts - record_ts:.0f}s {than} "
                f"(limit {self.max_future_s:.0f}s): clock skew or a bogus timestamp",
                raw,
                offset,
            )
            return
        if ts < self.rollups.watermark - self.dedupe.horizon_s:
            self._dead(
                "ts",
                f"is older than the {self.dedupe.horizon_s / 86400:g}-day dedupe horizon; "
                "it cannot be checked for duplicates (replay it with a wider horizon)",
                raw,
                offset,
            )
            return
        if not self.dedupe.add(event.event_id, ts):
            self.stats.duplicates += 1
            return
        cost = event.cost_usd
        priced = True
        if cost is None:
            cost = self.prices.price(event)
            if cost is None:
                priced = False
                cost = 0.0
                self._unpriced(event.provider, event.model, ts)
        cost_nusd = round(cost * NUSD)
        if self.rollups.add(event, cost_nusd, priced):
            self.stats.late += 1
        if event.trace_id is not None and self.keep_traces:
            self.traces.add(event, cost_nusd, self.rollups.watermark)
        self.stats.valid += 1

    def _unpriced(self, provider: str, model: str, ts: float) -> None:
        self.stats.unpriced += 1
        models = self.stats.unpriced_models
        if model not in models and len(models) >= MAX_UNPRICED_MODELS:
            models[OTHER] = models.get(OTHER, 0) + 1  # names are the caller's
        else:
            models[model] = models.get(model, 0) + 1
        day = int(ts // 86400) * 86400
        if (provider, model, day) not in self.unpriced_seen:
            if not any(seen[2] == day for seen in self.unpriced_seen):
                self.alerts.append(unpriced_model_alert(provider, model, day, daily=True))
            self.unpriced_seen.add((provider, model, day))
            self.alerts.append(unpriced_model_alert(provider, model, day))

    def _dead(self, field_name: str, reason: str, raw: bytes, offset: int) -> None:
        self.stats.dead[field_name] = self.stats.dead.get(field_name, 0) + 1
        if len(self.first_dead) < self.first_dead_max:
            self.first_dead.append((offset, f"{field_name}: {reason}"))
        self.dead.append(
            DeadLetter(
                reason=f"{field_name}: {reason}",
                field=field_name,
                topic=self.topic,
                partition=self.partition,
                offset=offset,
                raw=bytes(raw[:RAW_LIMIT]).decode("utf-8", errors="backslashreplace"),
                raw_bytes=len(raw),
            )
        )

    def flush(self) -> Outputs:
        """Outputs accumulated since the last flush; dedupe memory past the horizon is dropped."""
        return self._outputs(self.rollups.flush())

    def cut(self) -> EventRows:
        """``flush`` for a reader that folds the rollups itself (replay's ``StepFold``): the
        events counted since the last cut as rows, in input order (fine cells, a row each,
        from the per-event path), without calls by outcome; this state's windows are not
        kept, and the other outputs are dropped (replay counts them in ``stats``)."""
        self._rows_from_cells()
        return self._cut(self.rollups.watermark).rows

    def _rows_from_cells(self) -> None:
        cells = self.rollups.take_cells()
        if cells:
            self._rows.append(rows_of_cells(cells))

    def _outputs(self, records: list[RollupRecord]) -> Outputs:
        watermark = self.rollups.watermark
        self.dedupe.expire(watermark)
        dead, self.dead = self.dead, []
        alerts, self.alerts = self.alerts, []
        horizon = watermark - 8 * 86400
        self.unpriced_seen = {k for k in self.unpriced_seen if k[2] >= horizon}
        return Outputs(records, dead, self.traces.flush(watermark), alerts)

    def snapshot(self) -> dict[str, Any]:
        with gc_paused():
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "next_offset": self.next_offset,
            "rollups": self.rollups.snapshot(),
            "traces": self.traces.snapshot(),
            "unpriced_seen": sorted(self.unpriced_seen),
            "stats": {
                "records": self.stats.records,
                "valid": self.stats.valid,
                "duplicates": self.stats.duplicates,
                "late": self.stats.late,
                "unpriced": self.stats.unpriced,
                "dead": self.stats.dead,
            },
        }

    def restore(self, data: dict[str, Any], dedupe_buckets: dict[int, list[str]]) -> None:
        with gc_paused():
            self._restore(data, dedupe_buckets)

    def _restore(self, data: dict[str, Any], dedupe_buckets: dict[int, list[str]]) -> None:
        self.next_offset = data.get("next_offset")
        self.rollups.restore(data["rollups"])
        self.traces.restore(data.get("traces", []))
        self.unpriced_seen = {tuple(k) for k in data.get("unpriced_seen", [])}  # type: ignore[misc]
        self.dedupe.restore(dedupe_buckets)
        stats = data.get("stats", {})
        self.stats = ProcessorStats(
            records=stats.get("records", 0),
            valid=stats.get("valid", 0),
            duplicates=stats.get("duplicates", 0),
            late=stats.get("late", 0),
            unpriced=stats.get("unpriced", 0),
            dead=dict(stats.get("dead", {})),
        )
