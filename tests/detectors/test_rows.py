"""Detectors whose state lives in shared rows (``detectors._rows``): each row is its own.

The rows of all detectors of one class and shape share a few arrays, so the failures to
rule out are a row seen by two detectors, a reused row that still holds its last owner's
state, and a snapshot that writes past its row.
"""

from __future__ import annotations

import copy
import gc
import pickle

import msgspec
import pytest

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.detectors._plain import to_plain
from spendbrake.detectors._retune import retune
from spendbrake.detectors._rows import InRows, row_names
from spendbrake.schemas import NUSD, Config, RollupRecord
from tests.detectors.synth import HOUR, T0, spend

ROWED = ["baseline", "wow", "shift"]


def _feed(d, ys, start: int = 0, weight: float = 1.0) -> list:
    return [d.update(T0 + (start + i) * HOUR, float(y), weight) for i, y in enumerate(ys)]


@pytest.mark.parametrize("name", ROWED)
def test_the_default_detectors_keep_their_state_in_rows(name: str) -> None:
    assert isinstance(make_detector(name), InRows)


@pytest.mark.parametrize("name", ROWED)
def test_interleaved_detectors_give_what_each_gives_alone(name: str) -> None:
    """Ten detectors stepped in turn, hour by hour, each on its own series: the verdicts of
    each one run alone, so no detector reads or writes another's row."""
    series = [spend(3, seed=s) * (1.0 + s) for s in range(10)]
    alone = [_feed(make_detector(name), ys) for ys in series]
    together = [make_detector(name) for _ in series]
    got: list[list] = [[] for _ in series]
    for h in range(len(series[0])):
        for d, ys, out in zip(together, series, got, strict=True):
            out.append(d.update(T0 + h * HOUR, float(ys[h])))
    assert got == alone


@pytest.mark.parametrize("name", ROWED)
def test_a_row_left_by_a_detector_starts_the_next_one_fresh(name: str) -> None:
    ys = spend(3, seed=1)
    gone = make_detector(name)
    _feed(gone, ys * 5.0)
    row, rows = gone._row, gone._rows
    del gone
    gc.collect()
    assert row in rows.free
    fresh = make_detector(name)
    assert (fresh._rows, fresh._row) == (rows, row)  # the same row, reused
    assert fresh.dump_state() == make_detector(name).dump_state()
    again = make_detector(name)
    assert _feed(fresh, ys) == _feed(again, ys)


@pytest.mark.parametrize("name", ROWED)
def test_copies_and_pickles_have_rows_of_their_own(name: str) -> None:
    """A deep copy or a pickle is a detector of its own; a shallow copy (a restore's
    template, ``wow``'s peek) has a row of its own, its other attributes shared."""
    ys = spend(3, seed=2)
    d = make_detector(name)
    _feed(d, ys[:300])
    before = pickle.dumps(d)
    in_row = row_names(type(d))
    row_before = [to_plain(getattr(d, n)) for n in in_row]
    twin, deep, thawed = copy.copy(d), copy.deepcopy(d), pickle.loads(before)
    assert len({d._row, twin._row, deep._row, thawed._row}) == 4
    _feed(twin, ys[300:] * 3.0, start=300)
    assert [to_plain(getattr(d, n)) for n in in_row] == row_before
    d = pickle.loads(before)
    _feed(deep, ys[300:] * 3.0, start=300)
    assert pickle.dumps(d) == before
    assert _feed(d, ys[300:], start=300) == _feed(thawed, ys[300:], start=300)


def test_a_block_of_the_wrong_size_is_refused_by_name() -> None:
    d = make_detector("baseline")
    state = msgspec.json.decode(msgspec.json.encode(d.dump_state()))
    i = d.state_fields.index("_profile")
    state[i] = state[i][:-2]  # one int16 code short
    with pytest.raises(ValueError, match="_profile"):
        make_detector("baseline").load_state(state)


def test_an_int_past_float64_precision_is_refused_by_name() -> None:
    d = make_detector("shift")
    state = d.dump_state()
    state[d.state_fields.index("_n")] = 2**60
    with pytest.raises(ValueError, match="_n"):
        make_detector("shift").load_state(state)


@pytest.mark.parametrize("change", [{"fast_z": 4.0}, {"slow_n": 4}, {"min_usd": 3.0}])
def test_a_retune_keeps_what_the_row_holds_and_runs_the_new_params(change: dict) -> None:
    """The residual scale is kept in ``baseline``'s row: a retune of its thresholds or its
    window keeps what it learned (as when it was an object of its own), under the new ones."""
    d = make_detector("baseline")
    _feed(d, spend(3, seed=1))
    kept = retune(d, **change)
    assert kept is not None and kept._row != d._row
    assert to_plain(kept._scale)[:2] == to_plain(d._scale)[:2]  # scale and count
    assert kept._profile == d._profile and kept._level == d._level
    for name, value in change.items():
        assert kept.params[name] == value
        if name in ("fast_z", "slow_n"):
            assert getattr(kept._scale, name) == value


def test_a_watch_that_forgets_series_gives_their_rows_to_new_ones() -> None:
    """Keys come and go in a live detect stage: a series forgotten after 15 silent days
    frees its detectors' rows, and the keys that follow take them (no growth with churn)."""
    t0 = 1_790_553_600  # a Monday
    watch = SpendWatch(Config.model_validate({"dimensions": [["api_key"]]}))

    def spend_hours(keys: list[str], first_h: int, hours: int) -> None:
        for h in range(first_h, first_h + hours):
            start = t0 + h * 3600
            metrics = (NUSD, 10, 0, 0, 0, 0, 0, 0)
            watch.observe(
                [RollupRecord(("api_key",), (k,), 3600, start, 0, 0, metrics) for k in keys]
            )
            watch.observe([RollupRecord((), (), 60, start + 3600 + 660, 0, 0, (0,) * 8)])
            watch.advance()

    spend_hours([f"old-{i}" for i in range(40)], 0, 24)
    rows = {type(d): d._rows for s in watch.series.values() for d in s.dets}
    made = {kind: r.n for kind, r in rows.items()}
    spend_hours(["keeper"], 24, 17 * 24)  # the old keys fall silent, then are forgotten
    gc.collect()
    assert not any(k[1][0].startswith("old-") for k in watch.series)
    spend_hours([f"new-{i}" for i in range(40)], 41 * 24, 24)
    for kind, r in rows.items():
        assert r.n <= made[kind] + 1, kind  # the new keys took the old keys' rows
