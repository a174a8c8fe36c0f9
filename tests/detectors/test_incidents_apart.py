"""Two runaways that only share parent scopes (the global total, a model) are two incidents."""

from __future__ import annotations

from detectors import SpendWatch
from schemas import Config
from tests.detectors.test_watch import _history, _run, _runaway


def test_overlapping_runaways_in_different_teams_are_two_incidents() -> None:
    plan = _history(24 * 21)
    _runaway(plan, "k-agent", 24 * 18 + 13, 2, 25.0)  # search's batch key
    # Payments' critical key, an hour later and bigger: its excess explains the global
    # total's, which the first incident had also explained.
    _runaway(plan, "k-pay", 24 * 18 + 14, 3, 80.0)
    alerts = _run(SpendWatch(Config()), plan)
    firsts = {a.id: a for a in alerts if a.seq == 0}
    scopes = sorted(a.scope.get("api_key", "") for a in firsts.values())
    assert scopes == ["k-agent", "k-pay"], [(a.id, a.seq, a.scope, a.also) for a in alerts]
    pay = next(a for a in firsts.values() if a.scope == {"api_key": "k-pay"})
    assert pay.action == "alert" and pay.targets == []
