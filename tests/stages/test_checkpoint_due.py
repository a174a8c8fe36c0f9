"""Periodic checkpoints are spaced out when saving is slow (``Stage.checkpoint_due``).

A save runs on the event loop every stage shares; at 100k series the detect stage's takes
about 2 s, so saving it every 5 s would take a third of the loop.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from spendbrake.schemas import Config, gc_paused
from spendbrake.stages.stage import SAVE_SHARE, Stage, WorkerSettings


class _Probe(Stage):
    name = "probe"


def _stage(tmp_path: Path, interval_s: float = 5.0) -> Stage:
    return _Probe(Config(), WorkerSettings(state_dir=tmp_path, checkpoint_interval_s=interval_s))


def test_a_quick_save_checkpoints_at_the_interval(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    stage.timed_save(lambda: None)
    assert not stage.checkpoint_due(4.9)
    assert stage.checkpoint_due(5.0)


def test_a_slow_save_is_spaced_out_to_its_share_of_the_time(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    stage.save_s = 2.0  # as the detect stage's snapshot of 100k series
    assert not stage.checkpoint_due(5.0)
    assert not stage.checkpoint_due(2.0 / SAVE_SHARE - 0.1)
    assert stage.checkpoint_due(2.0 / SAVE_SHARE)


def test_timed_save_notes_how_long_the_save_took(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    stage.timed_save(lambda: time.sleep(0.05))
    assert stage.save_s >= 0.05  # a lower bound: sleep waits at least that long

    def failing() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        stage.timed_save(failing)
    assert stage.save_s >= 0.05  # a save that failed leaves the last one's time


def test_gc_paused_restores_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # disabled before: left disabled
    finally:
        gc.enable()
