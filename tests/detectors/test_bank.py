"""The watch's series hold their detectors as a row of a bank (``detectors._bank``).

One detector object per config entry is moved from row to row as the watch steps its
series, so the failures to rule out are a series stepped on another's row, a row freed
while its series lives (or kept after it goes), and state shared between a series and
the detectors it was given.
"""

from __future__ import annotations

import copy
import gc
import weakref

import msgspec
import pytest

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.detectors._bank import Bank, Loose
from spendbrake.detectors._series import metric_value, weight
from spendbrake.detectors._watch_state import dump_watch, load_watch
from spendbrake.schemas import NUSD, Config, RollupRecord
from tests.detectors.synth import spend

T0 = 1_790_553_600  # a Monday
KEYS = [f"k-{i}" for i in range(6)]


def _watch(detectors: list | None = None) -> SpendWatch:
    raw: dict = {"dimensions": [["api_key"]]}
    if detectors is not None:
        raw["detectors"] = detectors
    return SpendWatch(Config.model_validate(raw))


def _hours(
    watch: SpendWatch,
    spends: dict[str, list[float]],
    first_h: int = 0,
    teams: dict[str, list[float]] | None = None,
) -> None:
    """Each key's (and team's) spend, an hour at a time (10 calls an hour), closing each hour."""
    hours = len(next(iter(spends.values())))
    series = [(("api_key",), k, ys) for k, ys in spends.items()]
    series += [(("team",), t, ys) for t, ys in (teams or {}).items()]
    for h in range(first_h, first_h + hours):
        start = T0 + h * 3600
        records = []
        for dims, k, ys in series:
            metrics = (round(ys[h - first_h] * NUSD), 10, 0, 0, 0, 0, 0, 0)
            records.append(RollupRecord(dims, (k,), 3600, start, 0, 0, metrics))
        watch.observe(records)
        watch.observe([RollupRecord((), (), 60, start + 3600 + 660, 0, 0, (0,) * 8)])
        watch.advance()


def _spends(weeks: int) -> dict[str, list[float]]:
    return {k: [float(y) for y in spend(weeks, seed=i) * (1.0 + i)] for i, k in enumerate(KEYS)}


def test_series_of_the_same_entries_step_as_detectors_of_their_own_would() -> None:
    """Six keys stepped hour by hour through one bank: each series' state is what its own
    detectors, fed the same hours alone, hold (no series read or wrote another's row)."""
    watch = _watch()
    spends = _spends(3)
    _hours(watch, spends)
    banks = {id(s.bank) for s in watch.series.values()}
    assert len(banks) == 1 and isinstance(watch.series[(("api_key",), ("k-0",))].bank, Bank)
    assert len({s.row for s in watch.series.values()}) == len(KEYS)
    for i, k in enumerate(KEYS):
        series = watch.series[(("api_key",), (k,))]
        learned_until = series.closed[0]
        alone = []
        for j in series.slots:
            cfg = watch.config.detectors[j]
            det = make_detector(cfg.kind, **cfg.params)
            for h, y in enumerate(spends[k]):
                ts = T0 + h * 3600
                if ts > learned_until:
                    break
                cost = round(y * NUSD)
                det.update(float(ts), metric_value(cfg, cost, 10), weight(cfg, det, 10))
            alone.append(det.dump_state())
        assert [d.dump_state() for d in series.dets] == alone, (i, k)


def test_a_view_is_live_and_never_frees_its_series_row() -> None:
    watch = _watch()
    _hours(watch, _spends(1))
    series = watch.series[(("api_key",), ("k-2",))]
    row, rows = series.row, series.bank.rows
    view = series.dets[0]
    before = view._n
    view._n = before + 5  # a view writes the series' own state
    assert series.dets[0]._n == before + 5
    del view
    gc.collect()
    assert all(row not in r.free for r in rows)


def test_a_series_gone_frees_its_row_and_the_next_starts_fresh() -> None:
    watch = _watch()
    _hours(watch, _spends(1))
    sk = (("api_key",), ("k-3",))
    bank, row = watch.series[sk].bank, watch.series[sk].row
    del watch.book.series[sk]
    gc.collect()
    assert all(row in r.free for r in bank.rows)
    new = watch.book.new_series((("api_key",), ("new-key",)), watch.config)
    assert new.bank is bank and new.row == row  # the freed row, taken again
    fresh = [make_detector(c.kind, **c.params) for c in watch.config.detectors]
    assert [d.dump_state() for d in new.dets] == [d.dump_state() for d in fresh]


