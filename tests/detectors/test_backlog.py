"""A backlog closed in bounded steps (as the live stage does) alerts exactly as in one go."""

from __future__ import annotations

import math

import msgspec
import pytest

from spendbrake.detectors import SpendWatch
from spendbrake.schemas import NUSD, BudgetConfig, Config, RollupRecord, parse_ts
from tests.detectors.test_watch import T0, _history, _records, _runaway


def _backlog(watch: SpendWatch, max_hours: int | None) -> list[dict]:
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 14, 3, 25.0)
    for h, spend in enumerate(plan):
        watch.observe(_records(T0 + h * 3600, spend, 1.0))
    alerts = []
    steps = 0
    while True:
        alerts.extend(msgspec.to_builtins(a) for a, _ in watch.advance(max_hours=max_hours))
        steps += 1
        if not watch.behind:
            return [*alerts, {"steps": steps}]


def test_bounded_steps_give_the_same_alerts() -> None:
    config = Config(
        budgets=[BudgetConfig(name="s", scope={"team": "search"}, amount_usd=3000, period="week")]
    )
    at_once = _backlog(SpendWatch(config), None)
    stepped = _backlog(SpendWatch(config), 24)
    assert at_once[-1] == {"steps": 1} and stepped[-1]["steps"] >= 21

    def order(alerts: list[dict]) -> list[dict]:
        return sorted(alerts, key=lambda a: (a["detected_at"], a["id"], a["seq"]))

    assert [a for a in at_once if "id" in a] and order(at_once[:-1]) == order(stepped[:-1])
    # Budgets are judged hour by hour through the backlog: a threshold is dated when it
    # crossed, not at the watermark the backlog was read up to.
    budget = [a for a in stepped if a.get("detector") == "budget"]
    assert budget and len({a["detected_at"] for a in budget}) > 1, budget


def test_the_event_time_judged_is_the_closed_hours_while_a_backlog_is_closed() -> None:
    """``spendbrake_detect_event_time_seconds`` read the watermark: a stage closing a
    backlog a day at a time said it was at the backlog's end, up to a day ahead of what it
    had judged (an operator's "detection is behind" alert stayed quiet). It says the hours
    closed until it is caught up, then the watermark."""
    watch = SpendWatch(Config())
    plan = _history(24 * 21)
    for h, spend in enumerate(plan):
        watch.observe(_records(T0 + h * 3600, spend, 1.0))
    judged = []
    while True:
        watch.advance(max_hours=24)
        judged.append(watch.judged_until)
        if not watch.behind:
            break
    assert all(j < watch.now for j in judged[:-1]), (judged, watch.now)
    assert judged == sorted(judged) and judged[-1] == watch.now


def test_a_backlog_dates_an_anomaly_when_its_hour_closed() -> None:
    # A detect stage that was down reads three weeks at once; the runaway (hours 14-16 of
    # day 18) is still dated when a stage that kept up would have judged it: at its
    # hour's close plus the lateness, not at the watermark the backlog ends at.
    alerts = _backlog(SpendWatch(Config()), 24)[:-1]
    runaway = [a for a in alerts if a["scope"].get("api_key") == "k-agent"]
    assert runaway, alerts
    first = min(parse_ts(a["detected_at"]) for a in runaway)
    start = T0 + (24 * 18 + 14) * 3600
    assert start + 3600 + 600 <= first <= start + 3 * 3600 + 600


