"""The learned state of many detectors in a few flat arrays: a row per detector.

Why: at 100k series, each learned number of a detector was an object of its own (24 or 28
bytes, plus its 8-byte slot) and each array carried 64 bytes of header: ``baseline``,
``wow`` and ``shift`` held about 1.5 KB a series for about 0.8 KB of numbers and codes.
Detectors of one class and shape keep theirs in one ``Rows``: the numbers in a float64
array, ``width`` a row (ints exact, they are counts and window indices far below
``2**53``; None as NaN), and each fixed-size block (a profile of int16 codes, a byte per
count...) in an array of its own, and the rare part that is neither (a list while a detector
warms up, a short tuple) in a list, an entry a row (``Held``). A detector is then its
hyperparameters, its ``Rows`` and its row number; it frees its row when it goes
(``__del__``), for the next one to reuse. The detectors of one series need no objects of
their own at all: the watch keeps them in a ``Bank`` (``detectors._bank``), a row number a
series.
Rows are taken on the thread that builds detectors; a release is one list append, safe
from whichever thread drops the last reference.

Each number, block and held part keeps its attribute name (``Number``, ``Block`` and
``Held`` on the class), so ``dump_state``/``load_state``, ``retune``, pickles and tests read
and write them as before (a block reads as a copy); hot paths index the arrays.
"""

from __future__ import annotations

import copy
import math
from array import array
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from spendbrake.detectors._base import Detector, _slot_names
from spendbrake.detectors._plain import from_plain, to_plain

__all__ = [
    "Block",
    "Held",
    "InRows",
    "Number",
    "Rows",
    "forget_rows",
    "numbers",
    "row_names",
    "rows_for",
]

#: Past this an int no longer round-trips through a float64.
_EXACT = 2**53


class Rows:
    """The numbers, blocks and held parts of every detector of one class and shape, a row each."""

    __slots__ = (
        "blocks",
        "free",
        "held",
        "n",
        "nums",
        "sizes",
        "start",
        "start_blocks",
        "start_held",
        "width",
    )

    def __init__(
        self,
        start: array[float],
        blocks: Sequence[array[int] | bytearray],
        held: Sequence[Any] = (),
    ) -> None:
        #: A fresh row: its numbers, blocks and held parts.
        self.start = start
        self.start_blocks = tuple(array("B", b) if type(b) is bytearray else b for b in blocks)
        self.start_held = tuple(held)
        self.width = len(start)
        self.sizes = tuple(len(b) for b in blocks)
        self.nums: array[float] = array("d")
        self.blocks: tuple[array[int], ...] = tuple(array(b.typecode) for b in self.start_blocks)
        self.held: tuple[list[Any], ...] = tuple([] for _ in self.start_held)
        #: Rows made, and those of detectors gone, for the next ones.
        self.n = 0
        self.free: list[int] = []

    def new(self, like: int | None = None, source: Rows | None = None) -> int:
        """A row holding a fresh detector's state, or a copy of row ``like``'s (of
        ``source``: rows of the same shape; these by default)."""
        if like is None:
            nums, blocks, held = self.start, self.start_blocks, self.start_held
        else:
            src = self if source is None else source
            w = src.width
            nums = src.nums[like * w : like * w + w]
            blocks = tuple(
                b[like * n : like * n + n] for b, n in zip(src.blocks, src.sizes, strict=True)
            )
            held = tuple(h[like] for h in src.held)
        held = tuple(copy.copy(x) for x in held)  # a warming detector's list is its own
        if self.free:
            row = self.free.pop()
            self.nums[row * self.width : (row + 1) * self.width] = nums
            for b, n, part in zip(self.blocks, self.sizes, blocks, strict=True):
                b[row * n : row * n + n] = part
            for h, x in zip(self.held, held, strict=True):
                h[row] = x
            return row
        row = self.n
        self.n += 1
        if row >= len(_INTS):  # a row number past 256 is an int object: one, shared
            _INTS.extend(range(len(_INTS), row + _GROW))
        row = _INTS[row]
        self.nums.extend(nums)
        for b, part in zip(self.blocks, blocks, strict=True):
            b.extend(part)
        for h, x in zip(self.held, held, strict=True):
            h.append(x)
        return row

    def release(self, row: int) -> None:
        for h in self.held:
            h[row] = None  # what it held goes now, not when the row is taken again
        self.free.append(row)


