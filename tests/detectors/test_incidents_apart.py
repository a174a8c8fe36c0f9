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


def _root(scope: tuple[tuple[str, str], ...], also: list, start: float, **kw: object) -> object:
    from spendbrake.detectors._incidents import Candidate

    return Candidate(
        scope=scope, kind=str(kw.get("kind", "anomaly")), detector="baseline",
        window_start=start, window_end=start + 3600.0, observed_usd=100.0, expected_usd=5.0,
        excess_usd=95.0, score=0.6, severity=str(kw.get("severity", "warning")), reason="",
        known={"api_key": "k-agent", "team": "search", "feature": "agent"}, also=list(also),
    )  # fmt: skip


MODEL = (("model", "claude-opus-4-1"),)
KEY = (("api_key", "k-agent"),)


def test_an_incident_first_seen_at_a_model_is_restated_at_the_key() -> None:
    """The model's sum crossed first; when its key crosses minutes later, the incident gets
    a follow-up naming the key (the one thing to act on), not a second incident."""
    from spendbrake.detectors._incidents import IncidentBook

    book = IncidentBook()
    t = 1_790_000_000.0
    opened = book.admit(_root(MODEL, [], t), t + 600)
    assert opened is not None and opened[1]
    again = book.admit(_root(KEY, [MODEL], t), t + 900)
    assert again is not None
    incident, new = again
    assert not new and incident.seq == 1 and incident.id == opened[0].id
    assert book.admit(_root(KEY, [MODEL], t), t + 1200) is None  # said once


def test_a_key_a_day_later_is_not_part_of_a_models_open_incident() -> None:
    """Whether a key uses a model is unknown (the key directory does not hold models): a
    key's runaway a day after a model's incident opened is its own incident, even if that
    incident is still open (the model kept firing)."""
    from spendbrake.detectors._incidents import IncidentBook

    book = IncidentBook()
    t = 1_790_000_000.0
    first = book.admit(_root(MODEL, [], t), t + 600)
    for h in range(1, 25):  # the model keeps firing: its incident stays open
        book.admit(_root(MODEL, [], t + h * 3600.0), t + h * 3600.0 + 600)
    later = book.admit(_root(KEY, [MODEL], t + 24 * 3600.0), t + 24 * 3600.0 + 900)
    assert first is not None and later is not None
    assert later[1] and later[0].id != first[0].id


def test_a_page_never_continues_a_digest_item() -> None:
    """A trend (severity info) is for the digest and never posted: a page on the same scope
    opens its own incident, so Slack gets a new message, not a reply to nothing."""
    from spendbrake.detectors._incidents import IncidentBook

    book = IncidentBook()
    t = 1_790_000_000.0
    trend = book.admit(_root(KEY, [], t, kind="wow", severity="info"), t + 600)
    page = book.admit(_root(KEY, [], t, kind="cost_per_call"), t + 900)
    assert trend is not None and page is not None
    assert page[1] and page[0].id != trend[0].id


def _loop(key: str, team: str, excess: float, kind: str = "anomaly") -> object:
    from spendbrake.detectors._incidents import Candidate

    return Candidate(
        scope=(("api_key", key),), kind=kind, detector="baseline", window_start=0.0,
        window_end=3600.0, observed_usd=excess + 5.0, expected_usd=5.0, excess_usd=excess,
        score=0.6, severity="warning", reason="", known={"api_key": key, "team": team},
    )  # fmt: skip


def test_narrower_anomalies_that_together_explain_a_sum_page_it_no_more() -> None:
    """Seen in the evaluation: batch keys looping on one Saturday, each a small part of the
    global excess, and the global sum paged as an incident of its own (and paused every
    batch key under it, until the policy step stopped that)."""
    from spendbrake.detectors._incidents import group

    glob, team = _loop("", "", 100.0), _loop("", "", 60.0)
    glob.scope, glob.known = (), {}  # type: ignore[attr-defined]
    team.scope, team.known = (("team", "batch"),), {"team": "batch"}  # type: ignore[attr-defined]
    keys = [_loop(f"k{i}", "batch", 20.0) for i in range(3)]  # 60 of the global's 100
    roots = group([glob, team, *keys])
    assert sorted(r.scope for r in roots) == [k.scope for k in keys]  # type: ignore[attr-defined]
    assert all(r.also == [(("team", "batch"),), ()] for r in roots)
    # Together under half the excess: the sum is news of its own.
    glob.excess_usd = 200.0  # type: ignore[attr-defined]
    roots = group([glob, *(_loop(f"k{i}", "batch", 20.0) for i in range(3))])
    assert [r.scope for r in roots][-1] == ()
    # One key alone is the ordinary case (it explains the sum or it does not), and a trend
    # never explains a runaway.
    roots = group([glob, *(_loop(f"k{i}", "batch", 60.0, kind="wow") for i in range(3))])
    assert () in [r.scope for r in roots]


