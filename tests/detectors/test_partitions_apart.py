"""Early looks while input partitions are read unevenly (a backlog, a restart, a slow worker).

The watermark is the slowest partition's mark, but an open hour's totals hold what every
partition has read of it. A worker restarted on a backlog read its partitions hours apart,
and the early look judged three partitions' whole hour as the slowest one's first minutes:
every busy key "10x its usual calls" (seen on a 9M-event catch-up, 2026-12-07).
"""

from __future__ import annotations

import msgspec
import pytest

from spendbrake.actions import decide
from spendbrake.detectors import SpendWatch
from spendbrake.detectors._clock import EventClock
from spendbrake.schemas import Alert, BudgetConfig, Config, RollupRecord, format_ts
from tests.detectors.test_watch import HOUR, RULES, T0, _history, _records, _runaway

PARTS = 4
#: Monday 14:00 of the fourth week: a busy hour with three weeks learned before it.
H = 24 * 21 + 14


def _parts(hour: int, spend: dict[str, float], fractions: list[float]) -> list[RollupRecord]:
    """Each partition holds a quarter of every series' calls (events are keyed by event id),
    ``fractions[p]`` of the hour of it read so far."""
    quarter = {key: usd / PARTS for key, usd in spend.items()}
    return [
        msgspec.structs.replace(record, partition=p)
        for p, fraction in enumerate(fractions)
        for record in _records(hour, quarter, fraction)
        if record.window_s == HOUR
    ]


def _read(watch: SpendWatch, hour: int, spend: dict[str, float], marks: list[float]) -> list[Alert]:
    """Partition p has read ``hour`` up to minute ``marks[p]``; the alerts that raises."""
    watch.observe(_parts(hour, spend, [min(m, 60.0) / 60 for m in marks]))
    for p, minute in enumerate(marks):
        watch.set_mark(p, hour + minute * 60)
    return list(decide(watch, watch.config))


def _learned(plan: list[dict[str, float]]) -> SpendWatch:
    watch = SpendWatch(Config(keys=RULES), partitions=PARTS)
    for h in range(H):
        for minute in (20.0, 40.0, 60.0):
            assert _read(watch, T0 + h * HOUR, plan[h], [minute] * PARTS) == []
    return watch


def test_partitions_read_hours_apart_page_nothing_then_the_hour_is_judged_at_its_close() -> None:
    quiet, loop = _history(24 * 22), _history(24 * 22)
    _runaway(loop, "k-agent", H, 1, 25.0)
    for plan in (quiet, loop):
        watch = _learned(plan)
        # Three partitions have read 55 minutes of the hour, one only its first 5.
        assert _read(watch, T0 + H * HOUR, plan[H], [55.0, 55.0, 55.0, 5.0]) == []
        # The slow one catches up; the hour closes once the watermark passes its lateness.
        alerts = _read(watch, T0 + H * HOUR, plan[H], [60.0] * PARTS)
        for minute in (10.0, 11.0):
            alerts += _read(watch, T0 + (H + 1) * HOUR, plan[H + 1], [minute] * PARTS)
        keys = {a.scope.get("api_key") for a in alerts if a.kind == "anomaly"}
        assert keys == (set() if plan is quiet else {"k-agent"}), alerts


def test_partitions_read_together_still_look_minutes_into_the_hour() -> None:
    plan = _history(24 * 22)
    _runaway(plan, "k-agent", H, 1, 25.0)
    watch = _learned(plan)
    alerts = _read(watch, T0 + H * HOUR, plan[H], [5.0, 5.0, 5.5, 5.0])
    assert {a.scope.get("api_key") for a in alerts if a.kind == "anomaly"} == {"k-agent"}


def test_an_open_hour_is_seen_as_far_as_each_partition_has_read_it() -> None:
    """Minutes apart (a slow checkpoint), the share counts every partition's progress: the
    slowest mark alone took 9 minutes of calls from three partitions as 5 minutes' worth."""
    clock = EventClock(lateness_s=600, peek_s=300, partitions=4)
    hour = T0 + H * HOUR
    for p, minute in enumerate([9, 9, 9, 5]):
        clock.mark(p, hour + minute * 60)
    clock.advance()
    assert clock.now == hour + 300 and not clock.apart
    assert clock.seen(hour) == (3 * 9 + 5) / 4 / 60
    clock.mark(0, hour + 11 * 60)  # six minutes ahead of the slowest: more than a look
    assert clock.apart
    clock.idle.add(3)  # an idle partition holds nothing back, and has nothing to read
    assert not clock.apart and clock.seen(hour) == (11 + 9 + 9) / 3 / 60