def test_detectors_given_to_a_series_are_copied_in_not_kept() -> None:
    """A series takes a copy of the state of the detectors it is given (a restore's, a
    reload's): changing them later, the list a warming baseline keeps included, leaves the
    series' state as it was."""
    watch = _watch()
    _hours(watch, {k: ys[:48] for k, ys in _spends(1).items()})  # the first season: warming
    series = watch.series[(("api_key",), ("k-1",))]
    given = [(j, copy.deepcopy(d)) for j, d in series.detectors]
    series.detectors = given
    baseline = given[0][1]
    assert baseline.name == "baseline" and isinstance(baseline._first, list)
    state = [d.dump_state() for d in series.dets]
    baseline._first[0] += 1000.0
    baseline.update(float(T0 + 400 * 3600), 50.0)
    assert [d.dump_state() for d in series.dets] == state
    assert series.dets[0]._first is not baseline._first


def test_a_copy_of_a_view_leaves_the_bank_in_step() -> None:
    """A copy (a peek's twin, a retune's) takes a row of its shape's own rows, not of the
    bank: the bank's rows stay in step, so the next series still gets one row number."""
    watch = _watch()
    _hours(watch, _spends(1))
    series = watch.series[(("api_key",), ("k-0",))]
    bank = series.bank
    made = [r.n for r in bank.rows]
    twin = copy.copy(series.dets[1])
    assert twin._rows is not bank.rows[1]
    assert [r.n for r in bank.rows] == made
    _hours(watch, {"k-new": [2.0]}, first_h=200)
    assert watch.series[(("api_key",), ("k-new",))].bank is bank


def test_detectors_with_state_of_their_own_stay_objects() -> None:
    watch = _watch([{"kind": "wow_naive", "metric": "cost_usd"}])
    _hours(watch, _spends(1))
    series = watch.series[(("api_key",), ("k-0",))]
    assert isinstance(series.bank, Loose)
    assert series.dets[0] is series.dets[0] is series.row[0]


def test_a_restore_that_fails_takes_no_row() -> None:
    """A snapshot whose last series' state does not load is refused whole, and the rows its
    earlier series were loaded into are free again."""
    watch = _watch()
    _hours(watch, _spends(1))
    bank = watch.series[(("api_key",), ("k-0",))].bank
    in_use = [r.n - len(r.free) for r in bank.rows]
    data = dump_watch(watch)
    state = msgspec.json.decode(data)
    state["series"][-1][6][0][2] = state["series"][-1][6][0][2][:-1]  # a value short
    other = _watch()
    with pytest.raises(ValueError, match="state"):
        load_watch(other, msgspec.json.encode(state))
    gc.collect()
    assert [r.n - len(r.free) for r in bank.rows] == in_use
    load_watch(other, data)
    assert other.series.keys() == watch.series.keys()


def test_a_bank_left_by_a_reload_goes_with_its_last_series() -> None:
    """A reload that changes a threshold moves every series to a bank of the new
    hyperparameters; the old bank's arrays (a row for each series it had) are freed, not
    kept for the life of the process."""
    watch = _watch()
    _hours(watch, _spends(1))
    old = weakref.ref(watch.series[(("api_key",), ("k-0",))].bank)
    raised = Config.model_validate(
        {
            "dimensions": [["api_key"]],
            "detectors": [
                {**c.model_dump(), "params": {**c.params, "min_usd": 7.0}}
                if c.kind == "baseline"
                else c.model_dump()
                for c in watch.config.detectors
            ],
        }
    )
    watch.reconfigure(raised)
    assert len({id(s.bank) for s in watch.series.values()}) == 1
    gc.collect()
    assert old() is None
    assert watch.series[(("api_key",), ("k-0",))].dets[0].min_usd == 7.0


def test_loose_and_banked_series_restore_and_go_on_alike() -> None:
    """Keys in a bank and teams with detectors of their own (loose), through a snapshot:
    the restored watch holds and learns what the first one does."""
    detectors = [
        {"kind": "baseline", "metric": "cost_usd", "dimensions": [["api_key"]]},
        {"kind": "wow_naive", "metric": "cost_usd", "dimensions": [["team"]]},
        {"kind": "cloud_sigma", "metric": "cost_usd", "dimensions": [["team"]]},
    ]
    raw = {"dimensions": [["api_key"], ["team"]], "detectors": detectors}
    first = SpendWatch(Config.model_validate(raw))
    spends = _spends(1)
    teams = {"a": [sum(ys) for ys in zip(*spends.values(), strict=True)]}
    _hours(first, {k: ys[:100] for k, ys in spends.items()}, teams={"a": teams["a"][:100]})
    kinds = {s.key[0]: type(s.bank) for s in first.series.values()}
    assert kinds == {("api_key",): Bank, ("team",): Loose}
    second = SpendWatch(Config.model_validate(raw))
    load_watch(second, dump_watch(first))
    assert dump_watch(second) == dump_watch(first)
    rest = {k: ys[100:] for k, ys in spends.items()}
    _hours(first, rest, first_h=100, teams={"a": teams["a"][100:]})
    _hours(second, rest, first_h=100, teams={"a": teams["a"][100:]})
    assert dump_watch(second) == dump_watch(first)
