"""``shift``: a dearer call at unchanged volume, and quiet once the rise is over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from spendbrake.detectors import make_detector

HOUR = 3600.0
DATA = Path(__file__).parent / "data"


def _hours(seed: int) -> list[tuple[float, float]]:
    """(mean cost per call, calls) per hour: three weeks of a few calls an hour, daytime
    only (nights silent), each call about $0.02 with log-normal noise (sigma 0.6)."""
    rng = np.random.default_rng(seed)
    out = []
    for h in range(21 * 24):
        n = int(rng.poisson(4.0)) if 8 <= h % 24 < 20 else 0
        out.append((float(0.02 * rng.lognormal(0.0, 0.6, n).mean()) if n else 0.0, float(n)))
    return out


def test_a_rise_that_ended_does_not_page_again_on_one_dear_call() -> None:
    # A 3x prompt for a working day (alerted), back to normal for an evening's few calls,
    # then a silent night: the capped evidence used to stay over the bar, and the next
    # morning's first call at 1.8x paged a rise that was long over.
    d = make_detector("shift")
    for h, (value, n) in enumerate(_hours(0)):
        if n:
            d.update(h * HOUR, value, n)
    day = 21 * 24
    rise = [d.update((day + h) * HOUR, 0.06, 4.0) for h in range(8, 18)]
    assert any(v.is_anomaly for v in rise)
    for h in range(18, 20):
        assert not d.update((day + h) * HOUR, 0.02, 3.0).is_anomaly
    morning = (day + 24 + 8) * HOUR
    assert not d.peek(morning, 0.036, 1.0).is_anomaly
    assert not d.update(morning, 0.036, 1.0).is_anomaly


def test_a_tight_first_spread_does_not_lock_the_level_low() -> None:
    """Seen on evaluation seed 3 (its hours are the fixture): a key's first hours happened
    to cost alike per call, so one call's spread was learned tiny; evidence built up in the
    warm-up, the alarm stopped the learning, and only the windows that emptied the evidence
    (the cheap ones) taught the level. It stayed at half the real cost per call and the key
    paged every day from its second week. The warm-up now only learns."""
    hours = orjson.loads((DATA / "shift_seed3_customers011.json").read_bytes())["hours"]
    d = make_detector("shift")
    pages = [
        h for h, (value, n) in enumerate(hours) if n and d.update(h * HOUR, value, n).is_anomaly
    ]
    assert pages == []
    costs = [value for value, n in hours for _ in range(n)]
    assert abs(d.peek(len(hours) * HOUR, 1.0, 1.0).expected / np.mean(costs) - 1.0) < 0.15
