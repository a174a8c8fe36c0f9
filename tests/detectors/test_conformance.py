"""Every registered detector passes these checks; registering a detector enrolls it.

Modeled on river's ``checks/`` suite: snapshot round-trip (the plain state a snapshot
holds, through JSON, and a pickle: copies and retunes use one), bounded state, hostile
inputs, score range, quiet cold start, no input mutation, and repeatable seeded runs.
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import msgspec
import numpy as np
import pytest

from spendbrake import detectors
from spendbrake.detectors import Detector, Verdict, available, make_detector
from spendbrake.detectors._rows import row_names
from tests.detectors.synth import HOUR, T0, WEEK_H, run, spend

NAMES = available()

# river's SNARIMAX keeps its seasonal lag buffer (168 floats) and a linear model: ~2.8 KB
# pickled after 8 weeks, ~3.5 KB as plain JSON. Documented in detectors/_river.py;
# everything else <= 2 KB.
SIZE_BOUND = {"river_snarimax": 4096}


def _plain_twin(d: Detector) -> Detector:
    """``d`` through its snapshot: plain state, encoded as JSON, read into a fresh build."""
    twin = make_detector(d.name, **d.params)
    twin.load_state(msgspec.json.decode(msgspec.json.encode(d.dump_state())), d.state_version)
    return twin


def _long() -> np.ndarray:
    return spend(8, seed=11)


def test_exports_pinned() -> None:
    assert detectors.__all__ == [
        "BudgetTracker",
        "BudgetVerdict",
        "Detector",
        "SpendWatch",
        "Verdict",
        "available",
        "make_detector",
        "register",
    ]


def test_registry_lists_all() -> None:
    assert set(NAMES) >= {"baseline", "wow", "wow_naive", "cloud_sigma", "river_snarimax"}


def test_unknown_name_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown detector 'nope'; choose one of baseline, "):
        make_detector("nope")


def test_default_is_baseline() -> None:
    assert make_detector().name == "baseline"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_param_is_named(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter 'bogus'"):
        make_detector(name, bogus=1)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("baseline", {"period_s": -1.0}, "period_s"),
        ("baseline", {"min_usd": -5.0}, "min_usd"),
        ("wow", {"window_s": 5000.0}, "window_s"),
        ("wow", {"rise": 0.0}, "rise"),
        ("cloud_sigma", {"k": -3.0}, "k"),
        ("river_snarimax", {"season": 0}, "season"),
        ("baseline", {"period_s": "1h"}, "period_s"),
        ("baseline", {"season": 16.8}, "season"),
        ("wow", {"rise": True}, "rise"),
    ],
)
def test_bad_param_value_is_named(name: str, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        make_detector(name, **params)


@pytest.mark.parametrize("name", NAMES)
def test_params_rebuild_same_detector(name: str) -> None:
    d = make_detector(name)
    again = make_detector(name, **d.params)
    assert again.params == d.params
    assert repr(again) == repr(d)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip_mid_series(name: str) -> None:
    ys = _long()
    d = make_detector(name)
    run(d, ys[:700])
    twin = pickle.loads(pickle.dumps(d))
    a = run(d, ys[700:900], start_h=700)
    b = run(twin, ys[700:900], start_h=700)
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_plain_state_round_trip_mid_series(name: str) -> None:
    ys = _long()
    d = make_detector(name)
    run(d, ys[:700])
    twin = _plain_twin(d)
    assert msgspec.json.encode(twin.dump_state()) == msgspec.json.encode(d.dump_state())
    a = run(d, ys[700:900], start_h=700)
    b = run(twin, ys[700:900], start_h=700)
    assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_every_attribute_is_a_hyperparameter_or_state(name: str) -> None:
    """What ``dump_state`` leaves out must come back from ``params``, or it is lost."""
    d = make_detector(name)
    slots = {n for k in type(d).__mro__ for n in getattr(k, "__slots__", ())}
    # Numbers and blocks kept in a row (``detectors._rows``) are read and written by name;
    # where the row is (``_rows``, ``_row``) is no state.
    in_row = set(row_names(type(d)))
    attrs = (slots - {"_rows", "_row"}) | set(getattr(d, "__dict__", ())) | in_row
    state = set(d.state_fields)
    assert state <= attrs and len(state) == len(d.state_fields)
    if type(d).dump_state is Detector.dump_state:  # else it writes more of its own
        assert attrs - state <= {"_hp", *d.params}


@pytest.mark.parametrize("name", NAMES)
def test_state_small_after_long_series(name: str) -> None:
    d = make_detector(name)
    run(d, _long())
    size = len(pickle.dumps(d))
    assert size <= SIZE_BOUND.get(name, 2048), size
    plain = len(msgspec.json.encode(d.dump_state()))
    assert plain <= SIZE_BOUND.get(name, 2048), plain


@pytest.mark.parametrize("name", NAMES)
def test_hostile_inputs_never_raise_nor_alert(name: str) -> None:
    d = make_detector(name)
    run(d, spend(3, seed=2))
    h = 3 * WEEK_H
    bad = [math.nan, math.inf, -math.inf, -5.0, -1e-9]
    for i, v in enumerate(bad):
        verdict = d.update(T0 + HOUR * (h + i), v)
        assert not verdict.is_anomaly
        assert verdict.score == 0.0
    for ts in (math.nan, math.inf, -math.inf):
        assert not d.update(ts, 10.0).is_anomaly
    assert d.update(T0 + HOUR * h, "12").score == 0.0  # type: ignore[arg-type]
    # Gaps (a day, a month), a duplicate and a late window, zeros, a huge value: no raise.
    for ts_h, v in [
        (h + 30, 20.0),
        (h + 30, 20.0),
        (h + 10, 20.0),
        (h + 800, 0.0),
        (h + 801, 1e12),
    ]:
        verdict = d.update(T0 + HOUR * ts_h, v)
        assert 0.0 <= verdict.score <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_score_in_unit_interval(name: str) -> None:
    ys = _long()
    ys[900:903] *= 50.0
    ys[1000:1010] = 0.0
    for v in run(make_detector(name), ys):
        assert isinstance(v, Verdict)
        assert 0.0 <= v.score <= 1.0
        assert isinstance(v.is_anomaly, bool)
        assert v.reason and "\n" not in v.reason


@pytest.mark.parametrize("name", NAMES)
def test_quiet_cold_start(name: str) -> None:
    ys = spend(1, seed=5)[:24]
    ys[20] *= 50.0  # even a spike is not an alert without history
    assert not any(v.is_anomaly for v in run(make_detector(name), ys))


@pytest.mark.parametrize("name", NAMES)
def test_inputs_not_mutated(name: str) -> None:
    ys = spend(3, seed=6)
    ys[100] = math.nan
    before = ys.copy()
    params = dict(make_detector(name).params)
    snapshot = dict(params)
    d = make_detector(name, **params)
    for i, v in enumerate(ys):
        d.update(T0 + HOUR * i, v)
    np.testing.assert_array_equal(ys, before)
    assert params == snapshot


@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_repeat(name: str) -> None:
    a = run(make_detector(name), spend(4, seed=9))
    b = run(make_detector(name), spend(4, seed=9))
    assert a == b


def test_verdict_is_frozen() -> None:
    v = Verdict(0.0, False, None, 1.0, "ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.score = 1.0  # type: ignore[misc]
    assert not hasattr(v, "__dict__")


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_extreme_values_and_clock_jumps(name: str) -> None:
    rng = np.random.default_rng(123)
    pool = [0.0, 1e-300, 1e-5, 1.0, 50.0, 1e6, 1e12, 1e30, 1e300, 1.7e308, math.nan, -1.0]
    d = make_detector(name)
    run(d, spend(3, seed=4))
    h = 3 * WEEK_H
    for _ in range(600):
        h += int(rng.choice([1, 1, 1, 0, -3, 5, 200]))
        verdict = d.update(T0 + HOUR * h, pool[int(rng.integers(len(pool)))])
        assert 0.0 <= verdict.score <= 1.0
    pickle.loads(pickle.dumps(d))
    # Whatever the state holds (an overflow to inf, a NaN), its snapshot reads back as it is.
    twin = _plain_twin(d)
    assert pickle.dumps(twin) == pickle.dumps(d)


def test_register_rejects_a_taken_name() -> None:
    from spendbrake.detectors import Detector, register

    with pytest.raises(ValueError, match="already registered"):

        @register("baseline")
        class Again(Detector):
            pass


@pytest.mark.parametrize("name", NAMES)
def test_peek_scores_like_update_and_learns_nothing(name: str) -> None:
    """The live stage peeks at hours still filling: same verdict as update, no state change."""
    y = _long()
    d = make_detector(name)
    for i in range(len(y) - 30):
        d.update(T0 + i * HOUR, float(y[i]))
    for i in range(len(y) - 30, len(y)):
        ts, value = T0 + i * HOUR, float(y[i]) * (8.0 if i % 7 == 0 else 1.0)
        before = pickle.dumps(d)
        peeked = d.peek(ts, value)
        assert pickle.dumps(d) == before
        assert peeked == d.update(ts, value)


@pytest.mark.parametrize("name", NAMES)
def test_silence_longer_than_its_window_never_alerts(name: str) -> None:
    """The watch stops feeding a series silent for longer than its detectors look back
    (``window_s``, default an hour) and teaches it the silent hours when it spends again:
    sound only if those hours can never alert, whatever came before them."""
    d = make_detector(name)
    if d.alerts_on_silence:
        pytest.skip(f"{name} says a drop can alert: the watch never lets its series sleep")
    y = spend(4, seed=3)
    y[-30:] *= 25.0  # a runaway right before the silence: the worst case
    for i, value in enumerate(y):
        d.update(T0 + i * HOUR, float(value))
    window_h = int(getattr(d, "window_s", HOUR) // HOUR)
    start = len(y)
    for i in range(start, start + window_h + 1):
        d.update(T0 + i * HOUR, 0.0)
    for i in range(start + window_h + 1, start + window_h + 1 + 2 * WEEK_H):
        ts = T0 + i * HOUR
        assert not d.peek(ts, 0.0).is_anomaly, i
        assert not d.update(ts, 0.0).is_anomaly, i


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_learn_leaves_the_state_update_does(name: str, weight: float) -> None:
    """A waking series' silent hours are taught with ``learn`` (no verdict): it must leave
    exactly the state ``update`` would, from a cold start and after a spike."""
    y = spend(3, seed=5)
    y[200:203] *= 30.0
    a, b = make_detector(name), make_detector(name)
    for i, value in enumerate(y):
        ts = T0 + i * HOUR
        if i % 50 < 20:  # runs of silence, as a sleeping series has
            a.update(ts, 0.0, weight)
            b.learn(ts, 0.0, weight)
        else:
            a.update(ts, float(value))
            b.learn(ts, float(value))
        assert pickle.dumps(a) == pickle.dumps(b), i


@pytest.mark.parametrize(
    ("name", "params"),
    [(n, {}) for n in NAMES] + [("baseline", {"count_x": 8.0, "count_floor": 2.0})],
)
@pytest.mark.parametrize("weight", [1.0, 0.0])
@pytest.mark.parametrize("fed", ["every hour", "afternoons only"])
def test_learn_run_leaves_the_state_learn_does_hour_by_hour(
    name: str, params: dict, weight: float, fed: str
) -> None:
    """A waking series' silent hours are taught as one run (``learn_run``, which the
    baseline does with a silent hour's arithmetic alone): the state must be the one
    ``learn`` leaves hour by hour, for short runs and runs of months, from a cold start, in
    the first season and after it, after a spike, and with slots never learned before the
    run (fed afternoons only)."""
    y = spend(12, seed=7)
    y[500:503] *= 30.0
    y[np.arange(len(y)) % 24 < 6] = 0.0  # silent nights
    a, b = make_detector(name, **params), make_detector(name, **params)
    i = 0

    def feed(hours: int) -> None:
        nonlocal i
        for _ in range(hours):
            if fed == "every hour" or i % 24 >= 12:
                a.learn(T0 + i * HOUR, float(y[i % len(y)]))
                b.learn(T0 + i * HOUR, float(y[i % len(y)]))
            i += 1

    # Afternoons only: three weeks of them first, so the runs meet mornings never learned;
    # five weeks of spend before the long runs, so a whole-day detector judges their days.
    first = [24 * 21] if fed == "afternoons only" else []
    for run_h in [*first, 300, 1, 2, 5, 200, 30, 24 * 35, 170, 700, 2000]:
        feed(40 + run_h % 7)  # spend between the runs, a run starting within a day
        if run_h % 168 == 0:
            feed(run_h)
            continue
        start = int(T0 + i * HOUR)
        for h in range(run_h):
            a.learn(float(start + h * HOUR), 0.0, weight)
        b.learn_run(start, start + run_h * 3600, 0.0, weight)
        i += run_h
        assert pickle.dumps(a) == pickle.dumps(b), (run_h, i)
        assert a.update(T0 + i * HOUR, 5.0) == b.update(T0 + i * HOUR, 5.0)
        i += 1


@pytest.mark.parametrize("name", NAMES)
def test_may_alert_is_false_only_where_peek_cannot_alert(name: str) -> None:
    """The early look skips a peek when ``may_alert`` says no: sound only if every peek that
    alerts was allowed (and ``shift``, which answers it exactly, allows no other)."""
    y = _long()
    d = make_detector(name)
    alerted = 0
    for i in range(len(y)):
        ts = T0 + i * HOUR
        for x, w in ((float(y[i]), 1.0), (float(y[i]) * 9.0, 30.0), (float(y[i]) * 3.0, 2.0)):
            peeked = d.peek(ts, x, w)
            alerted += peeked.is_anomaly
            if peeked.is_anomaly:
                assert d.may_alert(ts, x, w), (i, x, w)
            elif name == "shift":
                assert not d.may_alert(ts, x, w), (i, x, w)
        d.update(ts, float(y[i]))
    assert alerted  # the test saw alerts to allow


@pytest.mark.parametrize("name", NAMES)
def test_no_silent_hour_before_quiet_until_alerts(name: str) -> None:
    """The watch lets a series silent in an hour doze until the first silent hour one of its
    detectors says may alert (``quiet_until``), asked again with the state it had when the
    silence began: sound only if no silent hour before that one alerts, after ordinary
    spend, a runaway, a day four times its usual, silence starting at any hour of a day."""
    y = spend(6, seed=9)
    y[-30:-20] *= 25.0  # a runaway before the last day
    y[-24:] *= 4.0  # and a day far over its usual
    found = 0
    for cut in range(len(y) - 30, len(y), 3):  # the silence begins at various hours of a day
        d = make_detector(name, min_usd=1.0) if name in ("baseline", "wow") else make_detector(name)
        for i in range(cut):
            d.update(T0 + i * HOUR, float(y[i]))
        frozen = pickle.loads(pickle.dumps(d))  # the state the dozing series keeps
        for i in range(cut, cut + 60):
            ts = int(T0 + i * HOUR)
            due = frozen.quiet_until(ts, 0.0)
            verdict = d.update(float(ts), 0.0)
            assert due >= ts
            if due > ts:
                assert not verdict.is_anomaly, (cut, i)
            found += verdict.is_anomaly
    if name == "wow":
        assert found  # a day's end judged on a silent hour: the case the watch must visit
