"""Pickled watch snapshots of earlier releases are read once (``restore_legacy``) and resume alike.

``data/detect_snapshot_2af9d66.pkl`` is a detect-stage ``snapshot.pkl`` written by commit
2af9d66 (the last release that pickled it) with ``_stage_plan`` below: three weeks of
``_history`` with a runaway on k-chat from hour 459, a weekly team budget, 14 customers over
a cap of 10 series a set, cut at hour 461 (the runaway's incident open) with a partial
hour observed and not yet looked at:

    watch = SpendWatch(config); _stage_run(watch, plan[:CUT]); _partial(watch, plan)
    pickle.dumps({"offsets": {0: 4321}, "mark_parts": {(0, 0): watch.now},
                  "watch": watch.snapshot()}, protocol=pickle.HIGHEST_PROTOCOL)

Older layouts (series as the dataclass of before 2026-12-04, or a dict of parts per hour;
detectors with an instance dict) are written here by hand, from a live watch, the way
those releases wrote them.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import pytest

from spendbrake.actions import apply_policies
from spendbrake.detectors import SpendWatch
from spendbrake.detectors._book import cap_notice
from spendbrake.detectors._series import Series
from spendbrake.schemas import (
    Alert,
    BudgetConfig,
    Config,
    KeyInfo,
    RollupRecord,
    parse_ts,
    unpickle_state,
)
from tests.detectors.test_snapshot_compat import _DictLayoutPickler
from tests.detectors.test_watch import (
    HOUR,
    NUSD,
    T0,
    _history,
    _records,
    _run,
    _runaway,
    _runaway_under_a_budget,
)

FIXTURE = Path(__file__).parent / "data" / "detect_snapshot_2af9d66.pkl"
CUT = 24 * 19 + 5


def _stage_plan() -> tuple[list[dict[str, float]], Config]:
    plan = _history(24 * 21)
    _runaway(plan, "k-chat", 24 * 19 + 3, 4, 20.0)
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=2000, period="week")
    return plan, Config(budgets=[budget], limits={"series_per_set": 10})


def _stage_run(watch: SpendWatch, plan: list[dict[str, float]], start: int = 0) -> list[Alert]:
    """``_run`` with 14 customers' hourly spend besides (4 past the cap of 10)."""
    alerts: list[Alert] = []
    for h in range(start, len(plan)):
        for fraction in (0.25, 0.5, 0.75, 1.0):
            hour = T0 + h * HOUR
            customers = [
                RollupRecord(
                    ("customer",),
                    (f"c{i:02d}",),
                    HOUR,
                    hour,
                    i % 2,
                    0,
                    (round((i + 1) * fraction * NUSD), 1 + i),
                )
                for i in range(14)
            ]
            watch.observe(_records(hour, plan[h], fraction) + customers)
            config = watch.config
            alerts.extend(
                apply_policies(a, known, config.policies, config.keys)
                for a, known in watch.advance()
            )
    return alerts


def _partial(watch: SpendWatch, plan: list[dict[str, float]]) -> None:
    """A tenth of hour CUT, observed and not looked at yet (open hours marked dirty)."""
    watch.observe(_records(T0 + CUT * HOUR, plan[CUT], 0.1))


def test_the_stage_snapshot_of_2af9d66_migrates_and_resumes_alike() -> None:
    plan, config = _stage_plan()
    straight = SpendWatch(config)
    _stage_run(straight, plan[:CUT])
    _partial(straight, plan)
    want = _stage_run(straight, plan, start=CUT)
    saved = unpickle_state(FIXTURE.read_bytes())
    assert saved["offsets"] == {0: 4321}
    migrated = SpendWatch(config)
    assert migrated.restore_legacy(saved["watch"]) == []
    assert migrated.folded_series() == 4 and len(migrated.incidents.open) == 4
    assert migrated.book.dirty and migrated.keys["k-chat"].team == "search"
    # Saved again as plain data, once: what the stage then restores from.
    resumed = SpendWatch(config)
    assert resumed.restore(migrated.snapshot()) == []
    assert resumed.snapshot() == migrated.snapshot()
    after = _stage_run(resumed, plan, start=CUT)
    assert after == want
    # The runaway goes on past the cut: part of the incident already sent, not a new page.
    # (The budget's new week resumes nothing: its stop paused no key, so nothing is sent.)
    assert [a.kind for a in after] == ["series_cap"]
    forgetful = SpendWatch(config)
    forgetful.restore(migrated.snapshot())
    forgetful.incidents.open.clear()
    assert any(a.kind == "anomaly" for a in _stage_run(forgetful, plan, start=CUT))


