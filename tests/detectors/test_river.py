"""``river_snarimax`` on the same synthetic series as ``baseline``: catches, stays quiet."""

from __future__ import annotations

import numpy as np
import pytest

from spendbrake.detectors import make_detector
from tests.detectors.synth import WEEK_H, run, spend

AT = 4 * WEEK_H


def alerts(ys: np.ndarray, **params: float) -> list[int]:
    d = make_detector("river_snarimax", **params)
    return [i for i, v in enumerate(run(d, ys)) if v.is_anomaly]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quiet_with_bursts_then_catches_runaway(seed: int) -> None:
    ys = spend(5, seed=seed)
    ys[AT + 14 : AT + 17] *= 20.0
    hits = [i for i in alerts(ys) if i >= 2 * WEEK_H]
    assert hits and hits[0] in (AT + 14, AT + 15)
    assert all(AT + 14 <= i < AT + 17 for i in hits)


def test_price_change_becomes_normal() -> None:
    rng = np.random.default_rng(0)
    ys = 0.01 * rng.lognormal(0.0, 0.1, 5 * WEEK_H)
    ys[AT:] *= 3.0
    hits = alerts(ys, min_usd=0.005)
    assert hits and hits[0] == AT
    assert len(hits) <= 8
