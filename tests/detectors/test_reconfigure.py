"""Config changes on a running watch: thresholds retuned in place, baselines and budget spend
kept, and what cannot be kept restarted and said so."""

from __future__ import annotations

import copy
import math

import pytest

from spendbrake.detectors import SpendWatch, available, make_detector
from spendbrake.detectors._budgets import SEEDED_LATER
from spendbrake.detectors._retune import retune
from spendbrake.schemas import BudgetConfig, Config, DetectorConfig, parse_ts
from tests.detectors.synth import run, spend
from tests.detectors.test_watch import RULES, T0, _history, _run, _runaway

HOUR = 3600


def _trained(name: str) -> object:
    d = make_detector(name)
    for h in range(24 * 21):
        d.update(h * HOUR, 10.0 + 5.0 * math.sin(h / 24 * 2 * math.pi) + (h * 7919 % 13) / 13)
    return d


def _changed(value: float | int) -> float | int:
    return type(value)(value * 2) if value else type(value)(1)


@pytest.mark.parametrize("name", available())
def test_every_parameter_change_keeps_a_working_detector_or_restarts_it(name: str) -> None:
    trained = _trained(name)
    for param, value in trained.params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            retuned = retune(trained, **{param: _changed(value)})
        except ValueError:
            continue  # the doubled value is out of range for this parameter
        if retuned is None:
            continue
        assert retuned.params[param] == _changed(value)
        assert retuned is not trained
        verdict = retuned.update(24 * 21 * HOUR, 12.0)
        assert 0.0 <= verdict.score <= 1.0, (name, param)


def test_a_threshold_change_keeps_what_the_baseline_learned() -> None:
    trained = _trained("baseline")
    retuned = retune(trained, min_usd=50.0, fast_z=4.0)
    assert retuned is not None and retuned.params["min_usd"] == 50.0
    ts = 24 * 21 * HOUR
    assert retuned.peek(ts, 12.0).expected == trained.peek(ts, 12.0).expected
    assert make_detector("baseline", min_usd=50.0).peek(ts, 12.0).expected != pytest.approx(
        trained.peek(ts, 12.0).expected
    )


def test_a_shorter_ceiling_window_forgets_the_windows_it_no_longer_sums() -> None:
    six = make_detector("baseline", peak_n=6)
    run(six, [10.0 + 5.0 * math.sin(h / 24 * 2 * math.pi) for h in range(24 * 21)])
    assert len(six._last) == 5
    one = retune(six, peak_n=1)
    assert one is not None and len(one._last) == 5  # kept, as learned state is...
    clean = copy.deepcopy(one)
    clean._last = ()
    ts = 24 * 21 * HOUR
    for value in (12.0, 200.0, 5000.0):  # ...but no longer summed by the ceiling
        assert one.peek(ts, value) == clean.peek(ts, value)
    one.update(ts, 12.0)
    assert len(one._last) == 0


def test_a_change_that_reshapes_the_state_restarts() -> None:
    assert retune(_trained("baseline"), season=24) is None
    assert retune(_trained("wow"), window_s=7 * 86400.0) is None


def _config(**baseline: float) -> Config:
    return Config(detectors=[DetectorConfig(kind="baseline", params=baseline)])


def test_reload_mid_stream_alerts_as_if_the_new_config_had_always_run() -> None:
    # The threshold only decides what alerts, not what is learned: after a reload the
    # watch must alert exactly as one that ran the new config from the start. A watch
    # that lost its baselines would be back in its two-week warm-up and miss the runaway.
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 14, 3, 25.0)
    new = _config(min_usd=8.0)
    straight = _run(SpendWatch(new), plan)
    assert straight, "the runaway alerts under the new config"
    cut = 24 * 18
    watch = SpendWatch(_config())
    before = _run(watch, plan[:cut])
    assert watch.reconfigure(new) == []
    after = _run(watch, plan, start=cut)
    assert before + after == straight


