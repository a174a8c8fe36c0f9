"""Two runaways that only share parent scopes (the global total, a model) are two incidents."""

from __future__ import annotations

from spendbrake.detectors import SpendWatch
from spendbrake.schemas import Config

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


def test_parent_scopes_are_listed_in_one_order_whatever_order_they_were_found_in() -> None:
    """A key's runaway seen with the same excess at its feature and at its model: replay
    printed the two in ``also`` in the order of a hash-seeded set, so two runs differed."""
    from spendbrake.detectors._incidents import Candidate, group

    def candidate(scope: tuple[tuple[str, str], ...], excess: float) -> Candidate:
        return Candidate(
            scope=scope, kind="anomaly", detector="baseline", window_start=0.0,
            window_end=3600.0, observed_usd=excess + 1, expected_usd=1.0, excess_usd=excess,
            score=1.0, severity="warning", reason="",
            known={"team": "search", "feature": "agent"},
        )  # fmt: skip

    key = (("api_key", "k-agent"),)
    parents = [(("feature", "agent"),), (("model", "gpt-4.1"),), (("team", "search"),)]
    orders = [parents, parents[::-1], [parents[1], parents[0], parents[2]]]
    alsos = []
    for order in orders:
        roots = group([candidate(key, 50.0), *(candidate(p, 50.0) for p in order)])
        assert [r.scope for r in roots] == [key]
        alsos.append(roots[0].also)
    assert alsos[0] == alsos[1] == alsos[2] and sorted(alsos[0]) == sorted(parents)
