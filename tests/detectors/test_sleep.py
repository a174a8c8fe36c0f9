"""A series silent for longer than its detectors look back sleeps, and learns its silent
hours when it spends again: its detectors end up exactly where hour-by-hour feeding leaves
them, and it alerts the same."""

from __future__ import annotations

import pickle

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.schemas import NUSD, Config, RollupRecord
from tests.detectors.synth import spend

HOUR = 3600
T0 = 1_790_553_600  # Monday 2026-09-28 00:00 UTC


Rec = RollupRecord  # the streamer's own record, as the detect stage decodes it


def test_a_sleeping_series_learns_its_silence_exactly_when_it_wakes() -> None:
    config = Config.model_validate({"dimensions": [["team"]]})
    watch = SpendWatch(config)
    used = [c for c in config.detectors if c.runs_on(("team",))]
    twins = [make_detector(c.kind, **c.params) for c in used]
    hourly = [float(v) for v in spend(3, seed=5)]
    hourly[200:290] = [0.0] * 90  # silent for almost four days: it sleeps
    hourly[400:460] = [0.0] * 60
    calls = [0 if v == 0 else 10 for v in hourly]
    for h, (usd, n) in enumerate(zip(hourly, calls, strict=True)):
        start = T0 + h * HOUR
        if n:
            metrics = (round(usd * NUSD), n, 0, 0, 0, 0, 0, 0)
            watch.observe([Rec(("team",), ("search",), HOUR, start, 0, 0, metrics)])
        watch.observe([Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8)])
        watch.advance()
        for cfg, twin in zip(used, twins, strict=True):
            cost = round(usd * NUSD) if n else 0
            value = {
                "cost_usd": cost / NUSD,
                "cost_per_call": cost / NUSD / n if n else float("nan"),
            }
            # The watch's weight: calls, for a mean or a detector that counts them.
            counts = cfg.metric == "cost_per_call" or getattr(twin, "count_x", 0.0)
            twin.update(float(start), value[cfg.metric], float(n) if counts else 1.0)
    series = watch.series[(("team",), ("search",))]
    assert series.asleep_from == 0  # awake: it spent in the last hour
    for (_, det), twin in zip(series.detectors, twins, strict=True):
        assert pickle.dumps(det) == pickle.dumps(twin)


def test_a_series_whose_detector_alerts_on_drops_never_sleeps() -> None:
    config = Config.model_validate(
        {"dimensions": [["team"]], "detectors": [{"kind": "generic", "params": {"warmup_n": 5}}]}
    )
    watch = SpendWatch(config)
    for h in range(24 * 4):
        start = T0 + h * HOUR
        if h < 24:
            metrics = (5 * NUSD, 10, 0, 0, 0, 0, 0, 0)
            watch.observe([Rec(("team",), ("search",), HOUR, start, 0, 0, metrics)])
        watch.observe([Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8)])
        watch.advance()
    assert watch.series[(("team",), ("search",))].asleep_from == 0
