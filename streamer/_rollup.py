"""Event-time tumbling-window rollups for one input partition: pure, no I/O.

The hot path adds each event to one *fine cell* (its minute and all its
attributes); ``flush()`` folds the fine cells into every configured dimension
set and window size and returns the changed windows as ABSOLUTE totals. Output
records are keyed by (series, window, partition, epoch), so re-emitting after a
restart overwrites instead of adding, and readers sum across partitions and
epochs (``RollupTotals``).

Windows close on event time: the watermark is the largest ``ts`` seen, and a
window closes once the watermark passes its end plus ``lateness_s``. A later
event still counts, as a correction in its own *late epoch* (numbered by the
watermark's lateness period when it arrived), so closed windows need no memory
and an emitted final total is never overwritten by a partial one.
Costs are summed as integer nano-dollars: totals are exact and independent of
the order events arrive in.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import sys
import weakref
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from spendbrake.schemas import (
    KEY_DIMENSIONS,
    METRICS,
    OTHER,
    ROLLUP_WINDOWS_S,
    SCOPE_FIELDS,
    RollupRecord,
    UsageEvent,
)

WINDOWS_S = ROLLUP_WINDOWS_S
#: Fine-cell attribute order; dimension sets index into it.
ATTRS = SCOPE_FIELDS
#: Attribute combinations whose projections a partition keeps at hand (``_combos``).
MAX_COMBOS = 512
#: Outcome names a window counts calls under; the calls of any other outcome it counts
#: under ``OTHER``. Outcomes are the caller's strings (up to 512 characters each): 6,000
#: distinct ones in one window made a 1.2 MB record, over Kafka's default 1 MB limit.
MAX_OUTCOMES = 100
_KEYED = frozenset(KEY_DIMENSIONS)
_N = len(METRICS)
#: The totals after the cost: calls, tokens, unpriced calls (``SpanTotals.counts``).
_C = _N - 1

log = logging.getLogger(__name__)

#: (window_s, window_start, epoch, index of the dimension set): one window of one set.
Span = tuple[int, int, int, int]
#: (index of the dimension set, its values): one series.
Series = tuple[int, tuple[str | None, ...]]
#: A series' values: its row's key in its set's window (the set is the window's).
Values = tuple[str | None, ...]
#: (series, grain, window sizes): where a fine cell's deltas go in one dimension set.
Projected = tuple[Series, int, tuple[int, ...]]
#: Where a group of fine cells goes in the sets its key decides: (the grain they share,
#: their projections).
Placed = tuple[int, tuple[Projected, ...]]
#: One attribute combination: (the grain all its sets share, its key's attributes, the
#: key's ``Placed``, the ``Placed`` of the other sets).
Combo = tuple[int, tuple[Any, ...], Placed, Placed]
MINUTE = 60


class RollupState:
    """Open windows of one partition.

    Parameters
    ----------
    dimensions
        Attribute sets to roll up by; ``()`` is the global total.
    lateness_s
        How long after its end a window still takes events in place.
    windows_s
        Tumbling window sizes in seconds; each must be a multiple of 60.
    dim_windows_s
        Window sizes per dimension set (parallel to ``dimensions``), for a reader that
        needs less than every size of every set: replay's detectors read hours, and
        minutes only of budget scopes. An empty entry leaves that set out. Default:
        ``windows_s`` for every set.
    finals
        Emit every closing window once more, marked ``final`` (the store keeps the flag).
        Off for a reader that only wants changes (replay): a window is then emitted when
        it changed, never just because it closed.
    minute_values
        Per dimension set (parallel to ``dimensions``), the series (values) whose minute
        windows are rolled up; None for a set: all of them. Replay's watch reads minutes of
        budget scopes only, and minute windows were nearly half of its records.
    series_table
        Shared with the other partitions this process rolls up, so a series seen on
        several of them is held as one tuple (``SeriesTable``). Default: a table of its own.
    """

    def __init__(
        self,
        dimensions: Sequence[Sequence[str]],
        partition: int = 0,
        lateness_s: float = 600.0,
        windows_s: Sequence[int] = WINDOWS_S,
        dim_windows_s: Sequence[Sequence[int]] | None = None,
        finals: bool = True,
        minute_values: Sequence[Collection[tuple[str | None, ...]] | None] | None = None,
        series_table: SeriesTable | None = None,
    ) -> None:
        self.dimensions = [tuple(d) for d in dimensions]
        self.finals = finals
        self.partition = partition
        self.lateness_s = lateness_s
        if dim_windows_s is None:
            dim_windows_s = [windows_s] * len(self.dimensions)
        self._plan(dim_windows_s, minute_values)
        self.watermark = -math.inf
        #: (minute, epoch, *attrs) -> metric deltas since the last flush (+ outcomes at _N)
        self.fine: dict[tuple[Any, ...], list[Any]] = {}
        #: Open windows: (window_s, window_start, epoch, set index) -> the absolute totals of
        #: every series of that set in that span (``SpanTotals``: a row of numbers per
        #: series, keyed by its values). Nested, so a window costs a dict entry and a row, not
        #: a key tuple and a list of its own: a series' windows share its one values tuple.
        self.windows: dict[Span, SpanTotals] = {}
        #: (span, values) -> calls by outcome, for the windows that have any.
        self.outcomes: dict[tuple[Span, Values], dict[str, int]] = {}
        #: close time -> spans that close then
        self._closing: dict[float, list[Span]] = {}
        #: One values tuple per open series, shared with the process' other partitions.
        self._table = SeriesTable() if series_table is None else series_table
        self._table.attach(self)
        #: A fine cell's attributes -> where its deltas go in every set: the projections
        #: of a flush are mostly of combinations seen before (a cache, bounded).
        self._combos: dict[tuple[Any, ...], Combo] = {}
        #: The key's attributes -> its part of ``_combos``' value (the sets it decides).
        self._by_key: dict[tuple[Any, ...], Placed] = {}
        self.late_events = 0

    def set_windows(
        self,
        dim_windows_s: Sequence[Sequence[int]],
        minute_values: Sequence[Collection[tuple[str | None, ...]] | None] | None = None,
    ) -> None:
        """Roll up these window sizes (and minutes of these series) from the next flush on,
        as the constructor's arguments of the same names: a reloaded config's budgets.
        Windows already open stay until they close."""
        self._plan(dim_windows_s, minute_values)
        self._combos = {}
        self._by_key = {}

    def _plan(
        self,
        dim_windows_s: Sequence[Sequence[int]],
        minute_values: Sequence[Collection[tuple[str | None, ...]] | None] | None,
    ) -> None:
        if len(dim_windows_s) != len(self.dimensions):
            raise ValueError("dim_windows_s needs one entry per dimension set")
        self.dim_windows_s = [tuple(sorted(set(ws))) for ws in dim_windows_s]
        if minute_values is None:
            minute_values = [None] * len(self.dimensions)
        if len(minute_values) != len(self.dimensions):
            raise ValueError("minute_values needs one entry per dimension set")
        self._minute_values = [None if v is None else frozenset(v) for v in minute_values]
        self.windows_s = tuple(sorted({w for ws in self.dim_windows_s for w in ws}))
        if not self.windows_s or any(w <= 0 or w % 60 for w in self.windows_s):
            raise ValueError(f"window sizes must be whole minutes, got {self.windows_s}")
        # Fine-cell keys are (minute, epoch, *ATTRS): attributes start at index 2.
        # Per set: its projector, its grain (the largest span dividing all its window
        # sizes: an hours-only set is summed by the hour before its windows are touched)
        # and sizes, and for the series outside ``minute_values`` the same without minutes.
        self._project = []
        for d, dims in enumerate(self.dimensions):
            sizes = self.dim_windows_s[d]
            if not sizes:
                continue
            only = self._minute_values[d] if MINUTE in sizes else None
            rest = tuple(w for w in sizes if w != MINUTE)
            self._project.append(
                (
                    d,
                    _projector(tuple(2 + ATTRS.index(a) for a in dims)),
                    (functools.reduce(math.gcd, sizes), sizes),
                    only,
                    (functools.reduce(math.gcd, rest), rest) if rest else None,
                )
            )
        # The sets a key's attributes decide (team, api_key...) apart from the others
        # (customer, model: a key calls for many): a new customer seen on a known key needs
        # only its own sets projected (a flood of customers stays cheap).
        by_key = [set(self.dimensions[spec[0]]) <= _KEYED for spec in self._project]
        keyed = [spec for spec, k in zip(self._project, by_key, strict=True) if k]
        self._per_key = (_projector(tuple(2 + ATTRS.index(a) for a in KEY_DIMENSIONS)), keyed)
        self._per_call = [spec for spec, k in zip(self._project, by_key, strict=True) if not k]
        self.min_window_s = min(self.windows_s)

    # -- hot path ----------------------------------------------------------

    def add(self, event: UsageEvent, cost_nusd: int, priced: bool) -> bool:
        """Count one unique, valid event; return True if it arrived late (a correction).

        An event whose smallest window has closed is late: it goes, for every
        window size, into the late epoch of the watermark's current lateness
        period, a separate record that readers add to the on-time one.
        """
        ts = event.ts
        watermark = self.watermark
        minute = int(ts // 60) * 60
        smallest = self.min_window_s
        if int(ts // smallest) * smallest + smallest + self.lateness_s <= watermark:
            epoch = 1 + int(watermark // self.lateness_s)
            self.late_events += 1
        else:
            epoch = 0
            if ts > watermark:
                self.watermark = ts
        # One flat tuple: (minute, epoch, *ATTRS).
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
        cell = self.fine.get(key)
        if cell is None:
            cell = self.fine[key] = [0, 0, 0, 0, 0, 0, 0, 0, None]
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
        return epoch != 0

    # -- flush -------------------------------------------------------------

    def take_cells(self) -> dict[tuple[Any, ...], list[Any]]:
        """The fine cells since the last call, for a reader that folds them into windows
        itself (replay's ``StepFold``, many steps at once); this state's windows are then
        not kept."""
        cells, self.fine = self.fine, {}
        return cells

    def projections(self) -> list[tuple[Any, ...]]:
        """Per rolled-up set: (set index, projector of a fine cell's key to the series'
        values, (grain, window sizes), the series whose minutes are rolled up or None for
        all, (grain, sizes) without minutes or None)."""
        return list(self._project)

    def flush(self) -> list[RollupRecord]:
        """Fold fine cells into windows; return changed windows and those closing now."""
        if self._table.prune():
            self._combos = {}
            self._by_key = {}
        # Stage 0: the cells of one attribute combination within one grain its sets all
        # share (an hour, for hours-only sets: a flush's cells hold about half as many
        # combinations as minutes) are summed, and so are those of one key for the sets
        # the key decides (a key calls for many customers and models).
        groups: dict[tuple[Any, ...], tuple[Combo, list[Any]]] = {}
        combos = self._combos
        for cell, delta in self.fine.items():
            attrs = cell[2:]
            combo = combos.get(attrs)
            if combo is None:
                if len(combos) >= MAX_COMBOS:
                    combos.clear()  # a flood of new combinations: start over
                combo = combos[attrs] = self._combo(cell)
            shared = combo[0]
            group_key = (cell[0] // shared * shared, cell[1], attrs)
            group = groups.get(group_key)
            if group is None:
                groups[group_key] = (combo, delta)  # the fine cell's own list: cleared below
            else:
                _add(group[1], delta)
        key_groups: dict[tuple[Any, ...], list[Any]] = {}
        for (minute, epoch, _), (combo, delta) in groups.items():
            grain = combo[2][0]
            key = (minute // grain * grain, epoch, combo[1])
            acc = key_groups.get(key)
            if acc is None:
                key_groups[key] = _copy(delta)
            else:
                _add(acc, delta)
        # Stage 1: one delta per (series, window sizes, grain start, epoch): the key's sets
        # from its group, at its first cell, then the other sets from the combination's.
        # Parts come out in the order they did cell by cell: a part's first cell is the
        # first of its group, and groups go in the order of their first cells.
        parts: dict[tuple[Any, ...], list[Any]] = {}
        get = parts.get
        for (minute, epoch, _), (combo, own) in groups.items():
            grain = combo[2][0]
            key_delta = key_groups.pop((minute // grain * grain, epoch, combo[1]), None)
            for delta, projected in ((key_delta, combo[2][1]), (own, combo[3][1])):
                if delta is None:
                    continue  # the key's sets took its group at its first combination
                for series, grain, sizes in projected:
                    key = (series, sizes, minute // grain * grain, epoch)
                    acc = get(key)
                    if acc is None:
                        parts[key] = _copy(delta)
                    else:  # _add, inlined: a flush makes about three of these an event
                        acc[0] += delta[0]
                        acc[1] += delta[1]
                        acc[2] += delta[2]
                        acc[3] += delta[3]
                        acc[4] += delta[4]
                        acc[5] += delta[5]
                        acc[6] += delta[6]
                        acc[7] += delta[7]
                        if delta[8]:
                            _merge_outcomes(acc, delta[8])
        self.fine.clear()
        # Stage 2: grain deltas -> every window size of the set.
        windows = self.windows
        outcomes = self.outcomes
        # Insertion-ordered, not a set: the records' order decides which series a capped set
        # keeps, and a set's order follows the per-process string hash seed.
        dirty: dict[tuple[Span, Values], None] = {}
        for ((d, values), sizes, start, epoch), delta in parts.items():
            for w in sizes:
                span = (w, start // w * w, epoch, d)
                totals = windows.get(span)
                if totals is None:
                    totals = windows[span] = SpanTotals()
                    self._closing.setdefault(self._close_at(span), []).append(span)
                totals.add(values, delta)
                if delta[_N]:
                    _add_outcomes(outcomes, (span, values), delta[_N])
                dirty[span, values] = None
        closing: list[Span] = []
        for close_at in [t for t in self._closing if t <= self.watermark]:
            closing.extend(self._closing.pop(close_at))
        closed = set(closing)
        records = self._records([key for key in dirty if key[0] not in closed] if closed else dirty)
        for span in closing:
            rows = windows[span].rows
            if self.finals:
                records.extend(self._records(((span, values) for values in rows), final=True))
            else:
                records.extend(
                    self._records((span, values) for values in rows if (span, values) in dirty)
                )
            if outcomes:
                for values in rows:
                    outcomes.pop((span, values), None)
            del windows[span]
        return records

    def _combo(self, cell: tuple[Any, ...]) -> Combo:
        """Where a fine cell's attributes go in every rolled-up set: the sets its key
        decides, from their own cache, then the others; and the grain they all share.

        Each series is (set index, values), its values the one interned tuple the series table
        holds (the key of its rows too).
        """
        key_of, keyed = self._per_key
        key = key_of(cell)
        by_key = self._by_key.get(key)
        if by_key is None:
            if len(self._by_key) >= MAX_COMBOS:
                self._by_key.clear()
            by_key = self._by_key[key] = self._place(keyed, cell)
        others = self._place(self._per_call, cell)
        shared = math.gcd(by_key[0], others[0]) or MINUTE
        return shared, key, (by_key[0] or shared, by_key[1]), others

    def _place(self, specs: list[Any], cell: tuple[Any, ...]) -> Placed:
        """The cell's series in each of ``specs``' sets, and the grain they share (a divisor
        of each one's: a group of cells within it lands in one grain of every set; 0: no
        set)."""
        known = self._table.known
        shared = 0
        out = []
        for d, project, windows, only, without_minutes in specs:
            values = project(cell)
            if only is not None and values not in only:
                if without_minutes is None:
                    continue
                windows = without_minutes
            interned = known.get(values)
            if interned is None:
                interned = _interned(values)
                known[interned] = interned
            out.append(((d, interned), *windows))
            shared = math.gcd(shared, windows[0])
        return shared, tuple(out)

    def _close_at(self, span: Span) -> float:
        w, start, epoch, _ = span
        if epoch == 0:
            return start + w + self.lateness_s
        # A late epoch gathers corrections for one lateness period of the watermark.
        return (epoch + 1) * self.lateness_s

    def _records(
        self, span_values: Iterable[tuple[Span, Values]], final: bool = False
    ) -> list[RollupRecord]:
        """A record of each (span, series' values): its absolute totals, its outcomes."""
        dimensions = self.dimensions
        partition = self.partition
        windows = self.windows
        outcomes = self.outcomes
        out = []
        for span, values in span_values:
            w, start, epoch, d = span
            totals = windows[span]
            counts = outcomes.get((span, values)) if outcomes else None
            if counts is None:
                counts = {}
            elif len(counts) > MAX_OUTCOMES + 1:  # restored from a snapshot saved before the cap
                counts = _capped_outcomes({}, counts)
            out.append(
                RollupRecord(
                    dimensions[d],
                    values,
                    w,
                    start,
                    partition,
                    epoch,
                    totals.row(totals.rows[values]),
                    dict(counts),
                    final,
                )
            )
        return out

    # -- state -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data; call right after ``flush()`` (fine cells are then empty)."""
        if self.fine:
            raise RuntimeError("snapshot() needs a flush() first")
        outcomes = self.outcomes
        return {
            "watermark": None if self.watermark == -math.inf else self.watermark,
            "late_events": self.late_events,
            # The sets by their fields: a window names its set by index, and a config change
            # (a budget on new fields) can move a set to another index before a restore.
            "dimensions": [list(d) for d in self.dimensions],
            # Each value as before: the metrics, then the outcomes (or None).
            "windows": [
                [[span[3], list(values), *span[:3]], [*v, outcomes.get((span, values))]]
                for span, totals in self.windows.items()
                for values, v in totals.items()
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        watermark = data.get("watermark")
        self.watermark = -math.inf if watermark is None else watermark
        self.late_events = data.get("late_events", 0)
        self.fine = {}
        self.windows = {}
        self.outcomes = {}
        self._closing = {}
        self._combos = {}
        self._by_key = {}
        known = self._table.known
        moved = _moved_sets(data.get("dimensions"), self.dimensions)
        for k, v in data.get("windows", []):
            values = tuple(k[1])
            if moved is not None:
                to = moved.get(k[0])
                if to is None:
                    continue  # a set no longer rolled up
                k = [to[0], *k[1:]]
                values = tuple(values[i] for i in to[1])
            elif not (0 <= k[0] < len(self.dimensions)) or len(values) != len(
                self.dimensions[k[0]]
            ):
                # A snapshot of before 2026-12-07, under other sets: not this set's window.
                log.warning(
                    "snapshot window of set %s %s is not in this config's sets", k[0], values
                )
                continue
            shared = known.get(values)
            if shared is None:
                shared = _interned(values)
                known[shared] = shared
            span = (k[2], k[3], k[4], k[0])
            totals = self.windows.get(span)
            if totals is None:
                totals = self.windows[span] = SpanTotals()
                self._closing.setdefault(self._close_at(span), []).append(span)
            totals.add(shared, v)
            if len(v) > _N and v[_N]:
                self.outcomes[(span, shared)] = dict(v[_N])

    def open_windows(self) -> int:
        return sum(len(totals.rows) for totals in self.windows.values())


def _moved_sets(
    saved: Sequence[Sequence[str]] | None, dimensions: Sequence[tuple[str, ...]]
) -> dict[int, tuple[int, list[int]]] | None:
    """Saved set index -> (this config's index of the set of the same fields, where each of
    its fields sits in the saved values); None for a snapshot that names no sets."""
    if saved is None:
        return None
    where = {tuple(sorted(d)): i for i, d in enumerate(dimensions)}
    out = {}
    for j, fields in enumerate(saved):
        i = where.get(tuple(sorted(fields)))
        if i is not None:
            out[j] = (i, [list(fields).index(f) for f in dimensions[i]])
    return out


class SeriesTable:
    """The values tuple of each open series, for every partition of a process.

    A key's calls land on several input partitions (events are keyed by ``event_id``), and
    each partition's windows are keyed by the series: one shared tuple per series, not one
    per partition, saves about 90 bytes a series and partition. Identity only saves
    memory (rows are found by equality), so the table may forget any time: it does once it
    holds twice the open windows of its partitions, whose series have mostly closed.
    """

    __slots__ = ("_states", "known")

    def __init__(self) -> None:
        self.known: dict[Values, Values] = {}
        self._states: weakref.WeakSet[RollupState] = weakref.WeakSet()

    def attach(self, state: RollupState) -> None:
        self._states.add(state)

    def prune(self) -> bool:
        """Forget every series when most have closed; True if it did."""
        held = len(self.known)
        if held <= 10_000 or held <= 2 * sum(s.open_windows() for s in self._states) + 10_000:
            return False
        self.known = {}
        return True


def _interned(values: Values) -> Values:
    """A series' values with its attribute strings interned: the partitions of one process
    hold the same key and team names, each decoded from its own events."""
    if len(values) == 1:  # most sets: no generator for one value
        v = values[0]
        return (None if v is None else sys.intern(v),)
    return tuple(None if v is None else sys.intern(v) for v in values)


def _projector(indices: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A fast attrs -> values function; itemgetter returns a bare item for one index."""
    if not indices:
        return lambda attrs: ()
    if len(indices) == 1:
        only = indices[0]
        return lambda attrs: (attrs[only],)
    return operator.itemgetter(*indices)


#: One int object per row number, shared by every span of every partition: an int past 256
#: is an object of its own (28 bytes), and each series had one in each of its open windows.
#: Grown by ``_GROW`` at a time: doubling left up to as many spare ints as rows in use.
_ROW_NUMBERS: list[int] = []
_GROW = 4096


def _row_number(n: int) -> int:
    _ROW_NUMBERS.extend(range(len(_ROW_NUMBERS), n + _GROW))
    return _ROW_NUMBERS[n]


class SpanTotals:
    """The absolute totals of every series in one window span of one set, a row each.

    ``rows`` numbers the series, by their values (the set is the window's). Costs
    (nano-dollars, which pass int32 within seconds of a busy key) are one int64 each in
    ``cost``; the other ``_N - 1`` totals (calls, tokens, unpriced calls) are int32 row after
    row in ``counts``, until one passes int32 and the span's counts become int64. 36 bytes a
    series in a span, where 64 all int64 took: about 6 spans a series at 100k series (three
    partitions' days and hours). A total past int64 turns its column into a list of Python
    ints, so sums stay exact whatever they reach.

    >>> t = SpanTotals()
    >>> t.add(("k",), [5, 1, 0, 0, 0, 0, 0, 0, None])
    >>> t.add(("k",), [2**63, 2**31, 0, 0, 0, 0, 0, 0])
    >>> t.get(("k",)), type(t.cost).__name__, t.counts.typecode
    ((9223372036854775813, 2147483649, 0, 0, 0, 0, 0, 0), 'list', 'q')
    """

    __slots__ = ("cost", "counts", "rows")

    def __init__(self) -> None:
        self.rows: dict[Values, int] = {}
        self.cost: array[int] | list[int] = array("q")
        self.counts: array[int] | list[int] = array("i")

    def add(self, series: Values, delta: Sequence[Any]) -> None:
        """Add the first ``_N`` values of ``delta`` to the series' row (a new row: set it)."""
        row = self.rows.get(series)
        if row is None:
            n = len(self.rows)
            self.rows[series] = _ROW_NUMBERS[n] if n < len(_ROW_NUMBERS) else _row_number(n)
            try:
                self.cost.append(delta[0])
            except OverflowError:
                self.cost = [*self.cost, delta[0]]
            self._put(n * _C, delta[1:_N], new=True)
            return
        cost = self.cost
        try:
            cost[row] += delta[0]
        except OverflowError:
            cost = self.cost = list(cost)
            cost[row] += delta[0]
        counts = self.counts
        i = row * _C
        self._put(
            i,
            (
                counts[i] + delta[1],
                counts[i + 1] + delta[2],
                counts[i + 2] + delta[3],
                counts[i + 3] + delta[4],
                counts[i + 4] + delta[5],
                counts[i + 5] + delta[6],
                counts[i + 6] + delta[7],
            ),
        )

    def _put(self, i: int, values: Sequence[int], new: bool = False) -> None:
        """Write one row's counts at ``i`` (append them: ``new``), widening the column once
        a value does not fit: int32, then int64, then Python ints."""
        counts = self.counts
        while True:
            try:
                if type(counts) is list:
                    part: Sequence[int] = values
                else:
                    part = array(counts.typecode, values)  # all or nothing
                if new:
                    counts.extend(part)  # type: ignore[arg-type]
                else:
                    counts[i : i + _C] = part  # type: ignore[assignment]
                return
            except OverflowError:
                counts = self.counts = (
                    array("q", counts) if counts.typecode == "i" else list(counts)  # type: ignore[union-attr]
                )

    def get(self, series: Values) -> tuple[int, ...]:
        return self.row(self.rows[series])

    def row(self, row: int) -> tuple[int, ...]:
        """The ``_N`` totals of row ``row``, in ``METRICS`` order."""
        i = row * _C
        return (self.cost[row], *self.counts[i : i + _C])

    def items(self) -> Iterator[tuple[Values, tuple[int, ...]]]:
        row = self.row
        for series, n in self.rows.items():
            yield series, row(n)


def _add_outcomes(outcomes: dict[Any, dict[str, int]], key: Any, delta: dict[str, int]) -> None:
    """Add a delta's calls by outcome to the window ``key``'s, capped (``_capped_outcomes``)."""
    total = outcomes.get(key)
    if total is None:
        total = outcomes[key] = {}
    _capped_outcomes(total, delta)


def _capped_outcomes(total: dict[str, int], delta: dict[str, int]) -> dict[str, int]:
    """Add ``delta`` to ``total`` (returned): a name it does not hold yet only while it holds
    fewer than ``MAX_OUTCOMES`` names, the calls of any other under ``OTHER``."""
    for name, count in delta.items():
        if name in total:
            total[name] += count
        elif len(total) < MAX_OUTCOMES:
            total[name] = count
        else:
            total[OTHER] = total.get(OTHER, 0) + count
    return total


def _add(total: list[Any], delta: list[Any]) -> None:
    """Add a delta (``_N`` metrics, then calls by outcome or None) to ``total``, in place."""
    total[0] += delta[0]
    total[1] += delta[1]
    total[2] += delta[2]
    total[3] += delta[3]
    total[4] += delta[4]
    total[5] += delta[5]
    total[6] += delta[6]
    total[7] += delta[7]
    if delta[_N]:
        _merge_outcomes(total, delta[_N])


def _copy(delta: list[Any]) -> list[Any]:
    out = delta[:]
    if out[_N]:
        out[_N] = dict(out[_N])
    return out


def _merge_outcomes(total: list[Any], counts: dict[str, int]) -> None:
    """Add a delta's calls by outcome to ``total``'s (its last slot)."""
    outcomes = total[_N]
    if outcomes is None:
        total[_N] = dict(counts)
    else:
        for name, count in counts.items():
            outcomes[name] = outcomes.get(name, 0) + count


class RollupTotals:
    """Merge rollup records into per-series window totals (the reader's side).

    Keeps the latest record per key, so re-emitted records overwrite, and sums
    across partitions and late epochs.
    """

    def __init__(self) -> None:
        self.latest: dict[bytes, RollupRecord] = {}

    def update(self, records: Iterable[RollupRecord]) -> None:
        for record in records:
            self.latest[record.key()] = record

    def totals(
        self, dims: Sequence[str], window_s: int
    ) -> dict[tuple[tuple[str | None, ...], int], list[int]]:
        """(values, window_start) -> summed metrics for one dimension set and window size."""
        dims = tuple(dims)
        out: dict[tuple[tuple[str | None, ...], int], list[int]] = {}
        for record in self.latest.values():
            if record.dims != dims or record.window_s != window_s:
                continue
            total = out.setdefault((record.values, record.window_start), [0] * _N)
            for i, value in enumerate(record.metrics):
                total[i] += value
        return out
