"""The watch's snapshot is plain, versioned JSON that restores to the same watch.

Restarts that resume alike are in ``test_watch.py`` (a runaway and a budget), ``test_legacy.py``
(from the pickles of earlier releases) and ``test_series_cap.py``; here: its form, exactness,
a file an earlier release wrote, and what it refuses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.schemas import Config, KeyInfo, KeyRule, KeysConfig, RollupRecord, encode_alert
from tests.detectors.test_legacy import CUT, _partial, _stage_plan, _stage_run
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


DATA = Path(__file__).parent / "data"


def test_a_snapshot_written_by_91ee7cd_resumes_with_the_alerts_that_release_sent() -> None:
    """``data/watch_snapshot_91ee7cd.json`` is ``SpendWatch.snapshot()`` as commit 91ee7cd
    (the last whose alert was a dataclass with epoch-second times) wrote it, at the point
    of ``test_legacy``'s stage fixture: the runaway's incident open, a partial hour
    observed. Resumed here, the watch sends what that release sent from it, byte for byte
    (``.alerts.jsonl``): the open incident goes on, no new page."""
    plan, config = _stage_plan()
    resumed = SpendWatch(config)
    assert resumed.restore((DATA / "watch_snapshot_91ee7cd.json").read_bytes()) == []
    assert len(resumed.incidents.open) == 4
    alerts = _stage_run(resumed, plan, start=CUT)
    # Less the fields added since (2026-12-06, 2026-12-07) at their defaults: what it sends
    # is a budget's and an operator's alerts (the open incident goes on without a follow-up).
    assert all(a.opened_at == "" and not a.held_keys for a in alerts)
    sent = b"".join(encode_alert(a) + b"\n" for a in alerts)
    added = rb'"opened_at":"[^"]*","held_keys":\{\},"more_targets":0,"part":0,'
    before = re.sub(added, b"", sent)
    # Less the budget's "resume" at its new week with no key to resume (its stop paused
    # none), which that release sent and which is not sent since 2026-12-07.
    release = (DATA / "watch_snapshot_91ee7cd.alerts.jsonl").read_bytes().splitlines(True)
    empty_resume = [r for r in release if b'"action":"resume","targets":[]' in r]
    assert len(empty_resume) == 1
    assert before == b"".join(r for r in release if r not in empty_resume)
    # And it is where a watch of this release would be at that point, but for the recent
    # look's calls at the last looks, which that release did not keep (a restored watch's
    # recent look waits for three looks in a row), and for what ``wow`` and ``shift``
    # learned: since 2026-12-06 ``wow``'s creep mean is floored at zero (that release let
    # it go negative) and ``shift`` judges a window's log mean with its few-calls
    # correction (that release without); since 2026-12-07 ``baseline``'s calls-per-dollar
    # sums learn the count test's spend, a level under zero a factor (that release: the spend test's).
    straight = SpendWatch(config)
    _stage_run(straight, plan[:CUT])
    _partial(straight, plan)
    for series in straight.series.values():
        series.recent = 0
    straight.clock.last_look = straight.clock.looks_from = None
    restored = SpendWatch(config)
    restored.restore((DATA / "watch_snapshot_91ee7cd.json").read_bytes())
    changed = {i for i, d in enumerate(config.detectors) if d.kind in ("wow", "shift", "baseline")}
    assert len(changed) == 3
    was, now = _unlearned(restored.snapshot(), changed), _unlearned(straight.snapshot(), changed)
    # That release numbered an empty resume at each new week (one seq more a week).
    was_seq, now_seq = dict(was["budgets"].pop("seq")), dict(now["budgets"].pop("seq"))
    assert was_seq.keys() == now_seq.keys()
    assert all(was_seq[k] - now_seq[k] in (0, 1) for k in was_seq), (was_seq, now_seq)
    assert was == now


def _unlearned(snapshot: bytes, slots: set[int]) -> dict[str, Any]:
    """A watch snapshot, parsed, with the state of the detectors of config entries
    ``slots`` left out (their layout stays: index and template)."""
    state = msgspec.json.decode(snapshot)
    for row in state["series"]:
        for det in row[6]:
            if det[0] in slots:
                det[2] = None
    return state


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
    for w in (watch, again):  # a minute record moves the watermark: the notice goes out
        w.observe([RollupRecord((), (), 60, T0 + 2 * HOUR, 0, 0, (0, 0))])
    sent = again.advance()
    assert [a.kind for a, _ in sent] == ["series_cap"] and sent == watch.advance()


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
        (wrong_version, r"^watch snapshot version 99; this release reads 1 and 2$"),
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


def _edges_watch() -> SpendWatch:
    """A watch whose series hold every scalar a series keeps, at its edges: a key fed every
    5 minutes for two days (its recent calls at the last looks, an open hour), one that
    spent once and sleeps, one whose hour learned last has two parts that sum past int64,
    and an open part past int64 itself. Only the public API: the same code wrote the fixture below on
    commit fede4c2 (``_edges_fixture``)."""
    watch = SpendWatch(Config.model_validate({"dimensions": [["api_key"]]}))
    big = 2**62 + 2**61  # fits int64; two of them do not
    for step in range(2 * 24 * 12 + 5):
        end = T0 + (step + 1) * 300
        hour = (end - 1) // HOUR * HOUR
        calls = 1 + (end - hour) // 300
        records = [
            RollupRecord(("api_key",), ("k-busy",), HOUR, hour, 0, 0, (calls * 10**7, calls)),
            RollupRecord((), (), 60, end - 60, 0, 0, (0, 0)),
        ]
        if step == 0:
            records.append(RollupRecord(("api_key",), ("k-once",), HOUR, hour, 0, 0, (10**8, 2)))
        if step == 47 * 12:  # the last hour to close: two parts past int64 together
            records += [
                RollupRecord(("api_key",), ("k-huge",), HOUR, hour, p, 0, (big, 1)) for p in (0, 1)
            ]
        if step == 2 * 24 * 12 + 4:  # and an open part past int64 on its own
            records.append(RollupRecord(("api_key",), ("k-huge",), HOUR, hour, 2, 0, (2**64, 1)))
        watch.observe(records)
        watch.advance()
    return watch


#: ``_edges_watch().snapshot()`` as commit fede4c2 wrote it: the last release whose series
#: kept the hour learned last as a tuple and its other scalars as int objects.
EDGES = DATA / "watch_snapshot_fede4c2_edges.json"


def _with_todays_defaults(data: bytes) -> bytes:
    """The fixture with the config part of today's defaults: a snapshot names its detectors'
    parameters, and ``wow``'s have changed since (``creep_z``, ``creep_rise``); what the
    fixture pins is the series' layout."""
    params = {d.kind: d for d in Config().detectors}["wow"].params
    today = msgspec.json.encode(make_detector("wow", **params).params)
    out, n = re.subn(rb'\["wow",\{[^}]*\}', b'["wow",' + today, data)
    assert n == 1
    return out