def test_keys_of_unknown_membership_do_not_explain_a_model_together() -> None:
    # Whether a key calls this model is unknown (the key directory does not say): two key
    # runaways at the same time must not silence the model's own surge.
    from spendbrake.detectors._incidents import group

    model = _loop("", "", 100.0)
    model.scope, model.known = (("model", "gpt-5"),), {}  # type: ignore[attr-defined]
    roots = group([model, _loop("k0", "a", 40.0), _loop("k1", "b", 40.0)])
    assert (("model", "gpt-5"),) in [r.scope for r in roots]


def test_an_incident_still_anomalous_past_a_confirmation_age_is_stated_again_once() -> None:
    """``confirm_after`` (the pause policies' ``confirm_s``): a follow-up when an anomaly
    comes again at or past that age, for the policy step to pause; none for a burst whose
    anomalies stop before it."""
    from spendbrake.detectors._incidents import IncidentBook

    book = IncidentBook(confirm_after=(900.0,))
    admitted = book.admit(_root(KEY, [], 0.0), 600.0)  # type: ignore[arg-type]
    assert admitted is not None and admitted[1]
    book.hold(admitted[0].id)  # the policy step held a pause of its key
    assert book.admit(_root(KEY, [], 0.0), 1200.0) is None  # type: ignore[arg-type]
    lasted = book.admit(_root(KEY, [], 0.0), 1500.0)  # type: ignore[arg-type]
    assert lasted is not None and (lasted[0].seq, lasted[1]) == (1, False)
    assert book.admit(_root(KEY, [], 0.0), 1800.0) is None  # type: ignore[arg-type]
    ((alert, _),) = book.alerts([_root(KEY, [], 3600.0, severity="critical")], 3900.0, _no_keys)  # type: ignore[list-item]
    assert alert.opened_at == "1970-01-01T00:10:00.000000Z" and alert.seq == 2
    # Seed 4's burst: the early look at 02:55 alerts (the pause held), and the hour's close
    # ten minutes after 03:00 judges that same hour: its evidence ends at 03:00, five minutes
    # on, not fifteen: not lasted.
    hour = IncidentBook(confirm_after=(600.0,))
    peeked = hour.admit(_root(KEY, [], 0.0), 3300.0)  # type: ignore[arg-type]
    assert peeked is not None
    hour.hold(peeked[0].id)
    assert hour.admit(_root(KEY, [], 0.0), 3600.0 + 600.0) is None  # type: ignore[arg-type]
    burst = IncidentBook(confirm_after=(900.0,))
    opened = burst.admit(_root(KEY, [], 0.0), 600.0)  # type: ignore[arg-type]
    assert opened is not None
    burst.hold(opened[0].id)
    assert burst.admit(_root(KEY, [], 0.0), 900.0) is None  # type: ignore[arg-type]
    # An incident no pause is held for is not stated again: no extra thread reply.
    free = IncidentBook(confirm_after=(900.0,))
    assert free.admit(_root(KEY, [], 0.0), 600.0) is not None  # type: ignore[arg-type]
    assert free.admit(_root(KEY, [], 0.0), 1500.0) is None  # type: ignore[arg-type]
    # Past the age, only an anomaly at its most specific scope (the key, what a policy
    # pauses) states it again: its model's sum alone does not, nor use the age up.
    keyed = IncidentBook(confirm_after=(900.0,))
    first = keyed.admit(_root(KEY, [MODEL], 0.0), 600.0)  # type: ignore[arg-type]
    assert first is not None
    keyed.hold(first[0].id)
    assert keyed.admit(_root(MODEL, [], 0.0), 1500.0) is None  # type: ignore[arg-type]
    again = keyed.admit(_root(KEY, [MODEL], 0.0), 2100.0)  # type: ignore[arg-type]
    assert again is not None and (again[0].seq, again[0].confirm) == (1, 900.0)


def _no_keys(scope: object, since: float) -> list:
    return []


def test_a_parent_scope_found_by_several_detectors_is_listed_once() -> None:
    """The global total flagged by baseline and by wow, and under two keys together: Slack
    read "Also seen in: all spend; all spend; all spend"."""
    from spendbrake.detectors._incidents import group

    key = _loop("k0", "batch", 100.0)
    globs = [_loop("", "", 90.0), _loop("", "", 80.0), _loop("", "", 70.0)]
    for glob, detector in zip(globs, ("baseline", "wow", "shift"), strict=True):
        glob.scope, glob.known, glob.detector = (), {}, detector  # type: ignore[attr-defined]
    [root] = group([key, *globs])
    assert root.also == [()]  # type: ignore[attr-defined]
    # Two keys that explain the total only together: each names it once.
    keys = [_loop(f"k{i}", "batch", 40.0) for i in range(2)]
    roots = group([*keys, *globs])
    assert [r.also for r in roots] == [[()], [()]]  # type: ignore[attr-defined]