def test_restore_under_a_changed_config_maps_like_a_reload() -> None:
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 14, 3, 25.0)
    new = _config(min_usd=8.0)
    straight = _run(SpendWatch(new), plan)
    cut = 24 * 18
    old = SpendWatch(_config())
    before = _run(old, plan[:cut])
    restarted = SpendWatch(new)
    assert restarted.restore(old.snapshot()) == []
    assert before + _run(restarted, plan, start=cut) == straight


def test_reshaping_and_new_detectors_are_reported() -> None:
    watch = SpendWatch(_config())
    _run(watch, _history(48))
    notes = watch.reconfigure(
        Config(
            detectors=[
                DetectorConfig(kind="baseline", params={"season": 24}),
                DetectorConfig(kind="wow"),
            ]
        )
    )
    assert notes == [
        "detectors[0] (baseline on cost_usd): a parameter that shapes what it learned changed; "
        "its baselines start afresh",
        "detectors[1] (wow on cost_usd): new; learns from now on",
    ]


def test_a_budget_keeps_its_spend_and_fired_thresholds_across_an_amount_change() -> None:
    plan = _history(24 * 3)
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=3000, period="week")
    watch = SpendWatch(Config(detectors=[], budgets=[budget]))
    fired = [a for a in _run(watch, plan) if a.kind == "budget"]
    assert [a.threshold for a in fired] == [0.5], [a.reason for a in fired]
    spent = fired[0].observed_usd
    raised = budget.model_copy(update={"amount_usd": 2500.0, "alert_at": [0.5, 0.8, 1.0]})
    assert watch.reconfigure(Config(detectors=[], budgets=[raised])) == []
    more = _run(watch, plan + _history(24 * 4, seed=9)[24 * 3 :], start=24 * 3)
    crossed = [a for a in more if a.kind == "budget"]
    # 50% already fired this week is not repeated; 80% of the new amount is counted from
    # the spend of the first three days plus the new ones.
    assert [a.threshold for a in crossed][:1] == [0.8], [a.reason for a in crossed]
    assert crossed[0].observed_usd > spent
    assert parse_ts(crossed[0].detected_at) >= T0


def test_count_layout_change_restarts_baseline_and_within_retunes() -> None:
    """Slot counts take 4 bits while their cap fits; a retune past that cannot keep them."""
    d = make_detector("baseline")
    run(d, spend(3, seed=2))
    kept = retune(d, min_slot_n=3, season_alpha=0.15)
    assert kept is not None and kept._counts == d._counts and kept._profile == d._profile
    assert retune(d, min_slot_n=20) is None
    assert retune(d, season_alpha=0.1) is None


