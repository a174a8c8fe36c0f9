"""Identical log lines are held back for a window, then counted; different ones pass."""

from __future__ import annotations

import logging
import time

from spendbrake._logs import RepeatFilter


def record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_are_held_back_then_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window_s=30.0, clock=lambda: now[0])
    passed = []
    for i in range(300):  # every 100 ms for 30 s, then once more
        now[0] = i * 0.1
        r = record("Unable connect to node with id %d", 111)
        r.created = 1_796_000_000.0 + now[0]
        if f.filter(r):
            passed.append(r.getMessage())
    now[0] = 30.0
    r = record("Unable connect to node with id %d", 111)
    assert f.filter(r)
    passed.append(r.getMessage())
    assert passed == [
        "Unable connect to node with id 111",
        "Unable connect to node with id 111 (and 299 more like it held back since "
        + time.strftime("%H:%M:%S", time.localtime(1_796_000_000.0))
        + ")",
    ]


def test_our_own_events_are_never_held_back() -> None:
    """A worker's partitions moved twice within 30 s: the second "partition 0 released" was
    held back, and the log read as if the worker still owned partition 0. Our INFO lines are
    events, each logged; our warnings and aiokafka's lines are still held back."""
    f = RepeatFilter(window_s=30.0, clock=lambda: 0.0)
    ingest = "spendbrake.stages.ingest"
    lines = ["partition %d released", "partition %d adopted at offset 10", "partition %d released"]
    assert all(f.filter(record(line, 0, level=logging.INFO, name=ingest)) for line in lines)
    retry = "ingest: output failed (%s); retrying in 0.5s"
    assert f.filter(record(retry, "timeout", level=logging.WARNING, name="spendbrake.stages.stage"))
    assert not f.filter(
        record(retry, "timeout", level=logging.WARNING, name="spendbrake.stages.stage")
    )
    assert f.filter(record("(Re-)joining group %s", "g", level=logging.INFO))
    assert not f.filter(record("(Re-)joining group %s", "g", level=logging.INFO))


def test_different_lines_and_levels_all_pass() -> None:
    f = RepeatFilter(window_s=30.0, clock=lambda: 0.0)
    assert f.filter(record("alert %s", "a"))
    assert f.filter(record("alert %s", "b"))
    assert f.filter(record("alert %s", "a", level=logging.WARNING))
    assert not f.filter(record("alert %s", "a"))
