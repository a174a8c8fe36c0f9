"""A backlog closed in bounded steps (as the live stage does) alerts exactly as in one go."""

from __future__ import annotations

import math

import msgspec
import pytest

from spendbrake.detectors import SpendWatch
from spendbrake.schemas import BudgetConfig, Config, parse_ts
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