def test_a_raised_budget_alerts_and_stops_at_its_new_amount() -> None:
    """Raised mid-period, a budget's thresholds and hard stop fire at the new amount's levels.
    They had fired at the old one and stayed off for the rest of the period: spend went
    past the new amount's 100 % and 120 % with no alert and no pause. The raise itself
    sends nothing (50 % and 80 % of the new amount are behind the spend already)."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]  # team search: $10 an hour
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=100, period="day")
    config = Config(detectors=[], budgets=[budget], keys=RULES)
    watch = SpendWatch(config)
    before = [(a.action, a.threshold) for a in _run(watch, plan[:13]) if a.kind == "budget"]
    assert before == [("alert", 0.5), ("alert", 0.8), ("alert", 1.0), ("pause", 1.2)]
    raised = budget.model_copy(update={"amount_usd": 150.0})
    notes = watch.reconfigure(config.model_copy(update={"budgets": [raised]}))
    # $130 spent, under the raised stop ($180): the keys the stop paused go on.
    assert notes == [
        "budget search: raised above the spend; resumes the 2 keys its hard stop paused"
    ]
    after = [a for a in _run(watch, plan[:20], start=13) if a.kind == "budget"]
    assert [(a.action, a.threshold) for a in after] == [
        ("resume", None),
        ("alert", 1.0),
        ("pause", 1.2),
    ]
    assert (
        after[0].targets == ["k-agent", "k-chat"] and "raised by a config reload" in after[0].reason
    )
    assert after[1].observed_usd >= 150.0 and after[2].observed_usd >= 180.0
    assert after[2].targets == ["k-agent", "k-chat"] and after[2].id == after[1].id
    # Lowered back: what the spend is past was sent already, nothing is sent twice; the
    # next day resumes the keys.
    assert watch.reconfigure(config) == []
    rest = [a for a in _run(watch, plan, start=20) if a.kind == "budget"]
    assert [(a.action, a.targets) for a in rest] == [("resume", ["k-agent", "k-chat"])]


def test_a_budget_moved_to_another_period_keeps_the_spend_it_holds() -> None:
    """A daily budget made weekly on the Monday afternoon: the week counts the $130 spent
    since Monday 00:00 and fires 50 % at once, for the new period. It counted from the
    reload (the next hour's $2.50), so spend before it never reached a threshold or the stop
    until the rest was spent again."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]  # team search: $10 an hour
    daily = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=200, period="day")
    watch = SpendWatch(Config(detectors=[], budgets=[daily], keys=RULES))
    before = [(a.threshold, a.id) for a in _run(watch, plan[:13]) if a.kind == "budget"]
    assert before == [(0.5, f"budget/search/{T0}")]
    weekly = daily.model_copy(update={"period": "week"})
    notes = watch.reconfigure(Config(detectors=[], budgets=[weekly], keys=RULES))
    after = [a for a in _run(watch, plan[:14], start=13) if a.kind == "budget"]
    assert [(a.threshold, a.id) for a in after] == [(0.5, f"budget/search/{T0}")]
    assert after[0].observed_usd >= 130.0
    assert parse_ts(after[0].detected_at) < T0 + 13.5 * HOUR
    assert notes == [
        "budget search: period or time zone changed; its thresholds start afresh for the new "
        "period, counting the spend held since 2026-09-28T00:00:00.000000Z; the rest of the "
        "period is read from the report store once the store holds it"
    ]
    assert watch.budgets.unseeded == ["search"]
    assert watch.snapshot()  # the re-fed state is plain data as ever


@pytest.mark.parametrize("change", ["removed", "rescoped"])
def test_a_budget_removed_or_rescoped_in_its_stop_resumes_what_the_stop_paused(
    change: str,
) -> None:
    """The operator lifts a budget in hard stop by deleting it (or scopes it elsewhere): the
    keys its stop paused were forgotten with it and stayed paused for good, no resume ever
    coming. They are resumed at the next check after the reload, as the next period would."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]  # team search: $10 an hour
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=100, period="day")
    config = Config(detectors=[], budgets=[budget], keys=RULES)
    watch = SpendWatch(config)
    stops = [a for a in _run(watch, plan[:13]) if a.action == "pause"]
    assert [a.targets for a in stops] == [["k-agent", "k-chat"]]
    after = [] if change == "removed" else [budget.model_copy(update={"scope": {"team": "x"}})]
    notes = watch.reconfigure(config.model_copy(update={"budgets": after}))
    assert any("resumes the 2 keys its hard stop paused" in n for n in notes), notes
    resumed = [a for a in _run(watch, plan[:15], start=13) if a.action == "resume"]
    assert [(a.targets, a.budget) for a in resumed] == [(["k-agent", "k-chat"], "search")]
    assert resumed[0].id.startswith("budget/search/lifted/")


def test_a_lifted_stop_waiting_for_its_check_survives_a_snapshot() -> None:
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=100, period="day")
    config = Config(detectors=[], budgets=[budget], keys=RULES)
    watch = SpendWatch(config)
    _run(watch, plan[:13])
    watch.reconfigure(config.model_copy(update={"budgets": []}))
    again = SpendWatch(watch.config)
    again.restore(watch.snapshot())
    resumed = [a for a in _run(again, plan[:15], start=13) if a.action == "resume"]
    assert [a.targets for a in resumed] == [["k-agent", "k-chat"]]


def test_a_budget_added_by_a_reload_takes_its_period_so_far_from_stored_rows() -> None:
    """A budget added at 13:00 to a team $130 into its day: the reload lists it as waiting,
    across a snapshot, and the store's hourly parts (the topic's own) give it the morning.
    A part read since the reload is newer than the store's and kept."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]  # team search: $10 an hour
    budget = BudgetConfig(
        name="search", scope={"team": "search"}, amount_usd=200, period="day", hard_stop_at=None
    )
    config = Config(detectors=[], budgets=[budget], keys=RULES)
    always = SpendWatch(config)
    _run(always, plan[:13])
    stored = [
        (hour, part, epoch, cost)
        for hour, parts in always.budgets.held[0].hours.items()
        for (part, epoch), cost in parts.items()
    ]
    watch = SpendWatch(config.model_copy(update={"budgets": []}))
    _run(watch, plan[:13])
    assert watch.reconfigure(config) == [f"budget search: new; {SEEDED_LATER}"]
    assert [a for a in _run(watch, plan[:14], start=13) if a.kind == "budget"] == []
    again = SpendWatch(watch.config)
    again.restore(watch.snapshot())
    assert again.budgets.unseeded == ["search"]
    hour_13 = T0 + 13 * HOUR
    stale = [(hour_13, part, epoch, 1) for hour, part, epoch, _ in stored if hour == T0]
    assert again.budgets.seed("search", stored + stale, again.now) == 140.0
    assert again.budgets.seed("search", stored, again.now) is None  # once
    after = [a for a in _run(again, plan[:15], start=14) if a.kind == "budget"]
    assert [(a.threshold, a.observed_usd) for a in after] == [(0.5, 142.5)]  # at 14:15
    assert again.snapshot()


