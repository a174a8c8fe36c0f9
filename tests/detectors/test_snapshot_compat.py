"""Detectors pickled by the release that kept an instance dict still restore.

``data/detectors_dict_layout.json`` holds ``baseline``, ``wow`` and ``wow_naive`` pickled by
that release (commit 24fe8dc) after three weeks of ``spend(4, seed=5)`` (with a x10
runaway at hours 540-543), and the verdicts it gave for the next 48 hours. It was made by
``python -c`` on that commit:

    y = spend(4, seed=5); y[540:544] *= 10.0
    d = make_detector(name); [d.update(T0 + i * HOUR, float(y[i])) for i in range(504)]
    pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)  # then d.update for hours 504-551

The restored detector must alert on the same hours and expect the same spend (to the
precision of the compact state: well under 1 %). ``wow`` is the exception: since 2026-12 it
judges whole days against the same days of four weeks, so its hourly snapshot restores
with its week of hours summed into days, and compares again once it holds two weeks.
"""

from __future__ import annotations

import base64
import copyreg
import dataclasses
import io
import json
import math
import pickle
from array import array
from pathlib import Path
from typing import Any

import pytest

from spendbrake.detectors import make_detector
from spendbrake.detectors._logcode import EMPTY, decode
from spendbrake.detectors._robust import BurnScale
from spendbrake.detectors._seasonal import SeasonalBaseline
from spendbrake.detectors._wow import WeekOverWeek
from spendbrake.schemas import unpickle_state
from tests.detectors.synth import HOUR, T0, spend

DATA = json.loads((Path(__file__).parent / "data" / "detectors_dict_layout.json").read_bytes())
NAMES = ("baseline", "wow", "wow_naive")


def _inputs() -> list[float]:
    y = spend(4, seed=5)
    y[540:544] *= 10.0
    return [float(v) for v in y]


def _old_pickle(name: str) -> bytes:
    return base64.b64decode(DATA[name]["pickle_b64"])


class _Capture:
    """Stands in for the detector class to read the old pickle's instance dict as is."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


class _DictReader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in ("detectors._seasonal", "detectors._wow", "detectors._wow_naive"):
            return _Capture
        return super().find_class(module, name)


def _old_dict(name: str) -> dict[str, Any]:
    return _DictReader(io.BytesIO(_old_pickle(name))).load().state


#: Verdicts that changed on purpose since that release: the runaway's fourth hour came after
#: the level stepped up to it, and since 2026-12 ``baseline``'s ceiling moves up with the
#: level (a launch the level took in is no runaway); the runaway alerted the hour before.
_SINCE_CHANGED = {("baseline", 543)}


@pytest.mark.parametrize("name", ("baseline", "wow_naive"))
def test_dict_layout_pickle_restores_and_alerts_alike(name: str) -> None:
    d = unpickle_state(_old_pickle(name))
    assert type(d) is type(make_detector(name))
    assert not hasattr(d, "__dict__")
    y = _inputs()
    for i, (alert, expected) in zip(range(504, 552), DATA[name]["verdicts"], strict=True):
        v = d.update(T0 + i * HOUR, y[i])
        assert v.is_anomaly == (alert and (name, i) not in _SINCE_CHANGED), i
        if expected is None:
            assert v.expected is None
        else:
            assert v.expected == pytest.approx(expected, rel=0.01)
    assert sum(a for a, _ in DATA[name]["verdicts"]) >= 1  # the fixture does hold a runaway


@pytest.mark.parametrize("name", NAMES)
def test_dict_layout_params_come_back(name: str) -> None:
    d = unpickle_state(_old_pickle(name))
    old = _old_dict(name)
    # Those that still mean the same come back; ``wow``'s others take today's defaults.
    same = {k: old[k] for k in d.params if k in old}
    if name == "wow":
        same = {k: same[k] for k in ("window_s", "period_s", "rise", "min_usd", "step")}
    assert {k: d.params[k] for k in same} == same
    # Defaults changed since that release (a snapshot keeps the parameters it was built
    # with; a watch restoring it retunes them: test_watch.py).
    changed = {"baseline": {"peak_n": 6}}.get(name, {})
    assert d.params == {**make_detector(name).params, **changed}
    again = pickle.loads(pickle.dumps(d))
    assert pickle.dumps(again) == pickle.dumps(d)


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("baseline", ("auto_unit", "sharp_z", "_unit", "_first")),
        ("wow", ("z", "noise_alpha", "noise_n", "_var", "_var_n")),
        ("wow_naive", ("z", "noise_alpha", "noise_n", "_var", "_var_n")),
    ],
)
def test_snapshot_from_before_new_state_still_restores(name: str, new: tuple[str, ...]) -> None:
    """A dict-layout snapshot from before these fields existed has none of them."""
    state = _old_dict(name)
    for attr in new:
        del state[attr]
    cls = type(make_detector(name))
    old = cls.__new__(cls)
    old.__setstate__(state)
    y = _inputs()
    for i in range(504, 552):
        v = old.update(T0 + i * HOUR, y[i])
        assert 0.0 <= v.score <= 1.0
        assert not math.isnan(v.score)
    if name == "wow_naive":
        assert old.z == 0.0  # the baseline stays the plain 30 % rule
    if name == "wow":
        assert old.z == make_detector("wow").z  # the daily detector's own bar
    if name == "baseline":
        assert old._unit == old.unit and old._first is None  # learned in its old unit


def _hyper(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj._hp, f.name) for f in dataclasses.fields(obj._hp) if f.init}


class _DictLayoutPickler(pickle.Pickler):
    """Writes detectors as the dict-layout release did (state built by hand from this one).

    The conversion is lossless: a float32 holds every profile code / 1024 exactly and
    every ring value closely enough to read back the same code.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BurnScale):
            slots = {**_hyper(obj), "abs_dev": obj.abs_dev, "n": obj.n, "recent": list(obj.recent)}
            return copyreg.__newobj__, (BurnScale,), (None, slots)
        if isinstance(obj, SeasonalBaseline):
            season = obj._hp.season
            peaks = obj._profile[season:]
            state = {
                **_hyper(obj),
                "_profile": array("f", [obj._get(i) for i in range(season)]),
                "_counts": bytearray(obj._count(i) for i in range(season)),
                "_peaks": array("f", [0.0 if c == EMPTY else decode(c) for c in peaks]),
                "_last": list(obj._last),
                **{
                    k: getattr(obj, k)
                    for k in obj.state_fields
                    if k not in ("_profile", "_counts", "_last", "_wmean")
                },
            }
            return copyreg.__newobj__, (type(obj),), state
        # ``wow`` (a daily detector since 2026-12) never had the dict layout: kept as it is.
        return NotImplemented