def test_a_series_scalars_at_their_edges_read_and_write_as_the_release_before() -> None:
    """The snapshot's layout did not change when a series' scalars moved into its one int64
    array: a file the release before wrote restores to the same bytes, and a watch fed
    the same way writes them once no series dozes (so that release reads this one's). One
    with a series dozing (k-once, since 2026-12-07 written as it is) is version 2, which
    that release refuses in one line rather than misread."""
    data = _with_todays_defaults(EDGES.read_bytes())
    live = _edges_watch()
    assert msgspec.json.decode(live.snapshot())["version"] == 2
    live.book.settle_all(live.clock.closed_until, live.config)
    assert live.snapshot() == data
    again = SpendWatch(live.config)
    assert again.restore(data) == []
    assert again.snapshot() == data
    busy, once, huge = (again.series[(("api_key",), (k,))] for k in ("k-busy", "k-once", "k-huge"))
    assert busy.recent and busy.parts and busy.closed[2] == 13
    assert once.asleep_from and not once.parts
    huge_hour = T0 + 47 * HOUR
    assert huge.closed == (huge_hour, 2 * (2**62 + 2**61), 2) == live.series[huge.key].closed
    assert type(huge.state) is list and huge.total(T0 + 48 * HOUR) == (2**64, 1)


def test_an_hour_closing_past_int64_keeps_its_cost_exact_in_a_list() -> None:
    """A total past int64 turns a series' array into a list: its open parts' (as before)
    and now the closed hour's, which shares the array."""
    watch = SpendWatch(Config.model_validate({"dimensions": [["api_key"]]}))
    big = 2**62 + 2**61
    watch.observe([RollupRecord(("api_key",), ("k",), HOUR, T0, p, 0, (big, 1)) for p in (0, 1)])
    series = watch.series[(("api_key",), ("k",))]
    assert type(series.state) is not list  # each part fits
    watch.observe([RollupRecord((), (), 60, T0 + 2 * HOUR, 0, 0, (0, 0))])
    watch.advance()
    assert series.closed == (T0, 2 * big, 2) and not series.parts
    assert type(series.state) is list
    again = SpendWatch(watch.config)
    again.restore(watch.snapshot())
    assert again.series[series.key].closed == (T0, 2 * big, 2)
    assert again.snapshot() == watch.snapshot()
