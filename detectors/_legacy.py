"""The watch's pickled snapshots of earlier releases, read once to be saved again as plain data.

Until 2026-12-05 ``SpendWatch.snapshot()`` pickled the watch's attributes, with its series
as ``detectors._watch._Series`` objects, its detectors, budget trackers, incidents and key
directory as they were in memory. The detect stage now reads such a file one last time
(``SpendWatch.restore_legacy``), writes the plain snapshot and keeps the old file beside it.
Every older layout the pickles may hold is mapped here, in one place (the detectors'
own ``__setstate__`` read their older layouts), so this module can go once no deployment
has such a file left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendbrake.detectors._budgets import BudgetBook
from spendbrake.detectors._series import Series
from spendbrake.schemas import unpickle_state

if TYPE_CHECKING:
    from spendbrake.detectors._watch import SpendWatch

__all__ = ["load_pickled_watch"]


class _OldSeries:
    """Reads a pickled ``detectors._watch._Series``, in any layout it had, as a ``Series``.

    Layouts: its slots (until 2026-12-05: ``asleep_from``, ``closed``, ``dets``, ``key``,
    ``last_spend_hour``, ``parts``, ``slots``; ``Series`` sets each by name), a dataclass
    with ``scope``, (index, detector) pairs and ``peeked`` (until 2026-12-04), and before
    that a dict of parts per hour.
    """

    series: Series

    def __setstate__(self, state: Any) -> None:
        slots = dict(state[1] if isinstance(state, tuple) else state)
        # Its key and detectors are set below; a fresh series' scalars are zeros: none
        # asleep (until 2026-12-05 every series learned every hour as it closed), no recent
        # calls kept (the next looks start them).
        s = self.series = Series(((), ()))
        if "hours" in slots:
            hours = slots.pop("hours")
            slots["parts"] = {(h, p, e): v for h, by in hours.items() for (p, e), v in by.items()}
        if isinstance(slots.get("parts"), dict):  # until 2026-12-04: a dict of parts
            old = slots.pop("parts")
            for (h, p, e), (cost, calls) in sorted(old.items()):
                s.set_part(h, p, e, cost, calls)
        if "scope" in slots:
            scope = slots.pop("scope")
            slots["key"] = (tuple(n for n, _ in scope), tuple(v for _, v in scope))
            slots.pop("peeked", None)
            s.detectors = slots.pop("detectors")
        if "slots" in slots:
            s.detectors = list(zip(slots.pop("slots"), slots.pop("dets"), strict=True))
        for name, value in slots.items():
            setattr(s, name, value)  # the scalars and ``parts`` go into ``Series.state``


class _OldAlert:
    """Reads a pickled ``schemas._alert.Alert`` of those releases (a slots dataclass, times
    epoch seconds): a cap notice not yet sent. Only what rebuilds the notice is read."""

    scope: dict[str, str | None]
    window_start: float
    detected_at: float

    def __setstate__(self, state: Any) -> None:
        slots = state[1] if isinstance(state, tuple) else state
        self.scope = slots["scope"]
        self.window_start = slots["window_start"]
        self.detected_at = slots["detected_at"]


_MOVED = {
    ("spendbrake.detectors._watch", "_Series"): _OldSeries,
    ("spendbrake.schemas._alert", "Alert"): _OldAlert,
}


def load_pickled_watch(watch: SpendWatch, data: bytes) -> dict[str, Any]:
    """Fill ``watch``'s parts from a pickled snapshot; returns its ``_built_from`` config
    parts (None for snapshots from before they were kept).

    Our own file, written by an earlier ``snapshot()``: a pickle runs code, never read one
    from elsewhere.
    """
    state: dict[str, Any] = unpickle_state(data, _MOVED)
    series = {sk: s.series if isinstance(s, _OldSeries) else s for sk, s in state["series"].items()}
    dirty = state.get("_dirty", set())
    if dirty and not isinstance(next(iter(dirty))[1], int):
        # Until 2026-12-04 the watch marked whole series: every open hour of them.
        dirty = {(sk, h) for sk in dirty if sk in series for h in series[sk].hours()}
    book = watch.book
    book.series = series
    book.dirty = set(dirty)
    book.folded = state.get("_folded", {})
    book.cap_noticed = state.get("_cap_noticed", set())
    # A pending cap notice, by what rebuilds it (the stage saves after it sent them all).
    cap = watch.config.limits.series_per_set
    book.notices = [
        (tuple(a.scope), int(a.window_start), int(a.detected_at), cap)
        for a in state.get("_notices", [])
    ]
    book.rebuilt()
    watch.directory.keys = state.get("keys", {})
    watch.directory.last_hour = state.get("_key_hour", {})
    watch.incidents = state["incidents"]
    clock = watch.clock
    clock.now = state["now"]
    clock.marks = state.get("marks", {})
    clock.idle = state.get("idle", set())
    clock.closed_until = state["closed_until"]
    clock.next_peek = state.get("_next_peek", clock.next_peek)
    built_from = state.get("_built_from")
    budgets = built_from["budgets"] if built_from is not None else watch.config.budgets
    book_b = BudgetBook(budgets)
    book_b.trackers = state["budgets"]
    n = len(book_b.trackers)
    book_b.take_parts(
        state.get("_budget_hours", [{} for _ in range(n)]),
        state.get("_budget_minutes", [{} for _ in range(n)]),
    )
    book_b.paused = state.get("_budget_paused", [[] for _ in range(n)])
    book_b.seq = state.get("_budget_seq", {})
    watch.budgets = book_b
    return built_from  # type: ignore[no-any-return]
