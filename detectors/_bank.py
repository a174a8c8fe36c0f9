"""The detectors of every series with the same config entries, in rows of their own: a series
holds one row number.

Why: at 100k series, each series' three detectors were three objects and a tuple (about 250
bytes a series) around state that already lived in shared rows (``detectors._rows``). A
``Bank`` keeps one ``Rows`` per entry, takes and frees a row in all of them at once (so one
number finds a series' state in each), and lends out one detector object per entry, moved to
a row before each use (``at``: the scoring loops), or fresh objects bound to a row (``view``:
for code that keeps them). Detectors with state outside their row (river's models, the
naive and cloud-style contenders) stay objects of their own, in a ``Loose`` bank.

Banks are shared by every watch of a process; their lent detectors are not for two threads
stepping watches at once (nothing here does: a stage steps its watch on its event loop).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

from spendbrake.detectors._base import Detector, _slot_names
from spendbrake.detectors._rows import InRows, Rows, forget_rows

__all__ = ["Bank", "Loose", "bank_for", "forget_banks"]

#: Slots a banked detector may have: its shared hyperparameters and where its row is.
_BANKABLE_SLOTS = frozenset({"_hp", "_row", "_rows"})


class _BankRows(Rows):
    """A bank's rows: freed by the bank when its series goes, never by a detector it lent."""

    __slots__ = ()

    def release(self, row: int) -> None:
        """A lent detector going: the row is the series', not the detector's."""

    def drop(self, row: int) -> None:
        Rows.release(self, row)


class Bank:
    """The rows of the detectors of one list of config entries (``slots``), alike in class
    and hyperparameters, and one detector per entry to read and step them with."""

    __slots__ = ("__weakref__", "cursors", "fresh", "rows", "slots")

    def __init__(self, slots: tuple[int, ...], fresh: Sequence[InRows]) -> None:
        self.slots = slots
        self.rows = tuple(
            _BankRows(d._rows.start, d._rows.start_blocks, d._rows.start_held)  # noqa: SLF001
            for d in fresh
        )
        #: A row holding fresh detectors' state, which every new series copies: a detector's
        #: constructor may set more than its class's fresh row (baseline's first season).
        self.fresh = self.adopt(fresh)
        self.cursors = tuple(
            _bound(d, r, self.fresh) for d, r in zip(fresh, self.rows, strict=True)
        )

    def new(self) -> int:
        """A row of fresh detectors, for a new series."""
        return self._take([r.new(like=self.fresh) for r in self.rows])

    def adopt(self, detectors: Sequence[Detector]) -> int:
        """A row holding a copy of ``detectors``' state (each in rows of its own shape)."""
        return self._take(
            [
                r.new(like=d._row, source=d._rows)  # type: ignore[attr-defined]  # noqa: SLF001
                for r, d in zip(self.rows, detectors, strict=True)
            ]
        )

    def _take(self, taken: list[int]) -> int:
        row = taken[0] if taken else 0
        if any(r != row for r in taken):  # every row is taken and freed in all at once
            raise RuntimeError(f"bank rows out of step: {taken}")
        return row

    def release(self, row: int) -> None:
        for r in self.rows:
            r.drop(row)

    def at(self, row: int) -> tuple[Detector, ...]:
        """The bank's own detectors, moved to ``row``: valid until the next ``at``."""
        cursors = self.cursors
        for c in cursors:
            c._row = row  # type: ignore[attr-defined]  # noqa: SLF001
        return cursors

    def view(self, row: int) -> tuple[Detector, ...]:
        """Detectors of their own bound to ``row``: live (they read and write the series'
        state) for as long as the series has that row."""
        return tuple(_bound(c, r, row) for c, r in zip(self.cursors, self.rows, strict=True))


class Loose:
    """Detectors that are objects of their own: a series' ``row`` is the tuple of them."""

    __slots__ = ("slots",)

    def __init__(self, slots: tuple[int, ...]) -> None:
        self.slots = slots

    def adopt(self, detectors: Sequence[Detector]) -> tuple[Detector, ...]:
        return tuple(detectors)

    def release(self, row: Any) -> None:
        """Nothing to free: the detectors go with the tuple."""

    def at(self, row: tuple[Detector, ...]) -> tuple[Detector, ...]:
        return row

    view = at


def _bound(like: InRows, rows: Rows, row: int) -> InRows:
    det = object.__new__(type(like))
    object.__setattr__(det, "_hp", like._hp)  # type: ignore[attr-defined]  # noqa: SLF001
    object.__setattr__(det, "_rows", rows)
    object.__setattr__(det, "_row", row)
    return det


@functools.cache
def _bankable(cls: type) -> bool:
    return issubclass(cls, InRows) and set(_slot_names(cls)) == _BANKABLE_SLOTS


#: Every bank in use, by its entries and its detectors' classes and hyperparameters. Held
#: by the series in it, not here: a reload that changes a hyperparameter moves every series
#: to a new bank, and the old one's arrays (a row a series it had) go with its last series.
_BANKS: weakref.WeakValueDictionary[Any, Bank] = weakref.WeakValueDictionary()
_LOOSE: dict[tuple[int, ...], Loose] = {}


def bank_for(slots: tuple[int, ...], detectors: Sequence[Detector]) -> Bank | Loose:
    """The bank that holds ``detectors`` (of config entries ``slots``) as a row, or a loose
    one when one of them keeps state outside its row."""
    if detectors and all(_bankable(type(d)) for d in detectors):
        key = (slots, tuple((type(d), d._hp) for d in detectors))  # type: ignore[attr-defined]  # noqa: SLF001
        try:
            bank = _BANKS.get(key)
        except TypeError:  # hyperparameters that do not hash: objects of their own
            bank = None
        else:
            if bank is None:
                bank = _BANKS[key] = Bank(slots, [d.clone() for d in detectors])  # type: ignore[misc]
            return bank
    loose = _LOOSE.get(slots)
    if loose is None:
        loose = _LOOSE[slots] = Loose(slots)
    return loose


def forget_banks() -> None:
    """``forget_rows``, banks too: every later series starts in new rows (a benchmark's
    measure from nothing)."""
    _BANKS.clear()
    forget_rows()
