"""The watch's snapshot is plain, versioned JSON that restores to the same watch.

Restarts that resume alike are in ``test_watch.py`` (a runaway and a budget), ``test_legacy.py``
(from the pickles of earlier releases) and ``test_series_cap.py``; here: its form, exactness
and what it refuses.
"""

from __future__ import annotations

import msgspec
import pytest

from spendbrake.detectors import SpendWatch
from spendbrake.schemas import Config, KeyInfo, KeyRule, KeysConfig, RollupRecord
from tests.detectors.test_watch import (
    HOUR,
    T0,
    _history,
    _run,
    _runaway,
    _runaway_under_a_budget,
)


def _watch_mid_runaway() -> SpendWatch:
    plan, config = _runaway_under_a_budget()
    watch = SpendWatch(config)
    _run(watch, plan[: 24 * 19 + 5])  # the runaway's incident open, thresholds fired
    return watch


def test_the_snapshot_is_plain_versioned_json_and_restores_to_the_same_bytes() -> None:
    watch = _watch_mid_runaway()
    data = watch.snapshot()
    state = msgspec.json.decode(data)
    assert (state["kind"], state["version"]) == ("spendbrake.watch", 1)
    assert state["incidents"]["open"] and state["budgets"]["seq"] and state["series"]
    again = SpendWatch(watch.config)
    assert again.restore(data) == []
    assert again.snapshot() == data
    # An incident seen at several scopes is one object again, as it was live.
    incidents = {id(i) for i in again.incidents.open.values()}
    assert len(incidents) == len(state["incidents"]["incidents"]) < len(again.incidents.open)


def test_totals_past_int64_and_pending_cap_notices_survive_exactly() -> None:
    config = Config.model_validate({"dimensions": [["customer"]], "limits": {"series_per_set": 10}})
    watch = SpendWatch(config)
    huge = 2**64 + 7
    records = [
        RollupRecord(("customer",), (f"c{i}",), HOUR, T0, 0, 0, (huge if i == 3 else i + 1, 1))
        for i in range(12)
    ]
    watch.observe(records)  # two past the cap: a notice pending until the next advance
    again = SpendWatch(config)
    again.restore(watch.snapshot())
    assert again.series[(("customer",), ("c3",))].total(T0) == (huge, 1)
    assert again.folded_series() == 2
    assert again.advance() == watch.advance()


def test_the_key_directory_restores_as_it_was_and_the_config_in_force_decides_pauses() -> None:
    """A detect snapshot holds the key directory (each key's workload as its first events
    said). It restores as it was, and who may be paused is the config's in force: here
    k-agent, batch by its events, is critical by the operator's word."""
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 14, 3, 25.0)
    cut = 24 * 18
    first = SpendWatch(Config())
    _run(first, plan[:cut])
    snapshot = first.snapshot()
    protected = KeysConfig(rules=[KeyRule(api_key="k-agent", workload="critical")])
    second = SpendWatch(Config(keys=protected))
    assert second.restore(snapshot) == []  # the keys section is not what baselines learned
    assert second.keys["k-agent"] == KeyInfo("k-agent", "search", "agent", "production", "batch")
    runaway = [a for a in _run(second, plan, start=cut) if a.scope == {"api_key": "k-agent"}]
    assert runaway and all(a.action == "alert" and not a.targets for a in runaway)
    assert runaway[0].critical_keys == ["k-agent"]
    # The same snapshot under a config that lists it as batch pauses it.
    third = SpendWatch(Config(keys=KeysConfig(rules=[KeyRule(api_key="k-*", workload="batch")])))
    third.restore(snapshot)
    paused = [a for a in _run(third, plan, start=cut) if a.action == "pause"]
    assert paused and paused[0].targets == ["k-agent"]


def _broken(data: bytes) -> list[tuple[bytes, str]]:
    state = msgspec.json.decode(data)
    wrong_version = msgspec.json.encode({**state, "version": 99})
    row = state["series"][0]
    state["series"][0] = [*row[:6], [[row[6][0][0], 0, ["not", "a", "baseline"]]]]
    return [
        (data[: len(data) // 2], r"^not JSON: "),
        (b'{"kind": "spendbrake.ingest"}', r"^not a watch snapshot \(kind 'spendbrake.ingest'\)$"),
        (wrong_version, r"^watch snapshot version 99; this release reads 1$"),
        (msgspec.json.encode(state), r"^watch snapshot: baseline state: 12 values expected$"),
    ]


def test_a_damaged_or_foreign_snapshot_is_refused_in_one_line_and_changes_nothing() -> None:
    watch = _watch_mid_runaway()
    data = watch.snapshot()
    for bad, message in _broken(data):
        with pytest.raises(ValueError, match=message) as caught:
            watch.restore(bad)
        assert "\n" not in str(caught.value)
        assert watch.snapshot() == data
