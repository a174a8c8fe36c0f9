"""``StepFold``: replay's flush, many steps at once, gives each step the records the flush
gives (bar calls by outcome, which the watch never reads)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest

from spendbrake import _replay
from spendbrake._config_loader import build_config, parse_yaml
from spendbrake._replay import ReplayStats, RollupPlan, rolled_up
from spendbrake._simulate import parse_incident, simulate
from spendbrake.detectors import SpendWatch
from spendbrake.schemas import RollupColumns, RollupRecord
from spendbrake.streamer import RollupState, StepFold, _columnar
from spendbrake.streamer._columnar import Cells
from spendbrake.streamer._lines import EventRows, rows_of_cells
from tests.cli.test_replay_split import CONFIG, START, YAML
from tests.streamer.streams import disorder

# Replay's test config (two budgets, one on a team: minutes of that team only) and start.
WATCH = SpendWatch(CONFIG, partitions=1)
DIMS = CONFIG.rollup_dimensions()
PLAN = RollupPlan(WATCH.windows_read(DIMS), WATCH.minutes_read(DIMS), WATCH.peek_s)


def _lines() -> list[bytes]:
    """Two days with a runaway, re-sent lines (duplicates), lines held back within the
    lateness (into windows a step already emitted) and past it (late epochs), calls by
    outcome, and lines the processor rejects."""
    runaway = parse_incident("runaway:team=search,x=40,start=+1d,duration=3h")
    events = simulate(START, 2 * 86400, rate_per_s=0.05, seed=3, incidents=[runaway])
    rng = random.Random(2)
    lines = []
    for event in events:
        if rng.random() < 0.1:
            event = msgspec.structs.replace(event, outcome=rng.choice(["ok", "error"]))
        lines.append(event.to_json() + b"\n")
    disorder(
        lines,
        rng,
        resent=100,
        late=40,
        on_time=200,
        bad=10,
        bad_line=b'{"event_id": "x", "ts": 1}\n',
    )
    return lines


class _Flushed:
    """A stand-in for ``StepFold`` that folds each step by ``RollupState.flush``: the
    reference."""

    def __init__(self, state: RollupState) -> None:
        self.state = RollupState(
            state.dimensions,
            state.partition,
            state.lateness_s,
            dim_windows_s=state.dim_windows_s,
            finals=False,
            minute_values=PLAN.minute_values,
        )
        self.steps: list[tuple[list[RollupRecord], float]] = []
        self.held = 0

    def take(self, rows: EventRows, watermark: float) -> None:
        cells: Cells = {}
        for minute, epoch, attrs, metrics in zip(
            rows.minute.tolist(),
            rows.epoch.tolist(),
            rows.attrs,
            rows.metrics.tolist(),
            strict=True,
        ):
            cell = cells.setdefault((minute, epoch, *attrs), [0] * len(metrics) + [None])
            for k, value in enumerate(metrics):
                cell[k] += value
        self.state.fine = cells
        self.state.watermark = watermark
        self.steps.append((self.state.flush(), watermark))

    def fold(
        self, packed: bool = False, sent_metrics: int | None = None
    ) -> Iterator[tuple[list[RollupRecord], float]]:
        steps, self.steps = self.steps, []
        return iter(steps)


def _records(blocks: list[RollupColumns]) -> list[RollupRecord]:
    return [r for block in blocks for r in block.records()]


def _canonical(steps: list[Any]) -> list[tuple[list[bytes], float, int]]:
    """Each step's records without their calls by outcome, in one order; its watermark and
    lines read."""
    encode = msgspec.msgpack.encode
    return [
        (sorted(encode(msgspec.structs.replace(r, outcomes={})) for r in records), mark, read)
        for records, mark, read in steps
    ]


@pytest.mark.parametrize(("fold_rows", "max_combos"), [(1, 10**9), (60, 3), (10**9, 10**9)])
def test_steps_are_the_flushs(
    monkeypatch: pytest.MonkeyPatch, fold_rows: int, max_combos: int
) -> None:
    """Folded a step at a time, a few at a time forgetting the series of closed windows as
    often as it can, and in folds doubling from 40 rows to all that is left."""
    lines = _lines()
    monkeypatch.setattr(_replay, "FOLD_ROWS", fold_rows)
    monkeypatch.setattr(_replay, "FIRST_FOLD_ROWS", min(fold_rows, 40))
    monkeypatch.setattr(_columnar, "MAX_COMBOS", max_combos)
    stats = ReplayStats()
    folded = [(_records(b), m, n) for b, m, n in rolled_up(lines, CONFIG, 600.0, PLAN, stats)]
    monkeypatch.setattr(_replay, "StepFold", _Flushed)
    flushed: list[Any] = list(rolled_up(lines, CONFIG, 600.0, PLAN, ReplayStats()))
    assert stats.late and stats.duplicates and stats.dead  # every kind of line
    records = [r for step in flushed for r in step[0]]
    assert {r.epoch > 0 for r in records} == {True, False}
    assert {r.window_s for r in records} == {60, 3600}
    assert len(folded) == len(flushed) > 500
    assert _canonical(folded) == _canonical(flushed)
    assert not any(r.outcomes for step in folded for r in step[0])


def _cells(rows: list[tuple[int, str, int]]) -> Cells:
    """Fine cells of (minute, team, cost) with one call each."""
    out: Cells = {}
    for minute, team, cost in rows:
        key = (minute, 0, team, "f", "k", None, "prod", "standard", "m", "p")
        out[key] = [cost, 1, 0, 0, 0, 0, 0, 0, None]
    return out


@pytest.mark.parametrize("cost", [2**61, 2**63 - 1, 2**70])
def test_totals_past_int64_stay_exact(cost: int) -> None:
    """Sums that leave int64 (a window's, or only the fold's arrays') are Python ints, as
    the flush's."""
    steps = [
        (_cells([(0, "a", cost), (60, "b", 5)]), 120.0),
        (_cells([(120, "a", cost), (180, "a", 7)]), 240.0),
        (_cells([(240, "a", cost), (3600, "a", cost)]), 3700.0),
    ]
    dims = [("team",)]
    fold = StepFold(RollupState(dims, lateness_s=600.0, finals=False, windows_s=(3600,)))
    flush = RollupState(dims, lateness_s=600.0, finals=False, windows_s=(3600,))
    for cells, mark in steps[:2]:
        fold.take(rows_of_cells(cells), mark)
    got = [_records(blocks) for blocks, _ in fold.fold()]
    fold.take(rows_of_cells(steps[2][0]), steps[2][1])
    got += [_records(blocks) for blocks, _ in fold.fold()]
    want = []
    for cells, mark in steps:
        flush.fine, flush.watermark = cells, mark
        want.append(flush.flush())
    assert got == want
    # Team a's first hour, carried from the first fold into the second.
    assert got[2][0].values == ("a",) and got[2][0].metrics[0] == 3 * cost + 7


def test_steps_are_the_flushs_with_minutes_of_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget on one model: the model set (not one a key's attributes decide) rolls up
    minutes of that model alone, and a fold places its new combinations' series a set at a
    time, the others without minutes, as the flush places them one at a time."""
    config = build_config(
        *parse_yaml(YAML + "  - {name: m, amount_usd: 5, period: day, scope: {model: gpt-4.1}}\n"),
        env={},
    )
    watch = SpendWatch(config, partitions=1)
    dims = config.rollup_dimensions()
    plan = RollupPlan(watch.windows_read(dims), watch.minutes_read(dims), watch.peek_s)
    assert plan.minute_values[dims.index(("model",))] == {("gpt-4.1",)}
    monkeypatch.setitem(globals(), "PLAN", plan)
    monkeypatch.setattr(_replay, "FOLD_ROWS", 60)
    monkeypatch.setattr(_replay, "FIRST_FOLD_ROWS", 40)
    monkeypatch.setattr(_columnar, "MAX_COMBOS", 3)
    lines = _lines()
    folded = [
        (_records(b), m, n) for b, m, n in rolled_up(lines, config, 600.0, plan, ReplayStats())
    ]
    monkeypatch.setattr(_replay, "StepFold", _Flushed)
    flushed: list[Any] = list(rolled_up(lines, config, 600.0, plan, ReplayStats()))
    models = {r.values for step in flushed for r in step[0] if r.dims == ("model",)}
    minutes = {
        r.values for step in flushed for r in step[0] if r.dims == ("model",) and r.window_s == 60
    }
    assert len(models) > 1 and minutes == {("gpt-4.1",)}
    assert _canonical(folded) == _canonical(flushed)


@pytest.mark.parametrize("seed", range(40))
def test_lex_order_is_lexsorts(seed: int) -> None:
    """The fold's sort by 16-bit digits of a composite key gives ``np.lexsort``'s order, ties
    and all: keys of one value, of narrow and wide spans, negative offsets, spans past 2**62
    (plain ``lexsort`` then)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    keys = tuple(
        rng.integers(0, int(rng.choice([1, 2, 50, 70_000, 2**20, 2**40])), n)
        + int(rng.integers(-(2**40), 2**40))
        for _ in range(int(rng.integers(1, 5)))
    )
    assert (_columnar._lex_order(keys) == np.lexsort(keys)).all()
