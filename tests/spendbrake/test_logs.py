"""Identical log lines are held back for a window, then counted; different ones pass."""

from __future__ import annotations

import logging

from spendbrake._logs import RepeatFilter


def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", level, __file__, 1, msg, args, None)


def test_repeats_are_held_back_then_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window_s=30.0, clock=lambda: now[0])
    passed = []
    for i in range(300):  # every 100 ms for 30 s, then once more
        now[0] = i * 0.1
        r = record("Unable connect to node with id %d", 111)
        if f.filter(r):
            passed.append(r.getMessage())
    now[0] = 30.0
    r = record("Unable connect to node with id %d", 111)
    assert f.filter(r)
    passed.append(r.getMessage())
    assert passed == [
        "Unable connect to node with id 111",
        "Unable connect to node with id 111 (and 299 more like it in the last 30s)",
    ]


def test_different_lines_and_levels_all_pass() -> None:
    f = RepeatFilter(window_s=30.0, clock=lambda: 0.0)
    assert f.filter(record("alert %s", "a"))
    assert f.filter(record("alert %s", "b"))
    assert f.filter(record("alert %s", "a", level=logging.WARNING))
    assert not f.filter(record("alert %s", "a"))