def test_budgets_wait_while_partitions_are_apart_and_are_judged_as_hours_close() -> None:
    """Apart, the open hour held the faster partitions' spend past the watermark, and a
    budget's 100 % fired "by 14:05" on spend three partitions had read up to 14:55. Budgets
    now wait with the early looks and are looked at as each hour closes, on its spend."""
    plan = _history(24 * 22)
    search = [sum(v for k, v in hour.items() if k != "k-pay") for hour in plan]
    day = H - 14
    amount = sum(search[day:H]) + 0.4 * search[H]  # crossed 40 % into hour H
    budget = BudgetConfig(
        name="d", scope={"team": "search"}, amount_usd=amount, period="day", alert_at=[1.0]
    )
    watch = SpendWatch(Config(keys=RULES, budgets=[budget]), partitions=PARTS)
    for h in range(H):
        for minute in (20.0, 40.0, 60.0):
            _read(watch, T0 + h * HOUR, plan[h], [minute] * PARTS)
    apart = _read(watch, T0 + H * HOUR, plan[H], [55.0, 55.0, 55.0, 5.0])
    assert [a.reason for a in apart if a.kind == "budget"] == []
    alerts = _read(watch, T0 + H * HOUR, plan[H], [60.0] * PARTS)
    for minute in (10.0, 11.0):
        alerts += _read(watch, T0 + (H + 1) * HOUR, plan[H + 1], [minute] * PARTS)
    [crossed] = [a for a in alerts if a.kind == "budget"]
    assert crossed.observed_usd == pytest.approx(sum(search[day : H + 1]), abs=1e-5)


def _team_minutes(day: int, minutes: dict[int, float], partition: int) -> list[RollupRecord]:
    """Team search's minute windows of ``day`` (minute index -> dollars) and the hours that
    sum them, all read from input ``partition``."""
    hours: dict[int, float] = {}
    out = []
    for m, usd in minutes.items():
        start = day + m * 60
        hours[start // HOUR * HOUR] = hours.get(start // HOUR * HOUR, 0.0) + usd
        out.append(
            RollupRecord(("team",), ("search",), 60, start, partition, 0, (round(usd * 1e9), 1))
        )
    out += [
        RollupRecord(("team",), ("search",), HOUR, h, partition, 0, (round(usd * 1e9), 1))
        for h, usd in hours.items()
    ]
    return out


def test_budget_spend_read_before_its_mark_is_dated_when_it_was_spent() -> None:
    """After a quiet gap every partition is idle and the watermark stands at the last call
    before it. New spend read before its partition's mark was counted but dated at that old
    watermark: "spent $60 of its $100 daily budget (60%) by 23:03" for calls at 23:17."""
    day = T0 + 7 * 24 * HOUR
    budget = BudgetConfig(
        name="d", scope={"team": "search"}, amount_usd=100.0, period="day", alert_at=[0.5]
    )
    watch = SpendWatch(Config(keys=RULES, budgets=[budget]), partitions=2)
    watch.observe(_team_minutes(day, {23 * 60 + 2: 10.0}, partition=0))
    watch.set_mark(0, day + (23 * 60 + 3) * 60)
    watch.set_idle(1)
    assert list(decide(watch, watch.config)) == []
    watch.set_idle(0)  # the quiet gap: every partition idle
    watch.observe(_team_minutes(day, {23 * 60 + 2: 10.0, 23 * 60 + 17: 50.0}, partition=0))
    [alert] = [a for a in decide(watch, watch.config) if a.kind == "budget"]
    assert alert.reason.startswith("d spent $60.00 of its $100 daily budget (60%) by 23:17")
    assert alert.detected_at.startswith(format_ts(day + (23 * 60 + 17) * 60)[:16])
