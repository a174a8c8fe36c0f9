"""``PartitionProcessor.process_lines``: replay's lines a run at a time as arrays count, cut
and remember exactly what the per-event path does, line for line."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from spendbrake._simulate import simulate
from spendbrake.schemas import DEFAULT_DIMENSIONS, PriceTable, parse_ts, wire_ts
from spendbrake.streamer import PartitionProcessor
from spendbrake.streamer._lines import EventRows, epoch_seconds
from tests.streamer.streams import disorder

START = parse_ts("2026-09-07T00:00:00Z")
STEP_S = 300.0
PRICES = PriceTable.default().with_overrides(
    [
        {
            "provider": "acme",
            "model": "dated-1",
            "prices": [
                {"effective_from": "2026-01-01", "input": 1.0, "output": 2.0},
                {"effective_from": "2026-09-08", "input": 3.0, "output": 5.0, "cache_read": 0.5},
            ],
        }
    ]
)


def _processor() -> PartitionProcessor:
    return PartitionProcessor(
        "replay", 0, [list(d) for d in DEFAULT_DIMENSIONS], PRICES, traces=False
    )


def _lines(seed: int, customers: int = 0) -> list[bytes | None]:
    """Two days of calls with every kind of line the two paths could treat apart: re-sent
    (duplicates), held back within and past the lateness, priced by the table (one model
    with a price change on the second day, one unknown), ``ts`` in seconds, at an offset
    or to the millisecond, fields the checked path mends (an unknown one, ``"Batch"``),
    cross-field breaks, malformed lines and lines past the dedupe horizon. ``customers``:
    the customer-facing calls spread over that many customers (past what the run decoder
    shares as literals)."""
    rng = random.Random(seed)
    lines = []
    for event in simulate(START, 2 * 86400, rate_per_s=0.02, seed=seed):
        wire: dict[str, Any] = event.to_wire()
        if customers and "customer" in wire:
            wire["customer"] = f"c{rng.randrange(customers)}"
        roll = rng.random()
        if roll < 0.05:
            wire.pop("cost_usd", None)
            wire.update(provider="acme", model="dated-1", cache_read_tokens=0)
        elif roll < 0.07:
            wire.pop("cost_usd", None)
            wire.update(provider="acme", model=rng.choice(["mystery-1", "mystery-2"]))
        elif roll < 0.09:
            wire["ts"] = event.ts
        elif roll < 0.10:
            wire["ts"] = wire["ts"][:19] + "+00:00"
        elif roll < 0.11:
            wire["ts"] = wire["ts"][:23] + "Z"
        elif roll < 0.115:
            wire["note"] = "kept in extras"
        elif roll < 0.12:
            wire["workload"] = "Batch"
        elif roll < 0.123:
            wire["cache_read_tokens"] = wire["input_tokens"] + 1
        elif roll < 0.125:
            wire["outcome"] = "ok"
        elif roll < 0.13:
            wire[rng.choice(["team", "provider", "model"])] = rng.choice([" ", "\u00a0"])
        lines.append(orjson.dumps(wire))
    disorder(lines, rng, resent=60, late=30, on_time=120, bad=8)
    old = orjson.dumps(
        {"event_id": "old", "ts": "2026-08-30T12:00:00.000000Z", "provider": "openai",
         "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "team": "a"}
    )  # fmt: skip
    for at in rng.sample(range(len(lines) // 2, len(lines)), 3):
        lines.insert(at, old)  # past the 7-day horizon once the watermark is in September
    lines.insert(len(lines) // 3, None)  # a record with no value (a tombstone)
    return lines


def _per_event(lines: list[bytes | None]) -> tuple[PartitionProcessor, list[tuple[Any, ...]]]:
    """The reference: ``process_many`` up to each step's end, cut there (replay's loop
    before ``process_lines``)."""
    p = _processor()
    steps = []
    end = math.inf
    at = 0
    offsets = range(len(lines))
    no_ts = itertools.repeat(math.inf)
    while at < len(lines):
        upto = at + 1 if end == math.inf else len(lines)  # one at a time until a watermark
        at += p.process_many(lines[at:upto], offsets[at:upto], no_ts, until=end)
        watermark = p.rollups.watermark
        if watermark >= end:
            steps.append((_cells(p.cut()), watermark, p.next_offset))
            end = (watermark // STEP_S + 1) * STEP_S
        elif end == math.inf and watermark > -math.inf:
            end = (watermark // STEP_S + 1) * STEP_S
    return p, steps


def _by_lines(
    lines: list[bytes | None], batch: int
) -> tuple[PartitionProcessor, list[tuple[Any, ...]]]:
    p = _processor()
    steps = []
    for a in range(0, len(lines), batch):
        cuts = p.process_lines(lines[a : a + batch], range(a, min(a + batch, len(lines))), STEP_S)
        steps += [(_cells(rows), watermark, read) for rows, watermark, read in cuts]
    return p, steps


def _cells(rows: EventRows) -> list[tuple[Any, list[int]]]:
    """Rows summed per fine cell, in the order the cells first appear."""
    cells: dict[tuple[Any, ...], list[int]] = {}
    for minute, epoch, attrs, metrics in zip(
        rows.minute.tolist(), rows.epoch.tolist(), rows.attrs, rows.metrics.tolist(), strict=True
    ):
        cell = cells.setdefault((minute, epoch, *attrs), [0] * len(metrics))
        for k, value in enumerate(metrics):
            cell[k] += value
    return list(cells.items())


def _state(p: PartitionProcessor) -> dict[str, Any]:
    return {
        "stats": dataclasses.asdict(p.stats),
        "watermark": p.rollups.watermark,
        "late_events": p.rollups.late_events,
        "next_offset": p.next_offset,
        "buckets": p.dedupe.buckets,
        "new": p.dedupe.new,
        "unpriced_seen": p.unpriced_seen,
    }


@pytest.mark.parametrize("batch", [1, 7, 1024])
@pytest.mark.parametrize("seed", [1, 2])
def test_runs_of_lines_count_and_cut_as_the_per_event_path(seed: int, batch: int) -> None:
    lines = _lines(seed)
    want_p, want = _per_event(lines)
    got_p, got = _by_lines(lines, batch)
    got.append((_cells(got_p.cut()), got_p.rollups.watermark, got_p.next_offset))
    want.append((_cells(want_p.cut()), want_p.rollups.watermark, want_p.next_offset))
    assert len(got) == len(want) > 100
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {k}"
    assert _state(got_p) == _state(want_p)
    s = got_p.stats
    # Every kind of line was there to be told apart.
    assert s.duplicates and s.late and s.unpriced
    assert set(s.dead) >= {"ts", "cache_read_tokens", "payload", "team", "provider", "model"}
    assert len(got_p.unpriced_seen) >= 2


def test_customers_past_the_shared_values_count_and_cut_alike() -> None:
    """Customers past ``MAX_SHARED_VALUES``: decoded as text once the decoder gives up on
    sharing them, with the same counts and cuts."""
    lines = _lines(5, customers=3000)
    want_p, want = _per_event(lines)
    got_p, got = _by_lines(lines, 1024)
    got.append((_cells(got_p.cut()), got_p.rollups.watermark, got_p.next_offset))
    want.append((_cells(want_p.cut()), want_p.rollups.watermark, want_p.next_offset))
    assert got == want
    assert _state(got_p) == _state(want_p)


@pytest.mark.parametrize("batch", [7, 1024])
def test_a_long_stretch_for_the_per_event_path_counts_and_cuts_alike(batch: int) -> None:
    """Thousands of lines in a row with a field msgspec refuses (the checked path keeps it
    in ``extras``): taken by the per-event path in growing chunks, cut at the same steps."""
    lines = _lines(4)
    for i in range(1000, 3500):
        if lines[i] is not None:
            lines[i] = orjson.dumps({**orjson.loads(lines[i]), "region": "eu"})
    want_p, want = _per_event(lines)
    got_p, got = _by_lines(lines, batch)
    got.append((_cells(got_p.cut()), got_p.rollups.watermark, got_p.next_offset))
    want.append((_cells(want_p.cut()), want_p.rollups.watermark, want_p.next_offset))
    assert got == want
    assert _state(got_p) == _state(want_p)


def test_a_cut_line_at_a_time_is_the_same_cut() -> None:
    """A step may end on the first line of a call (the last one ended it)."""
    lines = _lines(3)[:3000]
    _, whole = _by_lines(lines, len(lines))
    _, single = _by_lines(lines, 1)
    assert whole == single


def test_process_lines_refuses_a_processor_that_keeps_traces() -> None:
    p = PartitionProcessor("t", 0, [["team"]], PRICES)
    with pytest.raises(ValueError, match="traces=False"):
        p.process_lines([], [], STEP_S)


def test_epoch_seconds_are_wire_ts() -> None:
    rng = random.Random(5)
    base = datetime(2000, 1, 1, tzinfo=UTC)
    texts = [
        (base + timedelta(microseconds=rng.randrange(100 * 365 * 86400 * 10**6))).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        for _ in range(20000)
    ]
    texts += ["2024-02-29T23:59:59.999999Z", "2000-01-01T00:00:00.000000Z"]
    got = epoch_seconds(texts)
    assert got is not None
    assert got.tolist() == [wire_ts(t) for t in texts]


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29T00:00:00.000000Z",  # not a leap year
        "2026-04-31T00:00:00.000000Z",
        "2026-13-01T00:00:00.000000Z",
        "2026-01-01T24:00:00.000000Z",
        "2026-01-01T00:60:00.000000Z",
        "2026-01-01T00:00:60.000000Z",
        "2026-01-01 00:00:00.000000Z",
        "2026-01-01T00:00:00.00000aZ",
        "1999-12-31T23:59:59.999999Z",  # before MIN_TS
        "2026-01-01T00:00:00.000000+",
        "2026-01-01T00:00:00.000Z",  # another shape: wire_ts's
        "2026-01-01T00:00:00.000000é",
    ],
)
def test_epoch_seconds_leaves_every_other_text_to_wire_ts(text: str) -> None:
    assert epoch_seconds(["2026-01-01T00:00:00.000000Z", text]) is None
