"""The demo waits on its pipeline's progress, not a wall-clock deadline."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from spendbrake import _demo


def test_a_slow_pipeline_is_waited_for_as_long_as_it_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Busy, the machine once let the demo stop waiting after a fixed 60 s and 30 s: it
    printed no incident at all. Here the pipeline needs several stall periods in all, moving."""
    monkeypatch.setattr(_demo, "STALL_S", 0.3)
    ticks = itertools.count()
    moved = [0]

    def progress() -> int:
        if next(ticks) % 2 == 0:  # a step every other look: slower than the looks, moving
            moved[0] += 1
        return moved[0]

    done = asyncio.run(_demo._wait_for(lambda: moved[0] >= 4, progress, lambda: None))
    assert done and moved[0] >= 4


def test_a_stalled_pipeline_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "STALL_S", 0.3)
    refreshed = []
    done = asyncio.run(_demo._wait_for(lambda: False, lambda: 7, lambda: refreshed.append(1)))
    assert not done and refreshed
