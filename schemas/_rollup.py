"""The rollups topic's two records: a window's absolute totals and a watermark mark.

``RollupRecord`` is built on the hot path (a flush builds one per changed window) and read
by the detectors, the store and the crash checks; ``encode_rollup`` writes it in the
contract's bytes and ``decode_rollup`` reads a topic value back, type-checked.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from ._time import format_ts
from ._units import METRICS, NUSD

#: The tumbling window sizes rollups come in: a minute, an hour, a day.
ROLLUP_WINDOWS_S: tuple[int, ...] = (60, 3600, 86400)
#: The name a capped set of names counts the rest under: a window's outcomes past their cap,
#: series past ``limits.series_per_set``, metric label values from event data, unpriced
#: models.
OTHER = "(other)"

__all__ = [
    "OTHER",
    "RollupColumns",
    "RollupRecord",
    "WatermarkMark",
    "decode_rollup",
    "encode_mark",
    "encode_rollup",
]


class RollupRecord(msgspec.Struct, array_like=True, gc=False):
    """Absolute totals of one window of one series, from one partition and epoch.

    A flush builds one per changed window, so it is the cheapest record to build: a msgspec
    Struct untracked by the garbage collector (it holds no cycles) takes 41 ns, a slots
    dataclass 101 ns, a frozen dataclass about 1.4 us (each field set through
    ``object.__setattr__``). Never changed once built, though not frozen. ``array_like``:
    msgspec writes it as an array of its fields, as replay's two processes pass records
    (``spendbrake._replay_split``); the topic's wire form is ``to_wire``'s.
    """

    dims: tuple[str, ...]
    values: tuple[str | None, ...]
    window_s: int
    window_start: int
    partition: int
    epoch: int
    metrics: tuple[int, ...]
    outcomes: dict[str, int] = {}
    final: bool = False

    @property
    def cost_usd(self) -> float:
        return self.metrics[0] / NUSD

    def key(self) -> bytes:
        return orjson.dumps(
            [self.dims, self.values, self.window_s, self.window_start, self.partition, self.epoch]
        )

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "series": dict(zip(self.dims, self.values, strict=True)),
            "dims": list(self.dims),
            "window_s": self.window_s,
            "window_start": _window_ts(self.window_start),
            "window_end": _window_ts(self.window_start + self.window_s),
            "window_start_ts": self.window_start,
            "partition": self.partition,
            "epoch": self.epoch,
            "cost_usd": self.cost_usd,
            "cost_nusd": self.metrics[0],
        }
        for name, value in zip(METRICS[1:], self.metrics[1:], strict=True):
            out[name] = value
        out["outcomes"] = self.outcomes
        out["final"] = self.final
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RollupRecord:
        dims = tuple(data["dims"])
        return cls(
            dims=dims,
            values=tuple(data["series"][d] for d in dims),
            window_s=data["window_s"],
            window_start=data["window_start_ts"],
            partition=data["partition"],
            epoch=data["epoch"],
            metrics=(data["cost_nusd"], *(data[name] for name in METRICS[1:])),
            outcomes=data.get("outcomes") or {},
            final=data.get("final", False),
        )


class RollupColumns(msgspec.Struct, array_like=True, gc=False):
    """Rollup records of one dimension set and window size, a column per field (calls by
    outcome left out, ``final`` false): how replay's rollup half hands the watch a step
    (``StepFold``, ``SpendWatch.observe_columns``). A record each cost more to build, to
    send between replay's two processes and to read than the whole fold.

    >>> block = RollupColumns(("team",), 3600, 0, [("a",)], [0], [0], [[5], [1], *[[0]] * 6])
    >>> block.records() == [RollupRecord(("team",), ("a",), 3600, 0, 0, 0, (5, 1, *[0] * 6))]
    True
    """

    dims: tuple[str, ...]
    window_s: int
    partition: int
    values: list[tuple[str | None, ...]]
    starts: list[int]
    epochs: list[int]
    #: One list per metric, in ``METRICS`` order.
    metrics: list[list[int]]

    @classmethod
    def runs(cls, records: Iterable[RollupRecord]) -> list[RollupColumns]:
        """Records as blocks, one per run of consecutive records of one set, window size and
        partition: read in turn, the blocks change what the records would, in their order."""
        blocks: list[RollupColumns] = []
        key = None
        block = None
        for r in records:
            if (r.dims, r.window_s, r.partition) != key or block is None:
                key = (r.dims, r.window_s, r.partition)
                block = cls(r.dims, r.window_s, r.partition, [], [], [], [[] for _ in METRICS])
                blocks.append(block)
            block.values.append(r.values)
            block.starts.append(r.window_start)
            block.epochs.append(r.epoch)
            # Records built by hand may carry just (cost, calls): the rest count as zeros.
            for column, value in itertools.zip_longest(block.metrics, r.metrics, fillvalue=0):
                column.append(value)
        return blocks

    def records(self) -> list[RollupRecord]:
        metrics = zip(*self.metrics, strict=True)
        rows = zip(self.values, self.starts, self.epochs, metrics, strict=True)
        return [
            RollupRecord(self.dims, v, self.window_s, s, self.partition, e, m)
            for v, s, e, m in rows
        ]


class _WireRollup(msgspec.Struct, gc=False):
    """``RollupRecord.to_wire()`` as a struct: same fields in the same order, encoded in C."""

    series: dict[str, str | None]
    dims: tuple[str, ...]
    window_s: int
    window_start: str
    window_end: str
    window_start_ts: int
    partition: int
    epoch: int
    cost_usd: float
    cost_nusd: int
    calls: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    unpriced_calls: int
    outcomes: dict[str, int]
    final: bool


_encode = msgspec.json.Encoder().encode


def encode_rollup(record: RollupRecord) -> bytes:
    """``orjson.dumps(record.to_wire())``, byte for byte, without the dict.

    msgspec returns a ``bytes`` the size of its content, where orjson's carries a 4 KB
    buffer (see ``stages.ingest._trim``), so the value needs no copy before it is queued.
    """
    m = record.metrics
    start = record.window_start
    return _encode(
        _WireRollup(
            dict(zip(record.dims, record.values, strict=True)),
            record.dims,
            record.window_s,
            _window_ts(start),
            _window_ts(start + record.window_s),
            start,
            record.partition,
            record.epoch,
            m[0] / NUSD,
            *m,
            record.outcomes,
            record.final,
        )
    )


_decode_wire = msgspec.json.Decoder(_WireRollup).decode


class WatermarkMark(msgspec.Struct, gc=False):
    """The other record of the rollups topic: input partition ``mark``'s event time has
    reached ``watermark``, and every window it emitted before is on this partition."""

    mark: int
    watermark: float


encode_mark = _encode
_decode_mark = msgspec.json.Decoder(WatermarkMark).decode


def decode_rollup(value: bytes) -> RollupRecord | WatermarkMark:
    """A rollups-topic value, type-checked; ``ValueError`` saying what is wrong if it is
    neither a window nor a mark (another writer, another version), so a reader can skip it
    instead of failing on it at every restart. About 4x faster than orjson and a dict."""
    try:
        w = _decode_wire(value)
    except msgspec.ValidationError as exc:
        try:
            return _decode_mark(value)
        except msgspec.DecodeError as mark_exc:
            # A record with a ``mark`` is a bad mark: name its field, not a window's.
            why = exc if "field `mark`" in str(mark_exc) else mark_exc
            raise ValueError(f"not a rollup record: {why}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a rollup record: {exc}") from None
    series = w.series
    if len(series) != len(w.dims) or any(d not in series for d in w.dims):
        raise ValueError(f"not a rollup record: series {series} does not match dims {w.dims}")
    return RollupRecord(
        w.dims,
        tuple(series[d] for d in w.dims),
        w.window_s,
        w.window_start_ts,
        w.partition,
        w.epoch,
        (
            w.cost_nusd,
            w.calls,
            w.input_tokens,
            w.cache_read_tokens,
            w.cache_write_tokens,
            w.output_tokens,
            w.reasoning_tokens,
            w.unpriced_calls,
        ),
        w.outcomes,
        w.final,
    )


@functools.lru_cache(maxsize=4096)
def _window_ts(ts: int) -> str:
    """Window bounds repeat across series, so their RFC 3339 text is cached."""
    return format_ts(ts)