def test_a_stop_that_paused_no_key_sends_no_resume_at_the_next_period() -> None:
    """A hard stop on a team whose keys the keys config lets none be paused paused nothing,
    and each new period sent "resuming what its hard stop paused" with no key: a notice a
    day in the digest about nothing."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(48)]  # team search: $10 an hour
    budget = BudgetConfig(name="search", scope={"team": "search"}, amount_usd=100, period="day")
    watch = SpendWatch(Config(detectors=[], budgets=[budget]))  # no key rules: none pausable
    sent = [(a.action, a.threshold) for a in _run(watch, plan) if a.kind == "budget"]
    assert sent.count(("alert", 1.2)) == 2, sent  # the stop, on each of the two days
    assert not [s for s in sent if s[0] == "resume"], sent


def test_a_budget_added_on_a_scope_another_one_reads_shares_its_parts() -> None:
    """A month budget added at 13:00 beside a team's day budget reads the parts the day
    budget held (one store per scope); seeded from the store, it counts the team's spend as
    a book that had it all along does, and the day budget goes on unchanged."""
    plan = [{"k-agent": 8.0, "k-chat": 2.0} for _ in range(24)]  # team search: $10 an hour
    day = BudgetConfig(
        name="day", scope={"team": "search"}, amount_usd=200, period="day", hard_stop_at=None
    )
    month = BudgetConfig(name="month", scope={"team": "search"}, amount_usd=5000)
    both = Config(detectors=[], budgets=[day, month], keys=RULES)
    always = SpendWatch(both)
    ran = _run(always, plan[:13])
    watch = SpendWatch(both.model_copy(update={"budgets": [day]}))
    assert _run(watch, plan[:13]) == [a for a in ran if a.budget == "day"]
    assert watch.reconfigure(both) == [f"budget month: new; {SEEDED_LATER}"]
    book = watch.budgets
    assert book.held[0] is book.held[1] and book.held[0].hours == always.budgets.held[0].hours
    stored = [
        (hour, part, epoch, cost)
        for hour, parts in always.budgets.held[1].hours.items()
        for (part, epoch), cost in parts.items()
    ]
    assert book.seed("month", stored, watch.now) == 130.0
    assert book.trackers[1].spent(watch.now) == always.budgets.trackers[1].spent(always.now)
    later = _run(watch, plan[:20], start=13)
    assert later == _run(always, plan[:20], start=13)
    assert [(a.budget, a.threshold) for a in later if a.kind == "budget"] == [
        ("day", 0.8),
        ("day", 1.0),
    ]
