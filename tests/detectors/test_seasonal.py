"""The default ``baseline`` on synthetic hourly spend: weekly shape, noise, legit bursts.

Series come from ``synth.spend``: weekday/weekend and diurnal shape, lognormal noise
(sigma 0.3) and three legit x3 bursts of 1-2 h a week. Two weeks are warm-up.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from spendbrake.detectors import make_detector
from tests.detectors.synth import WEEK_H, run, shape, spend

SEEDS = [0, 1, 2, 3, 4]
WARM = 2 * WEEK_H
AT = 4 * WEEK_H  # incidents start Monday 00:00 of week 5


def alerts(name: str, ys: np.ndarray, **params: float) -> list[int]:
    return [i for i, v in enumerate(run(make_detector(name, **params), ys)) if v.is_anomaly]


@pytest.mark.parametrize("seed", SEEDS)
def test_quiet_on_four_weeks_with_bursts(seed: int) -> None:
    ys = spend(6, seed=seed)
    assert [i for i in alerts("baseline", ys) if i >= WARM] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_runaway_caught_within_two_points(seed: int) -> None:
    ys = spend(5, seed=seed)
    start = AT + 14  # Monday 14:00, a busy hour
    ys[start : start + 3] *= 20.0
    hits = alerts("baseline", ys)
    assert hits and hits[0] in (start, start + 1)
    assert [i for i in hits if i >= WARM and not start <= i < start + 3] == []


def test_runaway_reason_reads_well() -> None:
    ys = spend(5, seed=0)
    ys[AT + 14] *= 20.0
    v = run(make_detector("baseline"), ys)[AT + 14]
    assert v.is_anomaly and v.expected is not None and v.expected > 0
    assert v.reason.startswith("spend $") and "expected for Mon 14:00" in v.reason
    assert v.reason.endswith("fast and slow windows both high")


@pytest.mark.parametrize("seed", SEEDS)
def test_launch_adapts_within_a_day(seed: int) -> None:
    ys = spend(6, seed=seed)
    ys[AT:] *= 5.0
    hits = [i for i in alerts("baseline", ys) if i >= WARM]
    assert len(hits) <= 2
    assert all(AT <= i < AT + 24 for i in hits)


@pytest.mark.parametrize("silence", [0.0, float("nan")])
@pytest.mark.parametrize("seed", SEEDS)
def test_no_alert_after_silent_day(seed: int, silence: float) -> None:
    ys = spend(6, seed=seed)
    ys[AT : AT + 24] = silence
    assert [i for i in alerts("baseline", ys) if i >= WARM] == []


def test_gap_of_missing_windows_then_normal() -> None:
    ys = spend(6, seed=8)
    d = make_detector("baseline")
    keep = np.r_[0:AT, AT + 30 : len(ys)]  # 30 windows never arrive at all
    verdicts = [d.update(1_704_067_200.0 + 3600.0 * i, float(ys[i])) for i in keep]
    assert not any(v.is_anomaly for v in verdicts)


@pytest.mark.parametrize("seed", SEEDS)
def test_cost_per_call_tripling(seed: int) -> None:
    # Cost per call averages many calls, so it is steadier than spend (sigma 0.1).
    rng = np.random.default_rng(seed)
    ys = 0.01 * rng.lognormal(0.0, 0.1, 5 * WEEK_H)
    ys[AT:] *= 3.0
    hits = alerts("baseline", ys, min_usd=0.005)
    assert hits and hits[0] == AT
    assert all(AT <= i < AT + 24 for i in hits)  # the new price becomes normal
    # The default $5 floor would hide it: min_usd is per use for cost-per-call series.
    assert alerts("baseline", ys) == []


def test_unit_param_for_small_values() -> None:
    rng = np.random.default_rng(3)
    ys = 0.002 * rng.lognormal(0.0, 0.1, 5 * WEEK_H)
    ys[AT:] *= 3.0
    hits = alerts("baseline", ys, min_usd=0.001, unit=0.001)
    assert hits and hits[0] == AT


def test_naive_rules_page_on_the_same_traffic() -> None:
    """The comparison that motivates the baseline: the cloud rule and naive wow do page."""
    ys = spend(6, seed=0)
    counts = {n: sum(i >= WARM for i in alerts(n, ys)) for n in ("cloud_sigma", "wow_naive")}
    assert counts["cloud_sigma"] > 0 and counts["wow_naive"] > 0


def lumpy_spend(weeks: int, seed: int, calls: float = 4.0, call_usd: float = 10.0) -> np.ndarray:
    """Hourly spend of a few calls an hour (Poisson counts, log-normal call cost): lumpy."""
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * WEEK_H)
    shape = 0.35 + np.exp(-(((hours % 24 - 15.0) / 4.5) ** 2))
    counts = rng.poisson(calls * shape / shape.mean())
    return np.array([call_usd * rng.lognormal(-0.18, 0.6, n).sum() for n in counts])


@pytest.mark.parametrize("seed", SEEDS)
def test_lumpy_series_sharp_critical_spike_is_caught(seed: int) -> None:
    # The bench's critical spike: 8-20x the mean call rate for 1-3 h on an always-on
    # service. In pure log space one $40 call where $2 is expected is as big as that spike.
    ys = lumpy_spend(5, seed)
    start = AT + 3  # 03:00, a quiet hour
    rng = np.random.default_rng(seed + 100)
    for h in (start, start + 1):  # 10x the mean call rate (40 calls/h), calls as usual
        ys[h] += 10.0 * rng.lognormal(-0.18, 0.6, rng.poisson(10 * 4.0)).sum()
    hits = alerts("baseline", ys)
    assert [i for i in hits if start <= i < start + 3]
    assert [i for i in hits if i >= WARM and not start <= i < start + 3] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_lumpy_series_one_hour_spike_is_caught_in_that_hour(seed: int) -> None:
    # A one-hour spike at 15x the mean call rate, on a busy hour: count noise hides it from
    # sigma (one hour, so no second window confirms it), but it is three times the most
    # the series spent in any hour of two weeks. With the 6-window ceiling (the default
    # until 2026-12), four of these five were missed.
    ys = lumpy_spend(5, seed)
    start = AT + 24 + 15  # Tuesday 15:00, the day's peak
    rng = np.random.default_rng(seed + 200)
    ys[start] += 10.0 * rng.lognormal(-0.18, 0.6, rng.poisson(15 * 4.0)).sum()
    assert [i for i in alerts("baseline", ys) if i >= WARM] == [start]
    if seed == 0:
        v = run(make_detector("baseline"), ys)[start]
        assert v.reason == (
            "spend $679/h for Tue 15:00, 5.0x the most in any hour of the last 14 days ($135/h)"
        )


@pytest.mark.parametrize("start", [AT + 2, AT + 26])
@pytest.mark.parametrize("seed", range(8))
def test_lumpy_series_launch_is_no_ceiling_page(seed: int, start: int) -> None:
    # A launch at 02:00: a sustained 4x new level. The level takes it in within hours, and
    # by the day's busy hours spend is over three times the most of the last two weeks: the
    # ceiling paged 7 of these 16 launches there while it ignored the level (the bench's
    # launches paged by it at 6 series, seeds 0-3: 1, 1, 0, 3).
    ys = lumpy_spend(5, seed)
    ys[start:] *= 4.0
    verdicts = run(make_detector("baseline"), ys)
    assert not [i for i, v in enumerate(verdicts) if v.is_anomaly and "the most in any" in v.reason]


@pytest.mark.parametrize("seed", SEEDS)
def test_lumpy_series_quiet_without_incident(seed: int) -> None:
    ys = lumpy_spend(5, seed)
    assert [i for i in alerts("baseline", ys) if i >= WARM] == []


def test_unit_set_from_first_week_only_for_lumpy_series() -> None:
    lumpy = make_detector("baseline")
    run(lumpy, lumpy_spend(2, 0))
    smooth = make_detector("baseline")
    run(smooth, spend(2, seed=0))
    assert lumpy._unit > 1.0 and lumpy._first is None
    assert smooth._unit == 1.0 and smooth._first is None


def busy_and_quiet_cost_per_call(seed: int, x: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cost per call of 40 calls a weekday hour (08-20) and 2 otherwise: a mean of n calls,
    so its log noise is ``0.6 / sqrt(n)``; from Tuesday 10:00 of week 5, three busy hours
    cost ``x`` times as much a call."""
    rng = np.random.default_rng(seed)
    hours = np.arange(5 * WEEK_H)
    busy = (hours % 24 >= 8) & (hours % 24 < 20) & (hours // 24 % 7 < 5)
    calls = np.where(busy, 40, 2)
    per_call = 0.02 * np.exp(rng.normal(0.0, 0.6 / np.sqrt(calls)))
    per_call[AT + 34 : AT + 37] *= x
    return per_call, calls


def test_calls_as_weight_find_a_busy_hours_rise() -> None:
    # Unweighted, sigma is an average over 2-call and 40-call hours, so a 2x cost per call
    # over three 40-call hours is about 3 sigma: missed. Weighted by calls, those hours
    # count for their evidence and the two-call hours for theirs.
    incident = range(AT + 34, AT + 37)
    caught = {True: 0, False: 0}
    for seed in range(8):
        per_call, calls = busy_and_quiet_cost_per_call(seed, x=2.0)
        for weighted in (True, False):
            d = make_detector("baseline", unit=0.001, min_usd=0.0)
            hits = [
                i
                for i, (v, n) in enumerate(zip(per_call, calls, strict=True))
                if d.update(3600.0 * i, float(v), float(n) if weighted else 1.0).is_anomaly
                and i >= WARM
            ]
            assert all(i in incident for i in hits), (seed, weighted, hits)
            caught[weighted] += bool(hits)
    assert caught == {True: 7, False: 0}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_constant_weight_is_the_unweighted_detector(seed: int) -> None:
    # Weights count relative to the series' usual one: the same weight everywhere changes nothing.
    per_call, _ = busy_and_quiet_cost_per_call(seed, x=2.0)
    plain = make_detector("baseline", unit=0.001, min_usd=0.0)
    constant = make_detector("baseline", unit=0.001, min_usd=0.0)
    for i, v in enumerate(per_call):
        assert plain.update(3600.0 * i, float(v)) == constant.update(3600.0 * i, float(v), 7.0)
    # And quiet traffic stays quiet weighted by its calls.
    per_call, calls = busy_and_quiet_cost_per_call(seed)
    d = make_detector("baseline", unit=0.001, min_usd=0.0)
    pairs = enumerate(zip(per_call, calls, strict=True))
    verdicts = [d.update(3600.0 * i, float(v), float(n)) for i, (v, n) in pairs]
    assert not any(v.is_anomaly for v in verdicts[WARM:])


def _counted_baseline(seed: int) -> tuple[object, float]:
    """A ``baseline`` counting calls, taught three weeks of a few calls an hour (about
    four, $2 each); and the first hour after them."""
    rng = np.random.default_rng(seed)
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    hours = 3 * WEEK_H
    for i in range(hours):
        calls = int(rng.poisson(4.0))
        cost = float(sum(2.0 * rng.lognormal(-0.18, 0.6) for _ in range(calls)))
        d.update(3600.0 * i, cost, float(calls))
    return d, 3600.0 * hours


@pytest.mark.parametrize("seed", SEEDS)
def test_early_look_judges_calls_as_a_rate(seed: int) -> None:
    # A loop from the top of the hour: 16 calls in its first quarter (64 an hour, 16x the
    # usual rate). Judged against the whole hour's bar (32 calls) it waits for the hour to
    # fill; as a rate over the quarter seen, it pages now.
    d, ts = _counted_baseline(seed)
    assert d.peek(ts, 32.0, 16.0, elapsed=0.25).is_anomaly
    assert not d.peek(ts, 32.0, 16.0).is_anomaly  # the whole hour: under its bar
    assert "the first 25% of" in d.peek(ts, 32.0, 16.0, elapsed=0.25).reason


@pytest.mark.parametrize("seed", SEEDS)
def test_early_look_lets_a_burst_pass(seed: int) -> None:
    # A legitimate burst: 4 calls in the first ten minutes (six times the usual rate) and
    # 8 in the first quarter; a few calls more than usual, not a loop.
    d, ts = _counted_baseline(seed)
    assert not d.peek(ts, 8.0, 4.0, elapsed=1 / 6).is_anomaly
    assert not d.peek(ts, 16.0, 8.0, elapsed=0.25).is_anomaly


def test_early_look_after_a_busy_hour_allows_its_burst() -> None:
    # A nightly batch window: 40 calls at 04:00, 2 at 05:00, 4 otherwise. A burst begun
    # at 04:50 runs on at 04:00's rate into 05:00: 16 calls in its first quarter is 32x
    # the quiet slot's rate but 1.6x the hour before's, and a batch key is paused on a
    # page. An early look judges it against the larger slot; the whole hour as before.
    rng = np.random.default_rng(0)
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    usual = {4: 40.0, 5: 2.0}
    hours = 3 * WEEK_H
    for i in range(hours):
        calls = int(rng.poisson(usual.get(i % 24, 4.0)))
        d.update(3600.0 * i, float(2.0 * rng.lognormal(-0.18, 0.6, calls).sum()), float(calls))
    ts = 3600.0 * (hours + 5)  # 05:00 of the next day
    assert not d.peek(ts, 32.0, 16.0, elapsed=0.25).is_anomaly
    assert d.peek(ts, 64.0, 32.0).is_anomaly  # the whole hour at 16x its slot: a loop


@pytest.mark.parametrize("seed", SEEDS)
def test_early_look_after_a_surge_began_the_hour_before(seed: int) -> None:
    # A spike from 23:40 at 24x the usual four calls an hour: 20 calls in the hour it began
    # (under its bar, judged with its quiet minutes), then 16 in the next hour's first ten
    # minutes. The slot before has just learned the spike's start; judged against it as
    # the usual rate, the spike paged only when a whole hour of it had closed.
    d, ts = _counted_baseline(seed)
    assert not d.update(ts, 40.0, 20.0).is_anomaly
    v = d.peek(ts + 3600.0, 32.0, 16.0, elapsed=1 / 6)
    assert v.is_anomaly and "16 calls for the first 17% of" in v.reason


@pytest.mark.parametrize("seed", SEEDS)
def test_a_slot_learned_under_both_hours_beside_it_counts_partly_theirs(seed: int) -> None:
    # About six calls an hour ($2 each), but Thursday 08:00 happened to see two calls in
    # each of its three weeks: learned at a third of the hours beside it. A legitimate
    # burst there (18 calls, three times the real rate) read 9x and paged; the count test
    # now takes the slot halfway to the lower of its neighbours. A loop (60 calls) pages.
    rng = np.random.default_rng(seed)
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    thursday_8 = 8  # hour-of-week slots count from the epoch's Thursday 00:00
    for i in range(3 * WEEK_H):
        calls = 2 if i % WEEK_H == thursday_8 else int(rng.poisson(6.0))
        d.update(3600.0 * i, 2.0 * calls, float(calls))
    ts = 3600.0 * (3 * WEEK_H + thursday_8)
    assert not d.peek(ts, 36.0, 18.0).is_anomaly
    assert d.peek(ts, 120.0, 60.0).is_anomaly


@pytest.mark.parametrize("silent", [[100], [60, 130], list(range(150, 175))])
def test_a_silent_run_in_the_first_season_counts_its_silences_as_learn_does(
    silent: list[int],
) -> None:
    """A waking series in its first season learns its silent hours as a run too: it counts
    them as ``learn`` does hour by hour, and fixes its unit at the same hour. One silent
    hour in a season is no lumpy series, two are (1 %), and a run may span the hour that
    fixes it."""
    y = spend(2, seed=4)
    # As the watch runs it: counting calls (a silent hour's weight, 0, says none).
    a, b = (make_detector("baseline", count_x=8.0, count_floor=2.0) for _ in "ab")
    t0 = 1_790_553_600  # a Monday, 00:00 UTC
    for h, value in enumerate(y):
        ts = t0 + h * 3600
        if h in silent:
            a.learn(float(ts), 0.0, 0.0)
            if h - 1 not in silent:  # the first of a run: it learns the run at once
                end = next(k for k in range(h, len(y) + 1) if k not in silent)
                b.learn_run(ts, t0 + end * 3600, 0.0, 0.0)
            continue
        a.learn(float(ts), float(value), 20.0)
        b.learn(float(ts), float(value), 20.0)
        assert a._first == b._first and a._unit == b._unit, h
    assert a._first is None and (a._unit > 1.0) == (len(silent) > 1)


@pytest.mark.parametrize("params", [{}, {"season_alpha": 0.1}])  # counts: 4 bits, a byte
def test_a_silent_run_leaves_the_state_learn_does_in_either_count_layout(params: dict) -> None:
    """A silent run is learned hour by hour when short and with numpy, a season at a time,
    when long (``ARRAY_RUN_H``): both leave the codes and counts ``learn`` leaves, in the
    4-bit counts of the defaults and the byte counts of a slow ``season_alpha``."""
    y = spend(3, seed=6)
    y[np.arange(len(y)) % 24 < 5] = 0.0
    a, b = (make_detector("baseline", count_x=8.0, **params) for _ in "ab")
    t0, h = 1_790_553_600, 0
    for run_h in [1, 5, 31, 32, 33, 100, 167, 168, 169, 400]:
        for _ in range(30):
            ts, value = t0 + h * 3600, float(y[h % len(y)])
            a.learn(float(ts), value, 20.0 if value else 0.0)
            b.learn(float(ts), value, 20.0 if value else 0.0)
            h += 1
        for k in range(run_h):
            a.learn(float(t0 + (h + k) * 3600), 0.0, 0.0)
        b.learn_run(t0 + h * 3600, t0 + (h + run_h) * 3600, 0.0, 0.0)
        h += run_h
        assert pickle.dumps(a) == pickle.dumps(b), run_h


@pytest.mark.parametrize("params", [{}, {"season_alpha": 0.1}])  # counts: 4 bits, a byte
def test_fixing_the_unit_re_expresses_each_learned_slot(params: dict) -> None:
    """The first season's end fixes a lumpy series' unit and re-expresses every slot it has
    learned (and only those) in it: each slot's code is its expected spend in the new unit,
    read and written through the detector's own ``_get`` and ``_set``."""
    y = spend(2, seed=8)
    y[np.arange(len(y)) % 24 < 5] = 0.0  # silent nights: lumpy
    d = make_detector("baseline", **params)
    t0 = 1_790_553_600
    h = 0
    while d._n < d.season - 1:
        if h % 50:  # a few slots never learned (missing windows)
            d.learn(float(t0 + h * 3600), float(y[h]))
        h += 1
    first, level, unit = list(d._first), d._level, d._unit
    learned = {s: d._get(s) for s in range(d.season) if d._count(s)}
    assert 0 < len(learned) < d.season
    d.learn(float(t0 + h * 3600), 0.0)  # the window that fixes it (silent: the level stays)
    assert d._first is None and d._level == 0.0 and d._unit > unit
    new = max(d.unit, d.auto_unit * first[0] / first[1])
    assert d._unit == new
    for s in range(d.season):
        if s == h % d.season:
            continue  # the hour that fixed it has learned since
        if s in learned:
            twin = make_detector("baseline", **params)
            expected = unit * math.expm1(min(learned[s] + level, 700.0))
            twin._set(0, math.log1p(max(expected, 0.0) / new))
            assert d._get(s) == twin._get(0), s
        else:
            assert d._count(s) == 0 and d._get(s) == 0.0, s


def _counted_calls(seed: int, weeks: int, calls: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """A key of about ``calls`` calls an hour on the synthetic weekly shape: each hour's
    calls (Poisson) and their costs ($2 each, log-normal)."""
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * WEEK_H)
    rate = calls * shape(hours) / shape(hours).mean()
    counts = rng.poisson(rate)
    return counts, [2.0 * rng.lognormal(-0.18, 0.6, n) for n in counts]


@pytest.mark.parametrize("calls", [20.0, 60.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_busy_keys_return_from_an_outage_is_no_page(seed: int, calls: float) -> None:
    # A key of 20-60 calls an hour is down for twelve hours from 10:00 of week 4's first day,
    # one call in twenty getting through. Each of those hours pulled the level down a step
    # and three in a row jumped it down as a new level would, so the traffic coming back
    # read 20x its expectation: 7 of these 10 keys paged in their first hours back. Now a
    # run of hours with an outage's few calls does not pull the level under the profile.
    counts, costs = _counted_calls(seed, 5, calls)
    rng = np.random.default_rng(seed + 300)
    start = 3 * WEEK_H + 10
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    hits = []
    for i, (n, cost) in enumerate(zip(counts, costs, strict=True)):
        if start <= i < start + 12:
            cost = cost[rng.random(n) < 0.05]
        v = d.update(3600.0 * i, float(cost.sum()), float(len(cost)))
        if v.is_anomaly and i >= WARM:
            hits.append(i)
    assert hits == []


@pytest.mark.parametrize("seed", SEEDS)
def test_a_runaway_the_level_took_in_leaves_it_when_it_ends(seed: int) -> None:
    # A twelve-hour loop at 10x on a key of 20 calls an hour: the level takes it in as a new
    # level (jumps), and when it ends the hours back at the usual rate have a tenth of the
    # calls that level expects, a run of them, as an outage's hours have: the level must
    # still come back down within a day, as it did (not stay at 10x, blind to the next loop).
    counts, costs = _counted_calls(seed, 5, 20.0)
    rng = np.random.default_rng(seed + 400)
    start = 3 * WEEK_H + 10
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    usual = make_detector("baseline", count_x=8.0, count_floor=2.0)
    for i, (n, cost) in enumerate(zip(counts, costs, strict=True)):
        ts = 3600.0 * i
        if i == start + 12 + 24:  # a day after the loop ended
            ratio = d.peek(ts, 1.0, 1.0).expected / usual.peek(ts, 1.0, 1.0).expected
            assert 0.5 < ratio < 1.5
            return
        usual.update(ts, float(cost.sum()), float(n))
        if start <= i < start + 12:
            extra = 2.0 * rng.lognormal(-0.18, 0.6, rng.poisson(9 * n))
            cost = np.concatenate([cost, extra])
        d.update(ts, float(cost.sum()), float(len(cost)))