#: Row numbers, one int object each, shared by the rows of every ``Rows``: a series' three
#: detectors usually have the same number in their three, and an int past 256 is 28 bytes.
#: Grown by ``_GROW`` at a time: doubling left up to as many spare ints as rows in use.
_INTS: list[int] = []
_GROW = 4096

#: Every ``Rows``, by its detector class and shape.
_ALL: dict[Hashable, Rows] = {}


def rows_for(shape: Hashable, make: Callable[[], Rows]) -> Rows:
    """The ``Rows`` of detectors of ``shape`` (their class, and what sizes their blocks),
    made by ``make`` on first use."""
    rows = _ALL.get(shape)
    if rows is None:
        rows = _ALL[shape] = make()
    return rows


def forget_rows() -> None:
    """Start every later detector in new ``Rows`` (those alive keep theirs): how a
    benchmark measures what detectors hold from nothing, after a pass that grew the arrays."""
    _ALL.clear()
    _INTS.clear()


class Number:
    """One number of a detector's row: a float, an int, or an int that may be None."""

    __slots__ = ("index", "kind")

    def __init__(self, index: int, kind: type | None) -> None:
        self.index = index
        #: float, int, or None for an int that may be None.
        self.kind = kind

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        rows = obj._rows  # noqa: SLF001 - the state this descriptor reads
        x = rows.nums[obj._row * rows.width + self.index]  # noqa: SLF001
        if self.kind is float:
            return x
        if x != x:
            return None
        return int(x)

    def __set__(self, obj: Any, value: Any) -> None:
        rows = obj._rows  # noqa: SLF001 - the state this descriptor writes
        rows.nums[obj._row * rows.width + self.index] = self.encode(value)  # noqa: SLF001

    def encode(self, value: Any) -> float:
        """``value`` as its float64; raises for one that does not fit."""
        if value is None:
            if self.kind is not None:
                raise TypeError("None where a number belongs")
            return math.nan
        if self.kind is not float and not -_EXACT < value < _EXACT:
            raise ValueError(f"{value!r} is out of range")
        return float(value)


class Block:
    """One fixed-size block of a detector's row, read as a copy (an array, or a bytearray
    for a block that was one), written whole."""

    __slots__ = ("index", "is_bytes")

    def __init__(self, index: int, is_bytes: bool) -> None:
        self.index = index
        self.is_bytes = is_bytes

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        rows, i = obj._rows, self.index  # noqa: SLF001 - the state this descriptor reads
        n = rows.sizes[i]
        part = rows.blocks[i][obj._row * n : obj._row * n + n]  # noqa: SLF001
        return bytearray(part) if self.is_bytes else part

    def __set__(self, obj: Any, value: Any) -> None:
        rows, i = obj._rows, self.index  # noqa: SLF001 - the state this descriptor writes
        n = rows.sizes[i]
        if len(value) != n:
            raise ValueError(f"{n} values expected, got {len(value)}")
        block = rows.blocks[i]
        part = array(block.typecode, value)
        if part.itemsize != getattr(value, "itemsize", part.itemsize):
            raise TypeError(f"an array of {block.typecode!r} expected")
        block[obj._row * n : obj._row * n + n] = part  # noqa: SLF001


class Held:
    """One part of a detector's row that is an object (a list, a tuple, None): an entry of a
    list a row, read and written as is."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._rows.held[self.index][obj._row]  # noqa: SLF001 - the state it reads

    def __set__(self, obj: Any, value: Any) -> None:
        obj._rows.held[self.index][obj._row] = value  # noqa: SLF001 - the state it writes


def numbers(
    cls: type,
    fields: dict[str, type | None],
    blocks: Sequence[str] = (),
    byte_blocks: Sequence[str] = (),
    held: Sequence[str] = (),
) -> array[float]:
    """Give ``cls`` a ``Number`` per field, in order (``fields``: name -> float, int, or None
    for an int that may be None), a ``Block`` per block name, in order (those in
    ``byte_blocks`` read as a bytearray) and a ``Held`` per held name, in order; returns a
    fresh row's numbers (zeros; NaN for the ints that start as None)."""
    start = []
    for i, (name, kind) in enumerate(fields.items()):
        setattr(cls, name, Number(i, kind))
        start.append(math.nan if kind is None else 0.0)
    for i, name in enumerate(blocks):
        setattr(cls, name, Block(i, name in byte_blocks))
    for i, name in enumerate(held):
        setattr(cls, name, Held(i))
    return array("d", start)


