"""The outbox as a plain, versioned file: JSON of its dataclasses, no pickle.

Version 1 is ``{"version": 1, "outbox": {...}}``, the ``Outbox`` fields as msgspec writes
a dataclass (a lane's deque as a list; integer dict keys as strings, read back as
integers). A field added to a dataclass later takes its default when an older file is
read, so adding one needs no migration; renaming or retyping one needs version 2 and a
converter here. Reading checks every field's type, so a file edited into nonsense is
refused (``ValueError``) instead of failing mid-effect.

>>> from spendbrake.actions import Outbox
>>> box = Outbox(offsets={0: 7})
>>> load_outbox(dump_outbox(box)) == box
True
"""

from __future__ import annotations

from collections import deque
from typing import Any, get_origin

import msgspec

from ._outbox import Outbox

__all__ = ["OUTBOX_VERSION", "dump_outbox", "load_outbox"]

OUTBOX_VERSION = 1


class _Version(msgspec.Struct):
    version: int


class _File(msgspec.Struct):
    version: int
    outbox: Outbox


def _enc(obj: Any) -> Any:
    if isinstance(obj, deque):
        return list(obj)
    raise NotImplementedError(f"cannot save a {type(obj).__name__}")


def _dec(kind: Any, obj: Any) -> Any:
    if get_origin(kind) is deque:
        try:
            return deque(msgspec.convert(obj, list[kind.__args__[0]]))
        except msgspec.ValidationError as exc:
            # msgspec adds where the lane is; keep where in the lane the problem is.
            raise ValueError(str(exc).replace(" - at `$", " at `")) from None
    raise NotImplementedError(f"cannot read a {kind}")


_encoder = msgspec.json.Encoder(enc_hook=_enc)
_decoder = msgspec.json.Decoder(_File, dec_hook=_dec)


def dump_outbox(outbox: Outbox) -> bytes:
    """The file's bytes (times are finite: ``Outbox.retry`` bounds its delays)."""
    return _encoder.encode(_File(OUTBOX_VERSION, outbox))


def load_outbox(data: bytes) -> Outbox:
    """An outbox from the file's bytes; ``ValueError`` naming the problem if it is not one."""
    try:
        version = msgspec.json.decode(data, type=_Version).version
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an outbox file: {exc}") from None
    if version != OUTBOX_VERSION:
        raise ValueError(
            f"version {version}; this release reads version {OUTBOX_VERSION} (written by "
            "another release?)"
        )
    try:
        return _decoder.decode(data).outbox
    except msgspec.DecodeError as exc:  # ValidationError too: "... - at `$.outbox.lanes`"
        raise ValueError(f"not an outbox file: {exc}") from None
