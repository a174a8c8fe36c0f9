"""A series silent for longer than its detectors look back sleeps, and learns its silent
hours when it spends again: its detectors end up exactly where hour-by-hour feeding leaves
them, and it alerts the same."""

from __future__ import annotations

import pickle

import numpy as np

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.detectors._watch_state import dump_watch
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


def _hour_records(patterns: dict[str, list[tuple[float, int]]], h: int, start: int) -> list[Rec]:
    """Hour ``h``'s records of the keys that called in it (``_patterns``)."""
    return [
        Rec(("api_key",), (k,), HOUR, start, 0, 0, (round(p[h][0] * NUSD), p[h][1]))
        for k, p in patterns.items()
        if p[h][1]
    ]


def _patterns() -> dict[str, list[tuple[float, int]]]:
    """(usd, calls) an hour of five weeks for series that spend now and then: an hour on,
    gaps of one hour to two weeks (across day ends and the sleep point), a first season
    cut short, spend past midnight, an hour of calls and no cost."""
    hours = 5 * 168
    rng = np.random.default_rng(11)
    out: dict[str, list[tuple[float, int]]] = {}
    for name, gaps in {
        "k-hourly": [1],
        "k-short": [2, 3, 1, 5],
        "k-daily": [7, 17, 24, 23, 25],
        "k-sparse": [40, 3, 60, 2, 200, 30],
        "k-weeks": [340, 5, 170],
    }.items():
        hourly = [(0.0, 0)] * hours
        h, g = int(rng.integers(0, 12)), 0
        while h < hours - 1:
            usd = float(rng.lognormal(1.5, 0.8))
            hourly[h] = (usd, int(rng.integers(1, 9))) if h % 97 else (0.0, 3)  # calls, no cost
            h += gaps[g % len(gaps)]
            g += 1
        hourly[hours - 1] = (5.0, 4)  # all spend in the last hour: all awake, all learned
        out[name] = hourly
    return out


def test_series_dozing_between_spends_learn_their_silent_hours_as_hourly_closes_do() -> None:
    """A series silent in an hour none of its detectors can alert on dozes, and learns its
    silent hours later, as a run: its detectors end up where feeding every hour leaves them
    (baseline, wow and shift of keys; gaps within a day, across day ends, past the sleep
    point, in the first season)."""
    config = Config.model_validate({"dimensions": [["api_key"]]})
    watch = SpendWatch(config)
    used = [c for c in config.detectors if c.runs_on(("api_key",))]
    patterns = _patterns()
    twins = {k: [make_detector(c.kind, **c.params) for c in used] for k in patterns}
    dozed = 0
    for h in range(5 * 168):
        start = T0 + h * HOUR
        records = _hour_records(patterns, h, start)
        watch.observe([*records, Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8)])
        watch.advance()
        dozed += sum(s.asleep_from < 0 for s in watch.series.values())
        for k, p in patterns.items():
            if (("api_key",), (k,)) not in watch.series:
                continue  # not seen yet: nothing to learn
            usd, n = p[h]
            cost = round(usd * NUSD) if n else 0
            for cfg, twin in zip(used, twins[k], strict=True):
                value = {
                    "cost_usd": cost / NUSD,
                    "cost_per_call": cost / NUSD / n if n else float("nan"),
                }[cfg.metric]
                counts = cfg.metric == "cost_per_call" or getattr(twin, "count_x", 0.0)
                twin.update(float(start), value, float(n) if counts else 1.0)
    assert dozed > 1000  # the closes let them doze
    for k in patterns:
        series = watch.series[(("api_key",), (k,))]
        assert series.asleep_from == 0
        for (_, det), twin in zip(series.detectors, twins[k], strict=True):
            assert pickle.dumps(det) == pickle.dumps(twin), k


def test_a_dozing_series_is_judged_at_the_end_of_its_day() -> None:
    """``wow`` judges a day at its last hour, silent or not: a series that spent in the
    afternoon dozes through the evening, and the close of the day's last hour still visits
    it, so a day four times its usual is reported at the same close as hourly feeding."""
    config = Config.model_validate(
        {"dimensions": [["team"]], "detectors": [{"kind": "wow", "params": {"min_usd": 1.0}}]}
    )
    watch = SpendWatch(config)
    twin = make_detector("wow", min_usd=1.0)
    days = 5 * 7
    alerted: list[tuple[int, str]] = []
    judged: list[int] = []
    for h in range(days * 24 + 2):
        start = T0 + h * HOUR
        usd = (200.0 if h // 24 == days - 1 else 50.0) if 9 <= h % 24 < 17 else 0.0
        if usd:
            metrics = (round(usd * NUSD), 10)
            watch.observe([Rec(("team",), ("search",), HOUR, start, 0, 0, metrics)])
        watch.observe([Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8)])
        alerted += [(h, a.detector) for a, _ in watch.advance()]
        if twin.update(float(start), usd).is_anomaly:
            judged.append(h)
    last_hour = days * 24 - 1
    assert judged == [last_hour]
    assert alerted == [(last_hour, "wow")]


