"""Replay's flush, many early-look steps at once, with arrays.

Replay cuts its input where the watermark reaches each early-look step and hands the watch
every window that changed in the step, with its absolute totals. ``RollupState.flush`` does
that one step at a time, a dict operation per cell, set and window (about 4.5 us a record on
the 1M-event benchmark, half of the rollup half's time). ``StepFold`` takes the events of
many steps as rows (``EventRows``, from ``PartitionProcessor.process_lines`` or ``cut``) and
folds them with numpy: the rows summed into fine cells (a sort of the fold's rows), then per
set and window size one sort of the cells by (series, window, epoch, step), sums per step,
running sums per window (its totals carried from the steps before), and each step's changed
windows handed over as columns, a block per set and window size (``RollupColumns``), not a
record each. A set whose dimensions another set holds (team in team and feature) sums that
set's sums per step, not the cells again (a fifth as many rows on the 1M-event benchmark);
sorts are by 16-bit digits of one key (``_lex_order``: numpy's radix sort).

The blocks hold the flush's records, step by step, with ``finals=False`` (replay's: a window
is emitted when it changed, never because it closed) and without calls by outcome (the watch
never reads them; the store, which does, is fed by the live flush), as
``tests/streamer/test_columnar.py`` checks. Within a step they come by set and window size,
each block's rows in the order their windows first changed (the flush interleaved the sets;
no reader of replay's records depends on their order across sets, and the 1M-event and
flood replays give the same alerts with each step's records shuffled).

A window closes as in ``RollupState``: on time, ``lateness_s`` after its end; a late epoch
once the watermark leaves its lateness period. No event reaches a closed window (it would be
late, or in a later epoch), so a window's totals are carried until the last step of a fold
has closed it. Totals are exact: int64 while every sum a fold can make fits, Python ints
(object arrays) past that.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from spendbrake.schemas import KEY_DIMENSIONS, METRICS, RollupColumns

from ._lines import EventRows
from ._packed import IntColumns, PackedColumns
from ._rollup import ATTRS, MINUTE, RollupState, _interned

__all__ = ["StepFold"]

_N = len(METRICS)
#: Past this a fold's sums may leave int64: it sums in Python ints instead.
_INT64_SAFE = float(2**62)
#: How a combination's series takes part in a set: not at all, without minute windows,
#: with every window size of the set.
_NONE, _NO_MINUTES, _ALL = 0, 1, 2
_KEYED = frozenset(KEY_DIMENSIONS)
#: Combinations numbered before they are forgotten (``StepFold._forget``): the 1M-event
#: benchmark has about 16,000, a flood of 200,000 customers about 455,000 (which held
#: 475 MB where this holds 123).
MAX_COMBOS = 8192

#: A step's block: records as columns, or their numbers in msgpack already (``fold(packed=True)``).
Block = RollupColumns | PackedColumns
#: A fine cell: (minute, epoch, *attrs) -> metric deltas, then calls by outcome or None.
Cells = dict[tuple[Any, ...], list[Any]]


class _Window:
    """One (set, window size) of a fold: its open windows' totals, carried between folds."""

    __slots__ = ("carry", "spec", "w")

    def __init__(self, spec: int, w: int) -> None:
        self.spec = spec
        self.w = w
        #: (series ids, window starts, epochs, totals) of the windows still open.
        self.carry: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