def test_a_backlog_names_the_spend_a_budget_had_by_the_time_it_dates() -> None:
    """Judged at an hour's end, a backlog counted the next hour too, already read whole: a
    threshold was dated an hour before the spend that crossed it, with that spend ("$333 of
    $330 by 19:00" where $326 had been spent by 19:00). The spend an alert names is the
    spend of the hours before its ``detected_at``."""
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 14, 3, 25.0)  # as _backlog plays it
    search = [sum(v for k, v in hour.items() if k != "k-pay") for hour in plan]
    daily = sum(search) / 21
    budget = BudgetConfig(name="d", scope={"team": "search"}, amount_usd=daily, period="day")
    alerts = _backlog(SpendWatch(Config(budgets=[budget])), 24)[:-1]
    thresholds = [a for a in alerts if a["kind"] == "budget" and a["action"] == "alert"]
    assert len(thresholds) > 21, thresholds
    # A period's last hour is judged in it: not as a late correction after its end.
    assert not [a["reason"] for a in alerts if "late events" in a["reason"]]
    for a in thresholds:
        at = parse_ts(a["detected_at"])
        day = int(at // 86400) * 86400
        by_then = sum(search[(day - T0) // 3600 : math.ceil((at - T0) / 3600)])
        assert a["observed_usd"] == pytest.approx(by_then, abs=1e-6), a["reason"]


def _burn_alerts(backlog: bool) -> list[dict]:
    """A day of a team's spend at an even pace of its daily budget, and one hour at
    minutes 10-40 spending 90 % of the budget: a fast burn (over 14.4x the pace over the
    hour and over 5 minutes) that stopped twenty minutes before the hour's end. Read as it
    happened (every five minutes) or as a backlog (all of it, then the hours closed)."""
    budget = BudgetConfig(name="d", scope={"team": "search"}, amount_usd=2400.0, period="day")
    watch = SpendWatch(Config(budgets=[budget]))
    burn_hour = 14
    minutes = []
    for m in range(24 * 60 + 70):
        usd = 100.0 / 60  # the even pace: $100 an hour
        if burn_hour * 60 + 10 <= m < burn_hour * 60 + 40:
            usd += 72.0  # $2,160 in 30 minutes
        minutes.append(usd)

    def records(upto: int) -> list[RollupRecord]:
        """Absolute totals of every hour and minute before minute ``upto``."""
        out = []
        for h in range(math.ceil(upto / 60)):
            usd = sum(minutes[h * 60 : min(upto, h * 60 + 60)])
            out.append(_team_record(3600, T0 + h * 3600, usd))
        out.extend(_team_record(60, T0 + m * 60, minutes[m]) for m in range(upto))
        return out

    alerts = []
    if backlog:
        watch.observe(records(len(minutes)))
        while True:
            alerts.extend(msgspec.to_builtins(a) for a, _ in watch.advance(max_hours=24))
            if not watch.behind:
                break
    else:
        for upto in range(5, len(minutes) + 1, 5):
            watch.observe(records(upto))
            alerts.extend(msgspec.to_builtins(a) for a, _ in watch.advance())
    return [a for a in alerts if a["kind"] == "burn_rate"]


def _team_record(window_s: int, start: float, usd: float) -> RollupRecord:
    return RollupRecord(("team",), ("search",), window_s, int(start), 0, 0, (round(usd * NUSD), 1))


def test_a_backlog_sees_a_burn_that_stopped_before_its_hour_closed() -> None:
    """A stage catching up judged budgets once per closed hour: a fast burn that ran 30
    minutes and stopped before the hour's end was over its 1-hour window but not its
    5-minute one by then, and never alerted. Burn rates are now looked at every 5 minutes
    of a closed hour: the backlog alerts it as the live stage did, dated the same."""
    live = _burn_alerts(backlog=False)
    caught = _burn_alerts(backlog=True)
    assert [a["severity"] for a in live] == ["critical"], live
    assert [(a["detected_at"], a["observed_usd"]) for a in caught] == [
        (a["detected_at"], a["observed_usd"]) for a in live
    ]
    at = parse_ts(caught[0]["detected_at"])
    assert T0 + 14 * 3600 + 10 * 60 < at <= T0 + 14 * 3600 + 45 * 60


def test_a_fresh_watch_reading_a_backlog_across_a_period_end_judges_the_earlier_period() -> None:
    """A detect stage with no state read events from 23:30 to 01:00 in one go: day one's
    $150 on a $100 daily budget sent nothing, as the hours it closed were the last ones
    (not a backlog any more) and the budget was looked at only at the watermark, in day
    two. Its 50 %, 100 % and hard stop now fire, dated at the hour that crossed them."""
    from spendbrake.actions import decide
    from tests.detectors.test_partitions_apart import _team_minutes
    from tests.detectors.test_watch import RULES

    day = T0 + 7 * 24 * 3600
    budget = BudgetConfig(
        name="d", scope={"team": "search"}, amount_usd=100.0, period="day",
        alert_at=[0.5, 1.0], hard_stop_at=1.2,
    )  # fmt: skip
    watch = SpendWatch(Config(keys=RULES, budgets=[budget]), partitions=1)
    minutes = {m: 5.0 for m in range(23 * 60 + 30, 24 * 60)}  # $150 in day one's last 30 min
    minutes.update({m: 1.0 for m in range(24 * 60, 25 * 60)})  # $60 in day two's first hour
    watch.observe(_team_minutes(day, minutes, partition=0))
    watch.set_mark(0, day + 25 * 3600)
    alerts = [a for a in decide(watch, watch.config) if a.kind == "budget"]
    first = [(a.threshold, a.detected_at[11:16]) for a in alerts if a.id.endswith(str(day))]
    assert first == [(0.5, "23:59"), (1.0, "23:59"), (1.2, "23:59")]
    assert "hard stop at 120%" in alerts[2].reason