def test_a_series_is_forgotten_at_the_close_that_makes_it_fifteen_silent_days() -> None:
    """``prune`` looks only at series whose last spend has grown old (not at every series
    every hour): each is forgotten at the same close as a look at every series would find
    it, whether it spent again meanwhile, only ever made calls at no cost, or came back."""
    config = Config.model_validate({"dimensions": [["customer"]]})
    watch = SpendWatch(config)
    rng = np.random.default_rng(3)
    # customer -> hours with a record (calls; cost unless "free")
    plan = {f"c{i}": sorted({int(h) for h in rng.integers(0, 40 * 24, 4)}) for i in range(40)}
    plan["back"] = [0, 16 * 24, 16 * 24 + 5]  # forgotten, then watched afresh
    plan["free"] = [3, 50]  # calls at no cost: nothing ever spent
    last: dict[str, int] = {}
    for h in range(45 * 24):
        start = T0 + h * HOUR
        records = []
        for k, hours in plan.items():
            if h in hours:
                cost = 0 if k == "free" else NUSD
                records.append(Rec(("customer",), (k,), HOUR, start, 0, 0, (cost, 2)))
                spent = last.get(k, 0)
                last[k] = max(spent, start) if cost else spent
        watch.observe([*records, Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8)])
        watch.advance()
        horizon = start + HOUR - 15 * 86400
        last = {k: t for k, t in last.items() if t >= horizon}
        assert {v[0] for _, v in watch.series} == set(last), h


def _due(watch: SpendWatch) -> set[tuple[int, tuple[str | None, ...]]]:
    """(hour, values) of each dozing series a close to come visits for its silence."""
    closed_until = watch.clock.closed_until or 0
    return {
        (hour, sk[1])
        for hour, keys in watch.book.due.items()
        for sk in keys
        if hour >= closed_until and sk in watch.series and watch.series[sk].asleep_from < 0
    }


def test_a_snapshot_writes_dozing_series_as_they_are_and_a_restore_resumes_them() -> None:
    """A snapshot no longer settles the dozing series (a run of silent hours each, and the
    next close visiting them all again, at every checkpoint): it writes them dozing, and a
    restore brings them back dozing, due at the same hours. Settled after the restore, a
    series is what settling before the snapshot (the releases until 2026-12-07) gave, byte
    for byte; and a watch restored from its own snapshot every hour alerts and ends as one
    never snapshotted."""
    config = Config.model_validate({"dimensions": [["api_key"]]})
    patterns = _patterns()
    live = SpendWatch(config)  # never snapshotted
    resumed = SpendWatch(config)  # snapshotted and restored every hour
    settling = SpendWatch(config)  # settled before each snapshot, as until 2026-12-07
    dozing_saved = due_saved = 0
    for h in range(5 * 168):
        start = T0 + h * HOUR
        records = _hour_records(patterns, h, start)
        records.append(Rec((), (), 60, start + HOUR + 660, 0, 0, (0,) * 8))
        sent = []
        for watch in (live, resumed, settling):
            watch.observe(records)
            sent.append(watch.advance())
        assert sent[1] == sent[0] and sent[2] == sent[0], h
        data = resumed.snapshot()
        assert data == dump_watch(live), h  # written as it is: nothing settled
        dozing = {sk for sk, s in live.series.items() if s.asleep_from < 0}
        resumed = SpendWatch(config)
        resumed.restore(data)
        assert {sk for sk, s in resumed.series.items() if s.asleep_from < 0} == dozing, h
        assert _due(resumed) == _due(live), h
        dozing_saved += len(dozing)
        due_saved += len(_due(live))
        closed_until = live.clock.closed_until
        settling.book.settle_all(closed_until, config)
        old = dump_watch(settling)
        settling = SpendWatch(config)
        settling.restore(old)
        settled = SpendWatch(config)
        settled.restore(data)
        settled.book.settle_all(closed_until, config)
        assert dump_watch(settled) == old, h
    assert dozing_saved > 1000 and due_saved > 50  # both were written and read back
    assert resumed.snapshot() == settling.snapshot() == dump_watch(live)  # all awake now