class StepFold:
    """Folds the fine cells of consecutive steps of one ``RollupState`` into their records,
    as columns (``RollupColumns``).

    Parameters
    ----------
    state
        The rollup state whose cells are folded (its sets, window sizes, minute series,
        partition and lateness); its own windows are not used.
    """

    def __init__(self, state: RollupState) -> None:
        self.partition = state.partition
        self.lateness_s = state.lateness_s
        specs = state.projections()
        # The sets a key's attributes decide first (as the flush orders them), placed once
        # per key: a flood of new customers on known keys places only their own sets.
        keyed = [set(state.dimensions[spec[0]]) <= _KEYED for spec in specs]
        self._specs = [s for s, k in zip(specs, keyed, strict=True) if k]
        self._keyed = len(self._specs)
        self._specs += [s for s, k in zip(specs, keyed, strict=True) if not k]
        self._key_of = operator.itemgetter(*(2 + ATTRS.index(a) for a in KEY_DIMENSIONS))
        self._dims = [state.dimensions[spec[0]] for spec in self._specs]
        #: A cell's attributes -> its combination's number; a key -> its sets' places.
        self._combos: dict[tuple[Any, ...], int] = {}
        self._by_key: dict[tuple[Any, ...], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        #: Per combination (row) and set (column): its series' id, and how it takes part;
        #: rows grown by doubling, filled up to the combinations placed before this fold.
        self._sid_table = np.zeros((0, len(self._specs)), dtype=np.int64)
        self._flag_table = np.zeros((0, len(self._specs)), dtype=np.int8)
        self._placed = 0
        #: (series ids, flags) of the combinations numbered since: a row each, a column a set.
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        #: Per set: series values -> id, and id -> the values (one interned tuple each).
        self._ids: list[dict[tuple[Any, ...], int]] = [{} for _ in self._specs]
        self._values: list[list[tuple[Any, ...]]] = [[] for _ in self._specs]
        self._windows = [_Window(j, w) for j, spec in enumerate(self._specs) for w in spec[2][1]]
        self._sources = self._summed_from()
        #: The windows in the order they are folded: each after those it is summed from.
        self._order = sorted(range(len(self._windows)), key=lambda i: -len(self._dims_of(i)))
        #: The steps taken since the last fold: (minutes, epochs, attributes, metrics).
        self._taken: list[tuple[np.ndarray, np.ndarray, list[tuple[Any, ...]], np.ndarray]] = []
        self._marks: list[float] = []
        #: Rows taken since the last fold.
        self.held = 0

    def take(self, rows: EventRows, watermark: float) -> None:
        """Hold one step's events (``PartitionProcessor.cut`` or ``process_lines``) and its
        watermark."""
        self._taken.append((rows.minute, rows.epoch, rows.attrs, rows.metrics))
        self._marks.append(watermark)
        self.held += len(rows.minute)

    def _dims_of(self, i: int) -> set[str]:
        return set(self._dims[self._windows[i].spec])

    def _every_cell(self, window: _Window) -> bool:
        """Whether the window takes every cell (``_taken``; as ``_place`` flags them): all
        series roll it up, or all but minutes, and it is not a minute window."""
        _, _, _, only, without_minutes = self._specs[window.spec]
        return only is None or (window.w != MINUTE and without_minutes is not None)

    def _summed_from(self) -> list[int | None]:
        """Per window, the window of the same size whose set has this one's dimensions and
        more (the fewest more), if both take every cell: its sums per (series, window, step)
        sum further into this one's, where the fold's cells are several times as many rows
        (the 1M-event benchmark: 96k against 534k a set)."""
        sources: list[int | None] = []
        for k, window in enumerate(self._windows):
            finer = [
                i
                for i, other in enumerate(self._windows)
                if other.w == window.w
                and self._dims_of(k) < self._dims_of(i)
                and self._every_cell(other)
            ]
            if not self._every_cell(window):
                finer = []
            sources.append(min(finer, key=lambda i: len(self._dims_of(i)), default=None))
        return sources

    def fold(
        self, packed: bool = False, sent_metrics: int | None = None
    ) -> Iterator[tuple[list[Block], float]]:
        """The blocks (records as columns) and watermark of each step taken since the last
        fold, in order.

        The arrays are worked out at once (the next fold starts from this one's open
        windows); each step's blocks are sliced as the iterator reaches it. ``packed``:
        blocks with their numbers in msgpack (``PackedColumns``) where they fit int64, for
        a reader that only sends them on (replay's rollup child), with their first
        ``sent_metrics`` metrics only (None: all), those that reader's reader reads."""
        taken, marks = self._taken, self._marks
        if not taken:
            return iter(())
        self._taken, self._marks, self.held = [], [], 0
        # Combinations numbered a fold at a time (a step's rows are about a hundred).
        combo = self._combo_numbers(list(itertools.chain.from_iterable(t[2] for t in taken)))
        self._place_pending()
        counts = [len(t[0]) for t in taken]
        step = np.repeat(np.arange(len(taken), dtype=np.int64), counts)
        minute = np.concatenate([t[0] for t in taken])
        epoch = np.concatenate([t[1] for t in taken])
        rows, bound = _safe(_concat([t[3] for t in taken]))
        step, minute, epoch, combo, metrics, first = _cells(step, minute, epoch, combo, rows)
        sids, flags = self._sid_table[combo], self._flag_table[combo]
        parts: list[tuple[Any, ...] | None] = [None] * len(self._windows)
        sums: dict[int, _Rows | None] = {}  # of the windows others sum from
        for i in self._order:
            window, source = self._windows[i], self._sources[i]
            j = window.spec
            if source is None:
                rows = _taken(
                    step, minute, epoch, sids[:, j], first, metrics, flags[:, j], window.w
                )
            else:  # the finer set's sums per (series, window, step), by this set's series
                rows = _regrouped(sums[source], sids[:, self._windows[source].spec], sids[:, j])
            parts[i], summed = self._fold_window(window, rows, marks[-1], bound, source is None)
            if i in self._sources:
                sums[i] = summed
        blocks = self._blocks([p for p in parts if p is not None], len(taken), packed, sent_metrics)
        if len(self._combos) > MAX_COMBOS:
            self._forget()
        return zip(blocks, marks, strict=True)

    # -- combinations ---------------------------------------------------------

    def _combo_numbers(self, attrs: list[tuple[Any, ...]]) -> np.ndarray:
        combos = self._combos
        numbers = list(map(combos.get, attrs))
        if None in numbers:
            # Numbered in the order they first come, each set's new series too (as one at a
            # time did), but a set at a time: a flood brings a new customer a row or so.
            new = list(dict.fromkeys([a for a, n in zip(attrs, numbers, strict=True) if n is None]))
            combos.update(zip(new, range(len(combos), len(combos) + len(new)), strict=True))
            self._place_new(new)
            numbers = list(map(combos.get, attrs))
        return np.array(numbers, dtype=np.int64)

    def _place_new(self, new: list[tuple[Any, ...]]) -> None:
        """Place the series of combinations new in this fold in every set: the sets a key
        decides once per key (``_place``), each other set over all of them at once, its new
        series numbered in the order they first come (as one combination at a time did)."""
        keys = list(map((0, 0).__add__, new))  # fine cells' keys, as projections read one
        by_key = self._by_key
        key_attrs = list(map(self._key_of, keys))
        keyed = list(map(by_key.get, key_attrs))
        if None in keyed:
            for i, placed in enumerate(keyed):
                if placed is None:
                    placed = by_key.get(key_attrs[i])  # a key new in this fold, met again
                    if placed is None:
                        placed = by_key[key_attrs[i]] = self._place(range(self._keyed), keys[i])
                    keyed[i] = placed
        sids = np.empty((len(keys), len(self._specs)), dtype=np.int64)
        flags = np.empty((len(keys), len(self._specs)), dtype=np.int8)
        if self._keyed:
            sids[:, : self._keyed] = [k[0] for k in keyed]
            flags[:, : self._keyed] = [k[1] for k in keyed]
        for j in range(self._keyed, len(self._specs)):
            _, project, _, only, without_minutes = self._specs[j]
            values = list(map(project, keys))
            ids = self._ids[j]
            if only is None:
                taking, flags[:, j] = values, _ALL
            else:
                absent = _NONE if without_minutes is None else _NO_MINUTES
                flag = [_ALL if v in only else absent for v in values]
                taking = [v for v, f in zip(values, flag, strict=True) if f != _NONE]
                flags[:, j] = flag
            fresh = [v for v in dict.fromkeys(taking) if v not in ids]
            if fresh:
                ids.update(zip(fresh, range(len(ids), len(ids) + len(fresh)), strict=True))
                self._values[j].extend(map(_interned, fresh))
            got = list(map(ids.get, values))
            if None in got:  # not taking part (``_NONE``): id 0, as ``_place`` gives
                got = [0 if sid is None else sid for sid in got]
            sids[:, j] = got
        self._pending.append((sids, flags))

    def _place(self, sets: range, key: tuple[Any, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A cell's series id in each of ``sets`` and how it takes part there (as
        ``RollupState._place``: minute windows only of the series named)."""
        sids, flags = [], []
        for j in sets:
            _, project, _, only, without_minutes = self._specs[j]
            values = project(key)
            flag = _ALL
            if only is not None and values not in only:
                flag = _NONE if without_minutes is None else _NO_MINUTES
            sid = 0
            if flag != _NONE:
                ids = self._ids[j]
                sid = ids.get(values, -1)
                if sid < 0:
                    sid = ids[values] = len(ids)
                    self._values[j].append(_interned(values))
            sids.append(sid)
            flags.append(flag)
        return tuple(sids), tuple(flags)

    def _place_pending(self) -> None:
        """Write the combinations numbered since the last fold into the tables."""
        if not self._pending:
            return
        placed = self._placed + sum(len(p[0]) for p in self._pending)
        if placed > len(self._sid_table):
            rows = max(placed, 2 * len(self._sid_table), 1024)
            self._sid_table = _grown(self._sid_table, rows)
            self._flag_table = _grown(self._flag_table, rows)
        self._sid_table[self._placed : placed] = np.concatenate([p[0] for p in self._pending])
        self._flag_table[self._placed : placed] = np.concatenate([p[1] for p in self._pending])
        self._placed, self._pending = placed, []

    def _forget(self) -> None:
        """Number combinations afresh and keep only the series of open windows: a flood of
        customers would otherwise hold every one it ever brought (as ``SeriesTable.prune``)."""
        self._combos, self._by_key = {}, {}
        self._sid_table = np.zeros((0, len(self._specs)), dtype=np.int64)
        self._flag_table = np.zeros((0, len(self._specs)), dtype=np.int8)
        self._placed = 0
        for j in range(len(self._specs)):
            windows = [w for w in self._windows if w.spec == j and w.carry is not None]
            live = np.unique(np.concatenate([w.carry[0] for w in windows])) if windows else []
            renumbered = np.full(len(self._values[j]), -1, dtype=np.int64)
            renumbered[live] = np.arange(len(live))
            for window in windows:
                sid, *rest = window.carry  # type: ignore[misc]
                window.carry = (renumbered[sid], *rest)
            values = self._values[j]
            self._values[j] = [values[i] for i in np.asarray(live, dtype=np.int64).tolist()]
            self._ids[j] = {v: i for i, v in enumerate(self._values[j])}

    # -- one set and window size ----------------------------------------------

    def _fold_window(
        self, window: _Window, rows: _Rows | None, watermark: float, bound: float, in_steps: bool
    ) -> tuple[tuple[Any, ...] | None, _Rows | None]:
        """The rows this fold emits for one set and window size (and the open windows it
        carries to the next): per (window, step) touched, the window's totals after it; and
        the sums per (window, step) of this fold's rows, which a coarser set sums further.
        ``rows``: (steps, window starts, epochs, series ids, first rows, metrics), in step
        order if ``in_steps``. ``bound``: the sum of the fold's metrics' magnitudes
        (``_safe``), which a window's sums of them never pass."""
        j, w = window.spec, window.w
        carry = window.carry
        if rows is None and carry is None:
            return None, None
        st, start, ep, sid, first, m = rows if rows is not None else _no_rows(carry)
        if carry is not None:  # the open windows' totals, as a step before all others
            c_sid, c_start, c_ep, c_totals = carry
            c = len(c_sid)
            sid = np.concatenate((c_sid, sid))
            start = np.concatenate((c_start, start))
            ep = np.concatenate((c_ep, ep))
            st = np.concatenate((np.full(c, -1, np.int64), st))
            first = np.concatenate((np.full(c, -1, np.int64), first))
            m = _stack(c_totals, m, bound)
        # By window, then step: rows in step order (``_cells``; the carried windows first,
        # as step -1) stay so in a stable sort. Starts: multiples of w.
        order = _lex_order((ep, start // w, sid) if in_steps else (st, ep, start // w, sid))
        sid, start, ep, st, first, m = (a[order] for a in (sid, start, ep, st, first, m))
        window_change = np.empty(len(sid), dtype=bool)
        window_change[:1] = True
        window_change[1:] = (sid[1:] != sid[:-1]) | (start[1:] != start[:-1]) | (ep[1:] != ep[:-1])
        step_change = window_change.copy()
        step_change[1:] |= st[1:] != st[:-1]
        at = np.flatnonzero(step_change)  # one row per (window, step)
        sums = np.add.reduceat(m, at, axis=0)
        first = np.minimum.reduceat(first, at)
        sid, start, ep, st = sid[at], start[at], ep[at], st[at]
        opens = window_change[at]
        totals = _running(sums, opens)
        last = np.empty(len(at), dtype=bool)  # the last row of each window: its totals now
        last[:-1] = opens[1:]
        last[-1:] = True
        close_at = np.where(ep == 0, start + (w + self.lateness_s), (ep + 1) * self.lateness_s)
        keep = last & (close_at > watermark)
        window.carry = (sid[keep], start[keep], ep[keep], totals[keep]) if keep.any() else None
        emitted = np.flatnonzero(st >= 0)
        part = (
            j,
            w,
            st[emitted],
            first[emitted],
            sid[emitted],
            start[emitted],
            ep[emitted],
            totals[emitted],
        )
        if not len(emitted):
            return part, None
        summed = (st, start, ep, sid, first, sums)
        return part, tuple(a[emitted] for a in summed)  # type: ignore[return-value]

    # -- records ------------------------------------------------------------------

    def _blocks(
        self, parts: list[tuple[Any, ...]], steps: int, packed: bool, sent_metrics: int | None
    ) -> Iterator[list[Block]]:
        """Each step's blocks, one per set and window size it changed, from columns worked
        out now, sliced when asked for: a step's worth of objects at a time, freed as the
        reader goes (the garbage collector then stays as idle as with the flush's records).
        A block's rows are in the order their windows first changed in the step."""
        columns = []
        for j, w, st, first, sid, start, ep, totals in parts:
            order = _lex_order((first, st))
            values = self._values[j]
            bounds = np.searchsorted(st[order], np.arange(steps + 1)).tolist()
            if packed:
                totals = totals[:, :sent_metrics]
            if packed and totals.dtype != object:
                ints: IntColumns | None = IntColumns(np.column_stack((start, ep, totals))[order])
                lists = None
            else:
                ints = None
                lists = (
                    start[order].tolist(),
                    ep[order].tolist(),
                    [c.tolist() for c in totals[order].T],
                )
            columns.append(
                (
                    self._dims[j],
                    w,
                    bounds,
                    list(map(values.__getitem__, sid[order].tolist())),
                    ints,
                    lists,
                )
            )
        return _sliced(self.partition, columns, steps)


def _sliced(partition: int, columns: list[tuple[Any, ...]], steps: int) -> Iterator[list[Block]]:
    for k in range(steps):
        blocks: list[Block] = []
        for dims, w, bounds, values, ints, lists in columns:
            a, b = bounds[k], bounds[k + 1]
            if a >= b:
                continue
            if ints is not None:
                blocks.append(PackedColumns(dims, w, partition, values[a:b], *ints.block(a, b)))
            else:
                starts, epochs, metrics = lists
                blocks.append(
                    RollupColumns(
                        dims,
                        w,
                        partition,
                        values[a:b],
                        starts[a:b],
                        epochs[a:b],
                        [m[a:b] for m in metrics],
                    )
                )
        yield blocks


def _cells(
    step: np.ndarray, minute: np.ndarray, epoch: np.ndarray, combo: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The rows of a fold summed per (step, minute, epoch, combination): the fine cells the
    flush folded, each with its first row (the order windows first changed in a step)."""
    if not len(step):
        return step, minute, epoch, combo, m, step
    order = _lex_order((combo, epoch, minute // 60, step))  # stable: a cell's first row first
    step, minute, epoch, combo = step[order], minute[order], epoch[order], combo[order]
    change = np.empty(len(order), dtype=bool)
    change[:1] = True
    change[1:] = (
        (step[1:] != step[:-1])
        | (minute[1:] != minute[:-1])
        | (epoch[1:] != epoch[:-1])
        | (combo[1:] != combo[:-1])
    )
    at = np.flatnonzero(change)
    sums = np.add.reduceat(m[order], at, axis=0)
    return step[at], minute[at], epoch[at], combo[at], sums, order[at]


#: A window's rows: steps, window starts, epochs, series ids, first rows, metrics.
_Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _taken(
    step: np.ndarray,
    minute: np.ndarray,
    epoch: np.ndarray,
    sids: np.ndarray,
    first: np.ndarray,
    metrics: np.ndarray,
    flags: np.ndarray,
    w: int,
) -> _Rows | None:
    """The fold's cells a set's window size takes (minutes: only the named series'), with
    their window starts; None when none."""
    taking = flags == _ALL if w == MINUTE else flags != _NONE
    if not taking.any():
        return None
    rows = (step, minute, epoch, sids, first, metrics)
    if not taking.all():  # most sets' hours take every cell: no copy of them then
        taken = np.flatnonzero(taking)
        rows = tuple(a[taken] for a in rows)  # type: ignore[assignment]
    st, minute, ep, sid, first, m = rows
    return st, minute // w * w, ep, sid, first, m


def _regrouped(rows: _Rows | None, finer: np.ndarray, coarser: np.ndarray) -> _Rows | None:
    """A finer set's sums per (series, window, step) as rows of a coarser set: each series
    id mapped to the coarser set's (``finer`` and ``coarser``: the fold's cells' ids)."""
    if rows is None:
        return None
    st, start, ep, sid, first, m = rows
    to_coarser = np.zeros(int(finer.max(initial=0)) + 1, dtype=np.int64)
    to_coarser[finer] = coarser
    return st, start, ep, to_coarser[sid], first, m


def _no_rows(carry: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> _Rows:
    none = np.zeros(0, dtype=np.int64)
    return none, none, none, none, none, np.zeros((0, carry[3].shape[1]), dtype=carry[3].dtype)


def _lex_order(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary; stable), sorted as 16-bit digits.

    The keys become one composite int64 (each key's offset from its least, times the
    spans of the keys after it) where their spans multiply to under 2**62, else plain
    ``lexsort``; numpy sorts 16-bit ints stably by radix, about ten times faster than
    int64 (timsort) on a fold's 17,000 rows, so the composite is split into the fewest
    16-bit digits and those are sorted, least significant first. The same order.
    """
    composite: np.ndarray | None = None
    span = 1
    for key in keys:  # least significant first
        if not len(key):
            return np.lexsort(keys)
        low = int(key.min())
        size = int(key.max()) - low + 1
        if span * size >= 2**62:  # Python ints: no overflow in the test itself
            return np.lexsort(keys)
        part = key - low if low else key
        composite = part if composite is None else composite + part * span
        span *= size
    assert composite is not None
    digits = [
        ((composite >> shift) & 0xFFFF).astype(np.uint16)
        for shift in range(0, max(span - 1, 1).bit_length(), 16)
    ]
    if len(digits) == 1:
        return np.argsort(digits[0], kind="stable")
    return np.lexsort(digits)


def _safe(m: np.ndarray) -> tuple[np.ndarray, float]:
    """``m``, in Python ints if its sums could pass int64; and the sum of its magnitudes
    (a bound on any sum of its rows, for ``_stack``; 0 when in Python ints)."""
    if m.dtype == object or not len(m):
        return m, 0.0
    bound = float(np.abs(m).sum(dtype=np.float64))
    if bound > _INT64_SAFE / 4:
        return m.astype(object), 0.0
    return m, bound


def _stack(carried: np.ndarray, m: np.ndarray, bound: float) -> np.ndarray:
    """The carried totals above ``m`` (rows of a fold whose magnitudes sum to at most
    ``bound``): int64 while every sum of them fits, else Python ints."""
    if carried.dtype == object or m.dtype == object:
        return np.concatenate((carried.astype(object), m.astype(object)))
    both = np.concatenate((carried, m))
    if bound + float(np.abs(carried).sum(dtype=np.float64)) > _INT64_SAFE / 4:
        return both.astype(object)
    return both


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if any(a.dtype == object for a in arrays):
        return np.concatenate([a.astype(object) for a in arrays])
    return np.concatenate(arrays)


def _running(sums: np.ndarray, opens: np.ndarray) -> np.ndarray:
    """Running sums of ``sums``' rows, started again at each row where ``opens``."""
    total = np.cumsum(sums, axis=0)
    starts = np.flatnonzero(opens)
    before = np.zeros((len(starts), sums.shape[1]), dtype=total.dtype)
    before[1:] = total[starts[1:] - 1]
    return total - before[np.cumsum(opens) - 1]


def _grown(table: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, table.shape[1]), dtype=table.dtype)
    out[: len(table)] = table
    return out
