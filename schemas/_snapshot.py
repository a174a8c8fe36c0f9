"""Read the stages' pickled state files, including those written before the package rename.

Until 2026-12-05 the packages were installed as top-level ``schemas``, ``streamer``,
``detectors`` and ``actions``; a snapshot written then names its classes by those modules.
They now live under ``spendbrake.*``, so the class lookup maps the old names once, here,
and every stage restores an old snapshot as it was.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["unpickle_state"]

_MOVED = ("schemas", "streamer", "detectors", "actions")


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        root = module.partition(".")[0]
        if root in _MOVED:
            module = f"spendbrake.{module}"
        return super().find_class(module, name)


def unpickle_state(data: bytes) -> Any:
    """Load one of our own state files (never untrusted bytes: a pickle runs code)."""
    return _StateUnpickler(io.BytesIO(data)).load()
