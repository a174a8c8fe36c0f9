"""``wow`` on synthetic hourly spend: once per rise, again on a grown rise, floor respected."""

from __future__ import annotations

import math

import numpy as np
from spendbrake.detectors import make_detector

from tests.detectors.synth import WEEK_H, run, spend

DAY = 24


def steady(weeks: float, seed: int = 1) -> np.ndarray:
    """Weekly-shaped spend, light noise, no bursts: the rise under test is the only change."""
    return spend(weeks, seed=seed, sigma=0.05, bursts_per_week=0)


def fired(name: str, ys: np.ndarray, **params: float) -> list[int]:
    return [i for i, v in enumerate(run(make_detector(name, **params), ys)) if v.is_anomaly]


def test_fires_once_on_forty_percent_rise() -> None:
    ys = steady(3)
    at = WEEK_H + 3 * DAY
    ys[at:] *= 1.4
    hits = fired("wow", ys)
    assert len(hits) == 1
    assert at < hits[0] < at + DAY  # the trailing day crosses +30 % part-way in


def test_fires_again_when_rise_grows_by_a_step() -> None:
    ys = steady(3)
    at = WEEK_H + 2 * DAY
    ys[at:] *= 1.4
    ys[at + 2 * DAY :] *= 2.0 / 1.4  # from +40 % to +100 %
    hits = fired("wow", ys)
    assert len(hits) == 2
    assert hits[1] >= at + 2 * DAY


def test_naive_fires_every_window() -> None:
    ys = steady(3)
    at = WEEK_H + 3 * DAY
    ys[at:] *= 1.4
    assert len(fired("wow_naive", ys)) > 20


def test_never_fires_under_min_usd() -> None:
    ys = steady(3) / 600.0  # ~$0.10/h: a tripling is still pennies a day
    ys[WEEK_H + DAY :] *= 3.0
    assert fired("wow", ys) == []
    assert fired("wow_naive", ys) != []


def test_silent_day_last_week_is_not_a_rise() -> None:
    ys = steady(3)
    ys[WEEK_H : WEEK_H + DAY] = 0.0
    ys[WEEK_H + 2 * DAY : WEEK_H + 3 * DAY] = np.nan
    assert fired("wow", ys) == []


def test_seven_day_window_state_stays_small() -> None:
    import pickle

    d = make_detector("wow", window_s=7 * 86400.0)
    ys = steady(4)
    ys[2 * WEEK_H :] *= 1.5
    hits = [i for i, v in enumerate(run(d, ys)) if v.is_anomaly]
    assert len(hits) == 1
    assert len(pickle.dumps(d)) <= 2048


def test_reason_and_expected() -> None:
    ys = steady(3)
    ys[WEEK_H + 3 * DAY :] *= 1.4
    vs = run(make_detector("wow"), ys)
    v = next(v for v in vs if v.is_anomaly)
    assert v.expected is not None and v.observed > v.expected * 1.3
    assert v.reason.startswith("last 24h $") and "a week earlier (+" in v.reason


def test_absurd_values_are_not_compared() -> None:
    ys = steady(2)
    ys[WEEK_H + DAY :] = 1e300  # beyond float32: a data error, not a rise to page on
    vs = run(make_detector("wow"), ys)
    assert not any(v.is_anomaly for v in vs)
    assert vs[-1].reason == "window sum out of range; not compared"


def lumpy_days(weeks: int, seed: int) -> np.ndarray:
    """A few $10 calls an hour with daily legit bursts: the trailing day swings +-20 %."""
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * WEEK_H)
    rate = 4.0 * (0.35 + np.exp(-(((hours % 24 - 15.0) / 4.5) ** 2)))
    rate = rate * rng.lognormal(-0.03, 0.25, len(hours))
    rate[rng.random(len(hours)) < 1 / 24] *= 3.0  # a legit burst hour a day
    return np.array([10.0 * rng.lognormal(-0.18, 0.6, n).sum() for n in rng.poisson(rate)])


def test_noisy_series_does_not_fire_but_naive_does() -> None:
    # The bench's false alerts: on such a series a plain 30 % rule pages about weekly.
    quiet = naive = 0
    for seed in range(6):
        ys = lumpy_days(4, seed)
        quiet += len([i for i in fired("wow", ys) if i >= 2 * WEEK_H])
        naive += len([i for i in fired("wow_naive", ys) if i >= 2 * WEEK_H])
    # One fire (seed 1, hour 590) is a real +122 %; seed 1's hour 379 scored 0.4998 with a
    # float32 ring and 0.5015 with the int16 one (its noise estimate is path-dependent, so
    # any rounding of the ring can tip it). Over 60 seeds: 23 fires (float32) vs 24.
    assert quiet <= 2
    assert naive > 10


def test_creep_still_fires_under_the_noise_bar() -> None:
    # +8 %/day for a week (the bench's creep) on a moderately noisy series.
    for seed in range(3):
        ys = spend(5, seed=seed, sigma=0.15, bursts_per_week=0)
        start = 3 * WEEK_H
        days = np.clip(np.arange(len(ys)) - start, 0, 7 * DAY) / DAY
        hits = [i for i in fired("wow", ys * 1.08**days) if i >= 2 * WEEK_H]
        assert hits and start <= hits[0] < start + 7 * DAY + 6


def test_sustained_rise_does_not_teach_its_own_bar() -> None:
    # A rise to +50 %: ratios over the bar are not learned as noise, so the bar stays the
    # 30 % rise; once last week holds the new level too, it is no rise at all.
    ys = steady(4)
    ys[WEEK_H + 2 * DAY :] *= 1.5
    d = make_detector("wow")
    hits = [i for i, v in enumerate(run(d, ys)) if v.is_anomaly]
    assert 2.5 * math.sqrt(d._var) < math.log1p(0.3)
    assert len(hits) == 1