def test_hourly_wow_snapshot_restores_as_days() -> None:
    """The hourly ``wow`` of the dict-layout release: its params that still mean the same,
    its ring of hours summed into whole days, its open day's hours so far; the next days
    are judged once two weeks are held (no alert, no raise until then)."""
    d = unpickle_state(_old_pickle("wow"))
    assert isinstance(d, WeekOverWeek) and not hasattr(d, "__dict__")
    old = _old_dict("wow")
    y = _inputs()
    head, k0 = old["_head"], int(T0 // HOUR)  # hours since the epoch; T0 is a midnight
    assert head == k0 + 503  # 21 days of hours fed
    ring = old["_ring"]
    hours = {k: float(ring[k % len(ring)]) for k in range(head - len(ring) + 1, head + 1)}
    for day in range(k0 // 24 + 14, k0 // 24 + 21):  # the whole days the 192 hours held
        total = sum(
            0.0 if math.isnan(hours[h]) else hours[h] for h in range(day * 24, day * 24 + 24)
        )
        code = d._ring[day % d._hp.ring]
        assert decode(code) == pytest.approx(total, rel=0.002), day
    assert d._head == k0 // 24 + 21 and d._sum == 0.0  # hour 503 closed day 20
    for i in range(504, 552):
        v = d.update(T0 + i * HOUR, y[i])
        assert 0.0 <= v.score <= 1.0 and not v.is_anomaly


def test_hourly_wow_slots_snapshot_restores_as_days() -> None:
    """The hourly ``wow`` in its slots layout (2026-12-03 to 2026-12-05: ``_hp`` a
    ``_WowParams``): restored, mid-day, with the open day's sum."""
    from spendbrake.detectors._wow_naive import HourlyWeekOverWeek

    hourly = HourlyWeekOverWeek(min_usd=7.0)
    y = _inputs()
    for i in range(500):
        hourly.update(T0 + i * HOUR, y[i])
    blob = pickle.dumps(hourly).replace(
        b"HourlyWeekOverWeek", b"WeekOverWeek\x00\x00\x00\x00\x00\x00"
    )
    state = hourly.__getstate__()
    d = WeekOverWeek.__new__(WeekOverWeek)
    d.__setstate__(state)
    assert d.min_usd == 7.0 and d._head == int(T0 // 86400) + 20
    assert d._sum == pytest.approx(sum(y[480:500]), rel=0.01)
    assert blob  # (the class name is all that differs in such a pickle)
    for i in range(500, 560):
        v = d.update(T0 + i * HOUR, y[i])
        assert 0.0 <= v.score <= 1.0
