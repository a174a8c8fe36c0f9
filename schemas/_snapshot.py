"""Stage state files: the collector paused while one is built or read, and the pickled files
of earlier releases, including those written before the package rename.

A snapshot is hundreds of thousands of small lists at 100k series. They hold no cycles, but
every young collection their allocation triggers walks the whole heap, the stage's own state
included: at 100k series the ingest's rollup snapshot took 4.4 s with the collector on and
0.55 s with it paused, the watch's decode 8x longer at 20k series (``gc_paused``).

Until 2026-12-05 the packages were installed as top-level ``schemas``, ``streamer``,
``detectors`` and ``actions``; a snapshot written then names its classes by those modules.
They now live under ``spendbrake.*``, so the class lookup maps the old names once, here,
and every stage restores an old snapshot as it was. A class that no longer exists is
given by the reader (``moved``) as the stand-in that reads it.
"""

from __future__ import annotations

import contextlib
import gc
import io
import pickle
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["gc_paused", "unpickle_state"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a snapshot's many small objects are built or read (as it
    was, after: nested uses leave it to the outermost)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_MOVED = ("schemas", "streamer", "detectors", "actions")


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, moved: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(io.BytesIO(data))
        self.moved = moved

    def find_class(self, module: str, name: str) -> Any:
        root = module.partition(".")[0]
        if root in _MOVED:
            module = f"spendbrake.{module}"
        stand_in = self.moved.get((module, name))
        if stand_in is not None:
            return stand_in
        return super().find_class(module, name)


def unpickle_state(data: bytes, moved: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Load one of our own state files (never untrusted bytes: a pickle runs code).

    ``moved`` maps (module, class name), as in ``spendbrake.*``, to the class to build
    instead: for classes since removed or renamed.
    """
    return _StateUnpickler(data, moved or {}).load()
