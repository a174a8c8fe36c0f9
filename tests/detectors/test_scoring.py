"""The early look's choice of what to peek at (``detectors._scoring``)."""

from __future__ import annotations

import itertools
import math

import pytest

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.detectors._scoring import NUSD, _worth_peeking, cost_floor
from spendbrake.detectors._series import metric_value
from spendbrake.schemas import Config, DetectorConfig, RollupRecord

T0 = 1_790_553_600  # Monday 2026-09-28 00:00 UTC


def test_a_rate_judging_detector_is_peeked_at_before_the_hour_outspends_the_last() -> None:
    # A loop that began at 12:50 made 12:00 dear ($100); by 13:15 it has spent $40, a
    # quarter of the hour at 1.6x the previous hour's rate. A detector that judges the part
    # seen as a rate (baseline counting calls) looks now; one that judges the hour's sum
    # against the whole hour's waits until the hour passes $100, as it did.
    cfg = DetectorConfig(kind="baseline", metric="cost_usd")
    closed = (100 * NUSD, 50)  # the hour before's cost_nusd and calls
    counted = make_detector("baseline", count_x=8.0)
    assert counted.peeks_partial
    assert _worth_peeking(cfg, counted, 40.0, 20, *closed, seen=0.25)
    assert not _worth_peeking(cfg, counted, 20.0, 10, *closed, seen=0.25)
    other = make_detector("cloud_sigma")
    assert not other.peeks_partial
    assert not _worth_peeking(cfg, other, 40.0, 20, *closed, seen=0.25)


@pytest.mark.parametrize(
    "min_usd",
    [0.0, 5.0, 5, 0.1, 1e-9, 1e-12, 3.3333333333, 12.345678901, 1e7, 2.0**60, -1.5, 10**20],
)
def test_the_cost_floor_is_the_least_cost_over_min_usd(min_usd: float) -> None:
    """``cost_floor`` stands for ``_worth_peeking``'s ``value > min_usd`` in its own floats:
    every cost from it passes, every cost under it fails."""
    floor = cost_floor(min_usd)
    assert isinstance(floor, int)
    for cost in range(floor - 300, floor + 300):
        assert (cost / NUSD > min_usd) is (cost >= floor), cost


def test_a_min_usd_nothing_passes_has_no_floor() -> None:
    assert cost_floor(math.nan) == math.inf
    assert cost_floor(math.inf) == math.inf
    assert cost_floor(-math.inf) == -math.inf


def _grid_watch() -> SpendWatch:
    """Series of two kinds: a team's (baselines of two ``min_usd``, ``wow``, whose early looks
    a cost floor can rule out) and a key's (``shift`` on cost per call and a baseline on
    calls too, which may look at any cost)."""
    config = Config.model_validate(
        {
            "dimensions": [["team"], ["api_key"]],
            "detectors": [
                {"kind": "baseline", "params": {"count_x": 8.0, "min_usd": 5.0}},
                {"kind": "baseline", "params": {"min_usd": 2.5}},
                {"kind": "wow"},
                {"kind": "shift", "metric": "cost_per_call", "dimensions": [["api_key"]]},
                {"kind": "baseline", "metric": "calls", "dimensions": [["api_key"]]},
            ],
        }
    )
    watch = SpendWatch(config)
    watch.observe(
        [
            RollupRecord(("team",), ("search",), 3600, T0, 0, 0, (NUSD, 1)),
            RollupRecord(("api_key",), ("k-1",), 3600, T0, 0, 0, (NUSD, 1)),
        ]
    )
    return watch


def test_an_hour_under_a_detectors_cost_floor_is_one_it_would_not_peek_at() -> None:
    """The early look skips a detector for an hour under its floor (and a series' hour under
    all of them) without asking ``_worth_peeking``: on a grid of hours passing and failing
    each of its bars (``min_usd``, the previous hour whole or in part, the recent rate, the
    calls), none skipped would have been looked at, and each floor is exactly where its
    ``min_usd`` begins to pass."""
    watch = _grid_watch()
    config = watch.config
    team = watch.series[(("team",), ("search",))]
    key = watch.series[(("api_key",), ("k-1",))]
    floor, peekers = watch.scoring._plan(team, config)
    assert [least for _, _, least in peekers] == [cost_floor(5.0), cost_floor(2.5)]
    assert floor == cost_floor(2.5)  # wow compares days: never peeked at, no floor of its own
    key_floor, key_peekers = watch.scoring._plan(key, config)
    assert key_floor == -math.inf  # shift and a baseline on calls may look at any cost
    assert [least for _, _, least in key_peekers] == [
        cost_floor(5.0),
        cost_floor(2.5),
        -math.inf,
        -math.inf,
    ]
    costs = [0, 1, floor - 1, floor, floor + 1, cost_floor(5.0) - 1, cost_floor(5.0), 40 * NUSD]
    skipped = looked = 0
    for series, (_, plan) in ((team, (floor, peekers)), (key, (key_floor, key_peekers))):
        dets = series.bank.at(series.row)
        for cost, calls, closed_cost, closed_calls, seen, recent in itertools.product(
            costs,
            [0, 1, 10, 500],
            [0, NUSD, 100 * NUSD],
            [0, 3, 400],
            [1 / 12, 0.5, 1.0],
            [None, (2.0, 0.25), (300.0, 0.25)],
        ):
            for p, cfg, least in plan:
                worth = _worth_peeking(
                    cfg,
                    dets[p],
                    metric_value(cfg, cost, calls),
                    calls,
                    closed_cost,
                    closed_calls,
                    seen,
                    recent,
                )
                if cost < least:
                    skipped += 1
                    assert not worth, (
                        cfg.kind,
                        cost,
                        calls,
                        closed_cost,
                        closed_calls,
                        seen,
                        recent,
                    )
                else:
                    looked += worth
    assert skipped and looked  # the grid has hours on both sides, and some worth a look
