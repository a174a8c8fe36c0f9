"""A run of counted events as columns: what replay's rollup half hands ``StepFold``.

``PartitionProcessor.process_lines`` takes replay's lines a run at a time: msgspec decodes
each (``decode_run``), and the checks, dedupe, pricing and late epochs that the per-event
path does one event at a time are done on the run's columns. Its counted events become
``EventRows``, one row each, in input order; ``StepFold`` sums them per window. Fine cells
(the per-event path's) become rows too (``rows_of_cells``): a row is a cell of one event.

``epoch_seconds`` is ``wire_ts`` for a run of the common text shape, in numpy: the same
floats (``tests/streamer/test_lines.py`` checks it against ``wire_ts``), at half the cost
(0.19 against 0.39 us a time, runs of 1,024).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from spendbrake.schemas import (
    MAX_TS,
    METRICS,
    MIN_TS,
    InvalidEvent,
    UsageEvent,
    decode_run,
    wire_ts,
)

__all__ = ["EventRows", "epoch_seconds", "rows_of_cells", "vouched"]

_N = len(METRICS)
#: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: what the SDK and ``format_ts`` write.
_SHAPE = 27
_FIXED = np.array([4, 7, 10, 13, 16, 19, 26])
_FIXED_CHARS = np.frombuffer(b"--T::.Z", dtype=np.uint8)
_DIGITS = np.array([i for i in range(_SHAPE) if i not in _FIXED.tolist()])


def _places() -> np.ndarray:
    """Place values turning the 20 digits into year, month, day, hour, minute, second and
    microseconds: a matrix product, in floats (BLAS's; numpy multiplies integer matrices
    in a plain loop, 8x slower here), exact since every sum is below 10**6."""
    out = np.zeros((20, 7), dtype=np.float64)
    for field, (a, b) in enumerate([(0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14), (14, 20)]):
        out[a:b, field] = 10 ** np.arange(b - a - 1, -1, -1)
    return out


_PLACES = _places()
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class EventRows(NamedTuple):
    """Counted events (or fine cells), a row each: the minute and epoch they fall in, their
    attributes (``ATTRS`` order) and their ``METRICS``."""

    minute: np.ndarray
    epoch: np.ndarray
    attrs: list[tuple[Any, ...]]
    #: (rows, ``len(METRICS)``) int64, or Python ints (object) when a cell's sums leave it.
    metrics: np.ndarray

    @staticmethod
    def empty() -> EventRows:
        none = np.zeros(0, dtype=np.int64)
        return EventRows(none, none, [], np.zeros((0, _N), dtype=np.int64))

    def slice(self, a: int, b: int) -> EventRows:
        return EventRows(self.minute[a:b], self.epoch[a:b], self.attrs[a:b], self.metrics[a:b])

    @staticmethod
    def joined(parts: list[EventRows]) -> EventRows:
        if not parts:
            return EventRows.empty()
        if len(parts) == 1:
            return parts[0]
        metrics = [p.metrics for p in parts]
        if any(m.dtype == object for m in metrics):
            metrics = [m.astype(object) for m in metrics]
        return EventRows(
            np.concatenate([p.minute for p in parts]),
            np.concatenate([p.epoch for p in parts]),
            list(itertools.chain.from_iterable(p.attrs for p in parts)),
            np.concatenate(metrics),
        )


_ts_of = operator.attrgetter("ts")
_tokens_of = operator.attrgetter(
    "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"
)


def vouched(
    values: Sequence[bytes | None],
    decode: Callable[[Sequence[bytes | None]], list[UsageEvent]] = decode_run,
) -> tuple[list[UsageEvent], np.ndarray, np.ndarray]:
    """The records ``fast_decode`` would accept before the first it would not, as columns:
    (their events, with ``ts`` as it came; their times in epoch seconds; their token counts,
    input, cache read, cache write, output, reasoning). The times and tokens end at the run's
    end; the events list may go on (the caller reads as far as they do). ``decode`` is
    ``decode_run`` or a ``RunDecoder``'s, which gives the same events faster."""
    events = decode(values)
    texts = list(map(_ts_of, events))
    ts = epoch_seconds(texts)
    if ts is None:
        times = []
        for text in texts:
            if type(text) is str:
                try:
                    text = wire_ts(text)
                except InvalidEvent:
                    break
            times.append(text)
        ts = np.array(times, dtype=np.float64)
    n = len(ts)
    tokens = np.fromiter(
        itertools.chain.from_iterable(map(_tokens_of, events[:n])), np.int64, 5 * n
    ).reshape(n, 5)
    # The two cross-field rules ``fast_decode`` checks.
    refused = (tokens[:, 1] + tokens[:, 2] > tokens[:, 0]) | (tokens[:, 4] > tokens[:, 3])
    if refused.any():
        n = int(refused.argmax())
    return events, ts[:n], tokens[:n]


_minute_of = operator.itemgetter(0)
_epoch_of = operator.itemgetter(1)
_attrs_of = operator.itemgetter(slice(2, None))
_metrics_of = operator.itemgetter(*range(_N))


def rows_of_cells(cells: dict[tuple[Any, ...], list[Any]]) -> EventRows:
    """Fine cells (``RollupState.fine``: (minute, epoch, *attrs) -> deltas) as rows, in the
    order they were made; their calls by outcome are left out (the watch never reads them)."""
    keys = list(cells)
    n = len(keys)
    return EventRows(
        np.fromiter(map(_minute_of, keys), np.int64, n),
        np.fromiter(map(_epoch_of, keys), np.int64, n),
        list(map(_attrs_of, keys)),
        _matrix(cells.values(), n),
    )


def _matrix(deltas: Iterable[list[Any]], n: int) -> np.ndarray:
    """The cells' metrics as an (n, ``_N``) array: int64, or Python ints past it."""
    flat = list(itertools.chain.from_iterable(map(_metrics_of, deltas)))
    try:
        return np.array(flat, dtype=np.int64).reshape(n, _N)
    except OverflowError:
        return np.array(flat, dtype=object).reshape(n, _N)


def epoch_seconds(texts: list[Any]) -> np.ndarray | None:
    """``wire_ts`` of each text, if every one has the common shape and a valid date and time
    in ``[MIN_TS, MAX_TS)``; else None (the caller asks ``wire_ts``, which decides).

    The float is what ``datetime.timestamp`` gives: the whole microseconds since the epoch
    divided by a million, one correctly rounded division (the microseconds are exact in a
    float below 2**53, about the year 2255).
    """
    n = len(texts)
    try:
        raw = "".join(texts).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None  # seconds on the wire, or not ASCII
    if len(raw) != n * _SHAPE:
        return None
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(n, _SHAPE)
    if not (chars[:, _FIXED] == _FIXED_CHARS).all():
        return None
    digits = chars[:, _DIGITS] - np.uint8(ord("0"))  # a non-digit wraps past 9
    if digits.max(initial=0) > 9:
        return None
    year, month, day, hour, minute, second, micro = (
        (digits.astype(np.float64) @ _PLACES).astype(np.int64).T
    )
    if ((month < 1) | (month > 12) | (hour > 23) | (minute > 59) | (second > 59)).any():
        return None
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = _DAYS_IN_MONTH[month] + (leap & (month == 2))
    if ((day < 1) | (day > month_days)).any():
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (years from 1 on).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    micros = ((days * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micro
    ts = micros.astype(np.float64) / 1e6
    if not ((ts >= MIN_TS) & (ts < MAX_TS)).all():
        return None
    return ts
