"""A detector's learned numbers in one float64 array, each still read by its name.

Why: at 100k series, each learned float or int of a detector is an object of its own (24
or 28 bytes) plus the 8 bytes of its slot. In one ``array("d")`` a number costs 8 bytes,
plus 64 for the array. Ints are stored exactly (window indices and counts, far below
``2**53``); None as NaN.

Each number keeps its attribute name (a ``Packed`` descriptor on the class), so
``dump_state``/``load_state``, ``retune`` and tests read and write it as before; hot paths
index the array (``self._v``) directly with the class's index constants.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

__all__ = ["Packed", "pack", "packed_names"]

#: Past this an int no longer round-trips through a float64.
_EXACT = 2**53


class Packed:
    """One number of ``obj._v``: a float, an int, or an int that may be None."""

    __slots__ = ("index", "kind")

    def __init__(self, index: int, kind: type | None) -> None:
        self.index = index
        #: float, int, or None for an int that may be None.
        self.kind = kind

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        x = obj._v[self.index]  # noqa: SLF001 - the array this descriptor reads
        if self.kind is float:
            return x
        if x != x:
            return None
        return int(x)

    def __set__(self, obj: Any, value: Any) -> None:
        if value is None:
            if self.kind is not None:
                raise TypeError("None where a number belongs")
            value = math.nan
        elif self.kind is not float and not -_EXACT < value < _EXACT:
            raise ValueError(f"{value!r} is out of range")
        obj._v[self.index] = value  # noqa: SLF001 - the array this descriptor writes


def pack(cls: type, fields: dict[str, type | None]) -> array[float]:
    """Give ``cls`` a ``Packed`` attribute per field, in order (``fields``: name -> float,
    int, or None for an int that may be None); returns the array a fresh detector copies
    (zeros; NaN for the ints that start as None)."""
    start = []
    for i, (name, kind) in enumerate(fields.items()):
        setattr(cls, name, Packed(i, kind))
        start.append(math.nan if kind is None else 0.0)
    return array("d", start)


def packed_names(cls: type) -> set[str]:
    """The ``Packed`` attribute names of ``cls`` and its bases."""
    return {n for k in cls.__mro__ for n, a in vars(k).items() if isinstance(a, Packed)}