class _Series:
    """Named as the watch's series class was until 2026-12-05, for pickles written as then."""

    def __setstate__(self, state: Any) -> None:  # pragma: no cover - never read as this
        raise AssertionError("read through the legacy stand-in")


_Series.__module__ = "spendbrake.detectors._watch"


#: The series' slots the last pickling release had (its scalars are now in ``Series.state``).
_PICKLED_SLOTS = ("asleep_from", "closed", "dets", "key", "last_spend_hour", "parts", "slots")


def _old_series_state(s: Series, layout: str) -> Any:
    """A series' pickled state: ``slots`` (until 2026-12-05), ``dataclass`` (until
    2026-12-04: a scope, (index, detector) pairs, the cost last peeked per hour) or
    ``hours`` (until 2026-12-03: the dataclass with a dict of parts per open hour)."""
    if layout == "slots":
        return {name: getattr(s, name) for name in _PICKLED_SLOTS}
    slots: dict[str, Any] = {
        "scope": s.scope,
        "detectors": s.detectors,
        "parts": dict(s.part_items()),
        "last_spend_hour": s.last_spend_hour,
        "peeked": {h: s.total(h)[0] for h in s.hours()},
        "closed": s.closed,
    }
    if layout == "hours":
        by_hour: dict[int, dict[tuple[int, int], tuple[int, int]]] = {}
        for (hour, partition, epoch), value in slots.pop("parts").items():
            by_hour.setdefault(hour, {})[(partition, epoch)] = value
        slots["hours"] = by_hour
    return (None, slots)


class _OldWatchPickler(_DictLayoutPickler):
    """Series as ``_watch._Series`` in ``layout``; detectors in the dict layout if asked."""

    def __init__(self, buf: io.BytesIO, layout: str, dict_detectors: bool) -> None:
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.layout = layout
        self.dict_detectors = dict_detectors

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Series):
            return _Series, (), _old_series_state(obj, self.layout)
        if self.dict_detectors:
            return super().reducer_override(obj)
        return NotImplemented


def _pickled(
    watch: SpendWatch,
    layout: str = "slots",
    dict_detectors: bool = False,
    notices: list[Any] | None = None,
) -> bytes:
    """``watch.snapshot()`` as the releases until 2026-12-05 wrote it: its attributes, pickled
    (``notices``: its pending cap notices, as those releases held them)."""
    book, budgets, clock = watch.book, watch.budgets, watch.clock
    dirty: set[Any] = book.dirty
    if layout != "slots":
        dirty = {sk for sk, _ in dirty}  # until 2026-12-04 whole series were marked
    state = {
        "lateness_s": clock.lateness_s,
        "peek_s": clock.peek_s,
        "cpc_min_usd": watch.scoring.cpc_min_usd,
        "detect_dims": {tuple(d) for d in watch.config.dimensions},
        "budgets": budgets.trackers,
        "series": book.series,
        "_budget_hours": [held.hours for held in budgets.held],
        "_budget_minutes": [held.minutes for held in budgets.held],
        "_budget_paused": budgets.paused,
        "_budget_seq": budgets.seq,
        "keys": watch.keys,
        "_key_hour": watch.directory.last_hour,
        "incidents": watch.incidents,
        "_dirty": dirty,
        "now": clock.now,
        "partitions": clock.partitions,
        "marks": clock.marks,
        "idle": clock.idle,
        "closed_until": clock.closed_until,
        "_next_peek": clock.next_peek,
        "_folded": book.folded,
        "_cap_noticed": book.cap_noticed,
        "_notices": notices or [],
        "_built_from": {
            "detectors": watch.config.detectors,
            "budgets": watch.config.budgets,
            "dimensions": watch.config.dimensions,
        },
    }
    buf = io.BytesIO()
    # The class is gone: pickle checks it is importable where it names it, while it writes.
    module = importlib.import_module(_Series.__module__)
    module._Series = _Series  # type: ignore[attr-defined]
    try:
        _OldWatchPickler(buf, layout, dict_detectors).dump(state)
    finally:
        del module._Series  # type: ignore[attr-defined]
    return buf.getvalue()


