"""Rollup blocks already in msgpack: what replay's rollup child sends, with no int object made.

Replay's rollup child (``spendbrake._replay_split``) sends the watch each step's blocks
(``RollupColumns``) as msgpack. Made as Python lists, a fold's numbers (a window start, an
epoch and eight metrics a record, 650k records on the 1M-event benchmark) were each an int
object, made from the fold's arrays, sliced per block and then encoded: about a sixth of the
child's time. ``IntColumns`` writes a fold's int64 columns as msgpack ints once, in numpy (a
column's ints all of one width, the narrowest that holds them: msgpack lets a writer pick
any), and a block's columns are slices of those bytes (``PackedColumns``). msgpack has no
other form for them: a ``PackedColumns`` encodes as the array a ``RollupColumns`` of the same
numbers does, and the watch's side reads it as one (``tests/streamer/test_packed.py``).
"""

from __future__ import annotations

import struct

import msgspec
import numpy as np

__all__ = ["IntColumns", "PackedColumns"]

#: msgpack's signed ints by width: (numpy type, type byte).
_WIDTHS = ((np.int8, 0xD0), (np.int16, 0xD1), (np.int32, 0xD2), (np.int64, 0xD3))
_ARRAY16 = struct.Struct(">BH")
_ARRAY32 = struct.Struct(">BI")


class PackedColumns(msgspec.Struct, array_like=True, gc=False):
    """A ``RollupColumns`` whose int columns are msgpack already (``IntColumns.block``):
    encoded, the same array as that block's, read back as a ``RollupColumns``."""

    dims: tuple[str, ...]
    window_s: int
    partition: int
    values: list[tuple[str | None, ...]]
    starts: msgspec.Raw
    epochs: msgspec.Raw
    #: One array per metric, in ``METRICS`` order, as one array.
    metrics: msgspec.Raw


class IntColumns:
    """Columns of int64s (a fold's window starts, epochs and metrics, rows in block order)
    as msgpack ints, each column's of one width; ``block`` gives rows ``a:b`` of them."""

    __slots__ = ("_columns", "_metrics_header")

    def __init__(self, columns: np.ndarray) -> None:
        #: Per column: its ints' bytes, one after another, and the bytes of one.
        self._columns = [_packed(column) for column in columns.T]
        self._metrics_header = _header(len(self._columns) - 2)

    def block(self, a: int, b: int) -> tuple[msgspec.Raw, msgspec.Raw, msgspec.Raw]:
        """Rows ``a:b`` as (starts, epochs, metrics): the first two columns each an array,
        the rest an array of arrays."""
        header = _header(b - a)
        arrays = [header + data[a * width : b * width] for data, width in self._columns]
        starts, epochs, *metrics = arrays
        return (
            msgspec.Raw(starts),
            msgspec.Raw(epochs),
            msgspec.Raw(b"".join([self._metrics_header, *metrics])),
        )


def _packed(column: np.ndarray) -> tuple[bytes, int]:
    """The column's ints as msgpack ints of the narrowest signed width that holds them all,
    and the bytes of one."""
    low, high = int(column.min(initial=0)), int(column.max(initial=0))
    kind, type_byte = next(
        (kind, type_byte)
        for kind, type_byte in _WIDTHS
        if np.iinfo(kind).min <= low and high <= np.iinfo(kind).max
    )
    size = np.dtype(kind).itemsize
    out = np.empty((len(column), 1 + size), dtype=np.uint8)
    out[:, 0] = type_byte
    out[:, 1:] = column.astype(np.dtype(kind).newbyteorder(">")).view(np.uint8).reshape(-1, size)
    return out.tobytes(), 1 + size


def _header(n: int) -> bytes:
    """A msgpack array header for ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return _ARRAY16.pack(0xDC, n)
    return _ARRAY32.pack(0xDD, n)
