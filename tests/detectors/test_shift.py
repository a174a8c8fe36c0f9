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


def _calls_to_alert_at_night(seed: int) -> int:
    """Calls a 3x dearer prompt takes to page when it starts at 20:00, on a key of busy
    days (20 calls an hour, 08:00-20:00) and nights of one call an hour."""
    rng = np.random.default_rng(seed)
    d = make_detector("shift")

    def hour(h: int, x: float) -> bool:
        value = float(0.02 * x * rng.lognormal(-0.18, 0.6, calls(h)).mean())  # mean 0.02 x
        return d.update(h * HOUR, value, float(calls(h))).is_anomaly

    def calls(h: int) -> int:
        return 20 if 8 <= h % 24 < 20 else 1

    for h in range(21 * 24):
        hour(h, 1.0)
    night = 21 * 24 + 20
    return next(
        sum(map(calls, range(night, h + 1))) for h in range(night, night + 24) if hour(h, 3.0)
    )


def test_a_dearer_prompt_on_a_quiet_night_is_judged_on_its_calls_true_mean() -> None:
    # The log of one call's cost sits half its variance (0.18 here) under the log of the
    # calls' mean, which busy hours teach the level: uncorrected, each night call read 17 %
    # cheap, and a 3x prompt begun at 20:00 paged within the night's 12 calls on 3 keys of
    # 15 (the rest at the next morning's first busy hour); corrected, on 9.
    calls = [_calls_to_alert_at_night(seed) for seed in range(15)]
    assert sum(n <= 12 for n in calls) >= 7, calls
