"""Detector state as plain data: numbers, strings and lists; arrays as little-endian bytes.

Why: a snapshot of pickled objects names classes and modules, so every rename or change
of layout needs code that maps old pickles forever. A detector's learned state is a few
numbers and arrays, so it is written as such (``Detector.dump_state``) and read back into
a detector freshly built from its hyperparameters (``Detector.load_state``): the fresh
detector's attributes say what type each value is. Encoded as JSON (msgspec), floats round
trip exactly, ints of any size stay ints, bytes go as base64; the infinities and NaN,
which JSON lacks, are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.

>>> from array import array
>>> to_plain([1.5, float("inf"), array("h", [1, -2])])
[1.5, 'inf', b'\\x01\\x00\\xfe\\xff']
>>> from_plain(array("h"), "AQD+/w==")
array('h', [1, -2])
"""

from __future__ import annotations

import base64
import binascii
import copy
import sys
from array import array
from typing import Any

__all__ = ["from_plain", "number", "to_plain"]

_BIG_ENDIAN = sys.byteorder == "big"


def to_plain(value: Any) -> Any:
    """``value`` as plain data; an object with ``dump_state`` (a sub-model) as its dump."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else repr(value)  # inf - inf and NaN: NaN
    if kind is int or value is None or kind is str or kind is bool:
        return value
    if kind is array:
        if _BIG_ENDIAN:
            value = array(value.typecode, value)
            value.byteswap()
        return value.tobytes()
    if kind is bytearray or kind is bytes:
        return bytes(value)
    if kind is list or kind is tuple:
        return [to_plain(v) for v in value]
    dump = getattr(value, "dump_state", None)
    if dump is None:
        raise TypeError(f"no plain form for a {kind.__name__}")
    return dump()


#: Attribute types whose plain form is a number (or None) as such.
_SCALARS = frozenset({float, int, bool, type(None)})


def from_plain(template: Any, value: Any) -> Any:
    """``value`` (``to_plain``'s, or its JSON round trip) in the type of ``template``: the
    attribute as a freshly built detector holds it. Raises ``ValueError`` or ``TypeError``
    for a value that does not fit."""
    kind = type(template)
    if kind in _SCALARS:
        plain = type(value)
        if plain is float or plain is int or value is None:
            return value
        if plain is list:  # a list where a fresh detector has none yet
            return [number(v) for v in value]
        return number(value)
    if value is None:
        return None
    if kind is array:
        out = array(template.typecode)
        out.frombytes(_bytes(value))
        if _BIG_ENDIAN:
            out.byteswap()
        return out[:]  # frombytes over-allocates; a slice is exact (100k series hold them)
    if kind is bytearray:
        return bytearray(_bytes(value))
    if kind is tuple or kind is list:
        if type(value) is not list:
            raise TypeError(f"not a list: a {type(value).__name__}")
        out_list = [number(v) for v in value]
        return tuple(out_list) if kind is tuple else out_list
    if hasattr(template, "load_state"):
        twin = copy.copy(template)  # the template may be shared: load into a twin
        twin.load_state(value)
        return twin
    raise TypeError(f"no plain form for a {kind.__name__}")


def number(value: Any) -> Any:
    """A plain number (or None) back: the strings of the infinities and NaN as floats."""
    kind = type(value)
    if kind is str:
        if value not in ("inf", "-inf", "nan"):
            raise ValueError(f"not a number: {value[:40]!r}")
        return float(value)
    if value is None or kind is int or kind is float or kind is bool:
        return value
    raise TypeError(f"not a number: a {kind.__name__}")


def _bytes(value: Any) -> bytes:
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"not base64: {value[:40]!r}") from None
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"not bytes: a {type(value).__name__}")