@pytest.mark.parametrize("layout", ["slots", "dataclass", "hours"])
def test_a_pickled_watch_with_older_series_resumes_alike(layout: str) -> None:
    plan, config = _runaway_under_a_budget()
    straight = _run(SpendWatch(config), plan)
    cut = 24 * 19 + 2  # mid-hour of a day before the runaway: open hours hold parts
    first = SpendWatch(config)
    before = _run(first, plan[:cut])
    assert any(s.parts for s in first.series.values())
    old = _pickled(first, layout)
    assert b"_watch" in old and (b"peeked" in old) == (layout != "slots")
    second = SpendWatch(config)
    second.restore_legacy(old)
    assert [sorted(s.part_items()) for s in second.series.values()] == [
        sorted(s.part_items()) for s in first.series.values()
    ]
    after = _run(second, plan, start=cut)
    assert before + after == straight


def test_a_pickled_watch_with_dict_layout_detectors_resumes_alike() -> None:
    plan, config = _runaway_under_a_budget()
    straight = _run(SpendWatch(config), plan)
    cut = 24 * 19  # before the runaway: the restored detectors must catch it
    first = SpendWatch(config)
    before = _run(first, plan[:cut])
    old = _pickled(first, dict_detectors=True)
    assert b"_profile" in old and b"season_alpha" in old  # the dict layout
    second = SpendWatch(config)
    second.restore_legacy(old)
    after = _run(second, plan, start=cut)
    assert before + after == straight
    assert any(a.kind == "anomaly" for a in after)


class _OldAlert:
    """The alert those releases pickled pending cap notices as: a slots dataclass named
    ``schemas._alert.Alert``, times epoch seconds, its keys in memory."""

    __slots__ = (
        "action",
        "also",
        "budget",
        "detected_at",
        "detector",
        "expected_usd",
        "id",
        "keys",
        "kind",
        "observed_usd",
        "protected",
        "reason",
        "scope",
        "score",
        "seq",
        "severity",
        "targets",
        "threshold",
        "window_end",
        "window_start",
    )  # fmt: skip

    def __init__(self, notice: Alert) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(notice, name, None))
        self.window_start = parse_ts(notice.window_start)
        self.window_end = parse_ts(notice.window_end)
        self.detected_at = parse_ts(notice.detected_at)
        self.keys, self.protected = [], {}


_OldAlert.__module__, _OldAlert.__qualname__ = "spendbrake.schemas._alert", "Alert"


def test_a_pending_cap_notice_pickled_as_the_old_alert_is_still_sent() -> None:
    config = Config.model_validate({"dimensions": [["customer"]], "limits": {"series_per_set": 10}})
    straight, old = SpendWatch(config), SpendWatch(config)
    for watch in (straight, old):
        watch.observe(
            [RollupRecord(("customer",), (f"c{i}",), HOUR, T0, 0, 0, (NUSD, 1)) for i in range(12)]
        )
    notices = [_OldAlert(cap_notice(*n)) for n in old.book.notices]
    assert notices  # pending until the next advance
    module = importlib.import_module("spendbrake.schemas._alert")
    module.Alert = _OldAlert  # type: ignore[attr-defined, misc]
    try:
        data = _pickled(old, notices=notices)
    finally:
        module.Alert = Alert  # type: ignore[misc]
    assert b"spendbrake.schemas._alert" in data
    migrated = SpendWatch(config)
    migrated.restore_legacy(data)
    for watch in (straight, migrated):  # a minute record moves the watermark
        watch.observe([RollupRecord((), (), 60, T0 + 2 * HOUR, 0, 0, (0, 0))])
    sent = migrated.advance()
    assert [a.kind for a, _ in sent] == ["series_cap"] and sent == straight.advance()


def test_key_info_pickles_as_its_five_fields() -> None:
    """The layout the key directory has in pickled snapshots."""
    info = KeyInfo("k", team="t", feature="f", environment="e", workload="batch")
    assert info.__getstate__() == ["k", "t", "f", "e", "batch"]  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(info)) == info


def test_restore_names_the_way_for_a_pickle() -> None:
    with pytest.raises(
        ValueError, match=r"^a pickled snapshot of an earlier release: restore_legacy"
    ):
        SpendWatch(Config()).restore(FIXTURE.read_bytes())