def row_names(cls: type) -> list[str]:
    """The ``Number``, ``Block`` and ``Held`` attribute names of ``cls``, in ``state_fields``
    order."""
    kinds = (Number, Block, Held)
    named = {n for k in cls.__mro__ for n, a in vars(k).items() if isinstance(a, kinds)}
    return [n for n in getattr(cls, "state_fields", ()) if n in named]


class InRows(Detector):
    """A detector whose numbers and blocks live in a ``Rows`` (``_rows``, row ``_row``).

    A subclass says which ``Rows`` a detector of its hyperparameters belongs to
    (``_rows_for``), builds its row with ``_take``, and reads its own slots and the row's
    names alike; copies, pickles and snapshots go by those names.
    """

    __slots__ = ("_row", "_rows")

    def _rows_for(self) -> Rows:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def _take(self) -> None:
        """A fresh row, in the ``Rows`` of this detector's hyperparameters."""
        rows = self._rows_for()
        self._rows, self._row = rows, rows.new()

    def __del__(self) -> None:
        rows, row = getattr(self, "_rows", None), getattr(self, "_row", None)
        if rows is not None and row is not None:
            rows.release(row)

    def __copy__(self) -> InRows:
        """A twin with a row of its own (a copy, in the ``Rows`` of its shape: not in a
        bank's); other attributes shared until replaced."""
        cls = type(self)
        twin = object.__new__(cls)
        for name in _slot_names(cls):
            if name not in ("_row", "_rows") and hasattr(self, name):
                object.__setattr__(twin, name, getattr(self, name))
        rows = twin._rows_for()
        object.__setattr__(twin, "_rows", rows)
        object.__setattr__(twin, "_row", rows.new(like=self._row, source=self._rows))
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Every attribute by name: the slots and the row's numbers and blocks."""
        state = {
            name: getattr(self, name)
            for name in _slot_names(type(self))
            if name not in ("_row", "_rows") and hasattr(self, name)
        }
        for name in row_names(type(self)):
            state[name] = getattr(self, name)
        return state

    def dump_state(self) -> list[Any]:
        """``Detector.dump_state``, the row's numbers read in one slice (a detect stage
        writes every series' detectors at each snapshot)."""
        cls = type(self)
        rows = self._rows
        at = self._row * rows.width
        nums = rows.nums[at : at + rows.width].tolist()
        out = []
        for name in self.state_fields:
            field = getattr(cls, name, None)
            if type(field) is Number:
                x = nums[field.index]
                if field.kind is not float:
                    x = None if x != x else int(x)
                out.append(to_plain(x))
            else:
                out.append(to_plain(getattr(self, name)))
        return out

    def load_state(self, state: list[Any], version: int = 1) -> None:
        """``Detector.load_state``, the row's numbers written in one slice (a restore reads
        every series' detectors)."""
        if version != self.state_version:
            raise ValueError(
                f"{self.name} state version {version}; this release reads {self.state_version}"
            )
        if type(state) is not list or len(state) != len(self.state_fields):
            raise ValueError(f"{self.name} state: {len(self.state_fields)} values expected")
        cls = type(self)
        rows = self._rows
        at = self._row * rows.width
        nums = rows.nums[at : at + rows.width]
        for name, value in zip(self.state_fields, state, strict=True):
            field = getattr(cls, name, None)
            try:
                if type(field) is Number:
                    nums[field.index] = field.encode(from_plain(0.0, value))
                else:
                    object.__setattr__(self, name, from_plain(getattr(self, name), value))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{self.name} state {name}: {exc}") from None
        rows.nums[at : at + rows.width] = nums

    def _place(self, state: dict[str, Any]) -> None:
        """Take ``state`` (``__getstate__``'s names) into this detector and a new row."""
        for name in _slot_names(type(self)):
            if name not in ("_row", "_rows"):
                object.__setattr__(self, name, state[name])
        self._take()
        for name in row_names(type(self)):
            setattr(self, name, state[name])
