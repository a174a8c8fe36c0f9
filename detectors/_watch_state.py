"""The watch's snapshot (transitional: the pickled layout of before the split)."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from spendbrake.detectors._legacy import load_pickled_watch
from spendbrake.detectors._reconfigure import built_from

if TYPE_CHECKING:
    from spendbrake.detectors._watch import SpendWatch

__all__ = ["dump_watch", "load_watch"]


def dump_watch(w: SpendWatch) -> bytes:
    book, budgets, clock = w.book, w.budgets, w.clock
    state: dict[str, Any] = {
        "series": book.series,
        "_dirty": book.dirty,
        "_folded": book.folded,
        "_cap_noticed": book.cap_noticed,
        "_notices": book.notices,
        "keys": w.directory.keys,
        "_key_hour": w.directory.last_hour,
        "incidents": w.incidents,
        "now": clock.now,
        "marks": clock.marks,
        "idle": clock.idle,
        "closed_until": clock.closed_until,
        "_next_peek": clock.next_peek,
        "budgets": budgets.trackers,
        "_budget_hours": budgets.hours,
        "_budget_minutes": budgets.minutes,
        "_budget_paused": budgets.paused,
        "_budget_seq": budgets.seq,
        "_built_from": built_from(w.config),
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load_watch(w: SpendWatch, data: bytes) -> dict[str, Any] | None:
    return load_pickled_watch(w, data)
