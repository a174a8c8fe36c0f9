"""The generic mode: novel moves alert once, recurring shapes are learned, state is fixed."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from spendbrake.detectors import make_detector

HOUR = 3600.0


def _alerts(values: list[float], **params: object) -> list[int]:
    d = make_detector("generic", **params)
    return [i for i, v in enumerate(values) if d.update(i * HOUR, v).is_anomaly]


def _latency(hours: int, seed: int) -> list[float]:
    """An hourly metric with a daily cycle and noise: what an operator might watch."""
    rng = np.random.default_rng(seed)
    return [
        100.0 + 30.0 * math.sin(2 * math.pi * h / 24) + rng.normal(0.0, 5.0) for h in range(hours)
    ]


def test_a_recurring_batch_hour_is_learned_not_paged_daily() -> None:
    # Every day one hour at 10x: far from any mean, but the series' own shape.
    ys = [100.0 + (900.0 if h % 24 == 3 else 0.0) + (h % 5) for h in range(24 * 30)]
    assert _alerts(ys) == []


def test_a_spike_and_a_step_alert_once_each() -> None:
    base = _latency(24 * 7 * 6, seed=1)
    quiet = _alerts(base)
    spike = list(base)
    spike[840] += 200.0
    got = _alerts(spike)
    assert [h for h in got if h <= 940] == [*(h for h in quiet if h < 840), 840]
    step = [y + (150.0 if h >= 840 else 0.0) for h, y in enumerate(base)]
    after = [h for h in _alerts(step) if h >= 840]
    assert after[:1] == [840] and len(after) <= 2  # one episode, not a flood


def test_a_new_extreme_while_the_grid_is_learned_is_a_new_level() -> None:
    # The range is still being learned (< grid_n values): a value past its top is a move.
    ys = [10.0 + (i % 5) * 0.2 for i in range(400)]
    ys[300] = 50.0
    assert _alerts(ys, signed=True) == [300]


def test_state_is_fixed_size() -> None:
    d = make_detector("generic")
    sizes = []
    for n, v in enumerate(_latency(24 * 7 * 20, seed=2)):
        d.update(n * HOUR, v)
        if n in (500, 3000):
            sizes.append(len(msgspec.json.encode(d.dump_state())))
    # The memory is a fixed bitset, the path at most `order` levels: only digits vary.
    assert max(sizes) < 1024 and max(sizes) - min(sizes) < 40, sizes
