"""``BudgetTracker`` on synthetic spend: thresholds once, periods, projection, burn, restarts."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from spendbrake.detectors import BudgetTracker, BudgetVerdict
from spendbrake.detectors._budget import BURN_WINDOWS_MIN as WINDOWS
from spendbrake.detectors._budgets import BudgetBook
from spendbrake.detectors._keys import KeyDirectory
from spendbrake.schemas import NUSD, BudgetConfig, KeysConfig, RollupColumns, RollupRecord
from tests.detectors.synth import shape

H = 3600.0
M = 60.0


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def local(tz: str, y: int, mo: int, d: int, h: int = 0) -> float:
    return datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).timestamp()


def feed_hours(
    b: BudgetTracker, start: float, end: float, cost: Callable[[float], float]
) -> list[BudgetVerdict]:
    """One ``set_hour`` per hour in [start, end), evaluated at each hour's end."""
    out: list[BudgetVerdict] = []
    t = start
    while t < end:
        b.set_hour(t, cost(t))
        out += b.evaluate(t + H)
        t += H
    return out


def kinds(vs: Iterable[BudgetVerdict], kind: str) -> list[BudgetVerdict]:
    return [v for v in vs if v.kind == kind]


def weekday_heavy(t: float) -> float:
    """$10/h on UTC weekdays, $1/h on weekends."""
    return 1.0 if datetime.fromtimestamp(t, UTC).weekday() >= 5 else 10.0


# Thresholds and the hard stop.


def test_thresholds_fire_once_each_in_order() -> None:
    b = BudgetTracker("search", 1000.0)
    t0 = utc(2026, 3, 1)
    vs = kinds(feed_hours(b, t0, t0 + 30 * 24 * H, lambda t: 10.0), "budget")
    assert [(v.action, v.threshold, v.severity) for v in vs] == [
        ("alert", 0.5, "info"),
        ("alert", 0.8, "warning"),
        ("alert", 1.0, "critical"),
        ("pause", 1.2, "critical"),
    ]
    # $10/h: 50 % after hour 50, 80 % after 80, ... each at the end of its crossing hour.
    assert [v.observed_usd for v in vs] == [500.0, 800.0, 1000.0, 1200.0]
    assert [v.expected_usd for v in vs] == [500.0, 800.0, 1000.0, 1200.0]
    assert all(v.period_start == t0 and v.window_end == utc(2026, 4, 1) for v in vs)
    assert "search spent $500 of its $1,000 monthly budget (50%) by Mar 3" in vs[0].reason


def test_several_thresholds_crossed_at_once_fire_ascending() -> None:
    b = BudgetTracker("search", 1000.0, hard_stop_at=None)
    t0 = utc(2026, 3, 2)
    b.set_hour(t0, 100.0)
    assert b.evaluate(t0 + H) == []
    b.set_hour(t0 + H, 950.0)
    vs = b.evaluate(t0 + 2 * H)
    assert [(v.threshold, v.severity) for v in vs] == [
        (0.5, "info"),
        (0.8, "warning"),
        (1.0, "critical"),
    ]
    assert all(v.observed_usd == 1050.0 for v in vs)
    b.set_hour(t0 + 2 * H, 5000.0)
    assert b.evaluate(t0 + 3 * H) == []  # no hard stop configured, nothing left to fire


def test_repeated_absolute_set_hour_never_double_counts() -> None:
    b = BudgetTracker("search", 1000.0)
    t0 = utc(2026, 3, 2, 9)
    fired = []
    for i, total in enumerate([100.0, 200.0, 300.0, 400.0, 450.0]):
        b.set_hour(t0, total)
        b.set_hour(t0, total)  # the same rollup twice
        fired += b.evaluate(t0 + 600.0 * (i + 1))
    assert b.spent(t0 + 3000.0) == 450.0  # a sum of the updates would be 1,450
    assert fired == []  # never 50 %
    b.set_hour(t0, 500.0)
    assert [v.threshold for v in b.evaluate(t0 + 3500.0)] == [0.5]


def test_hour_is_learned_once_on_its_final_value() -> None:
    b = BudgetTracker("search", 1000.0)
    t0 = utc(2026, 3, 2, 9)
    b.set_hour(t0, 5.0)
    b.evaluate(t0 + 1800.0)
    b.set_hour(t0, 8.0)
    b.evaluate(t0 + H + 300.0)  # ended, but inside the 10 min grace for late events
    b.set_hour(t0, 10.0)
    b.evaluate(t0 + H + 600.0)  # now final: learned as 10
    b.set_hour(t0, 999.0)  # a late correction counts as spend, not as a second lesson
    for k in range(1, 4):
        b.evaluate(t0 + H + 600.0 + k * 60.0)
    assert b.expected_hour(t0) == 10.0
    assert b.expected_hour(t0 + 168 * H) == 10.0  # same hour-of-week
    assert b.spent(t0 + 2 * H) == 999.0


def test_hard_stop_pauses_once_and_next_period_resumes_once() -> None:
    b = BudgetTracker("batch", 100.0, period="day")
    d0 = utc(2026, 3, 2)
    vs = feed_hours(b, d0, d0 + 3 * 24 * H, lambda t: 10.0 if t < d0 + 24 * H else 1.0)
    pauses = [v for v in vs if v.action == "pause"]
    resumes = [v for v in vs if v.action == "resume"]
    assert len(pauses) == 1 and pauses[0].threshold == 1.2 and pauses[0].period_start == d0
    assert pauses[0].severity == "critical" and pauses[0].kind == "budget"
    assert len(resumes) == 1
    r = resumes[0]
    assert (r.kind, r.severity, r.threshold, r.period_start) == ("budget", "info", None, d0 + 86400)
    assert (r.window_start, r.window_end) == (d0 + 86400, d0 + 2 * 86400)
    # Day 2 spends $24 (no threshold, no stop), so day 3 starts without a resume.
    assert all(v.period_start == d0 for v in kinds(vs, "budget") if v is not r)


def test_a_raised_hard_stop_survives_a_restart_and_pauses_once_at_its_new_level() -> None:
    d0 = utc(2026, 3, 2)
    b = BudgetTracker("batch", 100.0, period="day")
    assert [v.action for v in feed_hours(b, d0, d0 + 13 * H, lambda t: 10.0)][-1] == "pause"
    raised = BudgetTracker("batch", 150.0, period="day")
    raised.carry_over(b)
    assert raised.evaluate(d0 + 13 * H) == []  # $130: past 50 % and 80 % of $150 already
    restarted = BudgetTracker("batch", 150.0, period="day")
    restarted.restore(orjson.loads(orjson.dumps(raised.snapshot())))
    vs = feed_hours(restarted, d0 + 13 * H, d0 + 2 * 24 * H, lambda t: 10.0)
    got = [(v.action, v.threshold, v.period_start) for v in vs if v.kind == "budget"]
    assert got[:3] == [("alert", 1.0, d0), ("pause", 1.2, d0), ("resume", None, d0 + 24 * H)]
    assert b.snapshot()["fired"] == [0.5, 0.8, 1.0] and b.snapshot()["stop_usd"] == 120.0


def test_a_carried_over_budget_moves_its_own_running_totals() -> None:
    """A reload's tracker takes the running totals with the hours: its hours and minutes
    move its own, and the tracker before (kept for a reload that is put back) reads what
    it held; each reads what a tracker restored from its snapshot sums afresh."""
    d0 = utc(2026, 3, 2)
    b = BudgetTracker("batch", 1000.0, period="day")
    feed_hours(b, d0, d0 + 5 * H, lambda t: 10.0)
    burn(b, d0 + 5 * H, [(30, 40.0)], 1.0)
    raised = BudgetTracker("batch", 2000.0, period="day")
    raised.carry_over(b)
    raised.set_hour(d0 + 2 * H, 20.0)
    raised.set_minute(d0 + 5 * H + 10 * M, 0.0)
    for tracker, spent in ((b, 50.0), (raised, 60.0)):
        twin = BudgetTracker("batch", tracker.amount_usd, period="day")
        twin.restore(tracker.snapshot())
        now = d0 + 5 * H + 31 * M
        assert tracker.evaluate(now) == twin.evaluate(now)
        assert tracker.spent(now) == twin.spent(now) == spent
        assert tracker._burn_windows(math.floor(now / M)) == twin._burn_windows(math.floor(now / M))


def test_no_resume_without_auto_resume() -> None:
    b = BudgetTracker("batch", 100.0, period="day", auto_resume=False)
    d0 = utc(2026, 3, 2)
    vs = feed_hours(b, d0, d0 + 2 * 24 * H, lambda t: 10.0)
    assert [v.action for v in vs].count("pause") == 2  # once per period
    assert "resume" not in [v.action for v in vs]


def test_new_period_starts_fresh() -> None:
    b = BudgetTracker("search", 100.0, period="week", hard_stop_at=None)
    w0 = utc(2026, 3, 2)  # a Monday
    vs = feed_hours(b, w0, w0 + 14 * 24 * H, lambda t: 1.0)
    got = [(v.period_start, v.threshold) for v in kinds(vs, "budget")]
    assert got == [(w, f) for w in (w0, w0 + 7 * 86400) for f in (0.5, 0.8, 1.0)]


# Late corrections to the period that just ended.

LATE = "(crossed after the period ended, by late events)"


def day_at_97(**kwargs: object) -> tuple[BudgetTracker, float, list[BudgetVerdict]]:
    """A $1,000 daily budget fed Mar 2 2026 hour by hour to $970 (97 %), evaluated to 00:00."""
    b = BudgetTracker("search", 1000.0, period="day", **kwargs)  # type: ignore[arg-type]
    d0 = utc(2026, 3, 2)
    vs = feed_hours(b, d0, d0 + 24 * H, lambda t: 50.0 if t == d0 + 23 * H else 40.0)
    return b, d0, vs


def test_late_correction_fires_the_ended_period_once() -> None:
    b, d0, vs = day_at_97()
    assert [(v.threshold, v.period_start) for v in vs] == [(0.5, d0), (0.8, d0)]
    midnight = d0 + 24 * H
    assert b.evaluate(midnight + 30 * M) == []
    before = orjson.loads(orjson.dumps(b.snapshot()))
    b.set_hour(d0 + 23 * H, 90.0)  # events of 23:10 arrive at 00:40: Mar 2 is now $1,010
    (v,) = b.evaluate(midnight + 40 * M)
    assert (v.kind, v.action, v.severity, v.threshold) == ("budget", "alert", "critical", 1.0)
    assert (v.period_start, v.window_start, v.window_end) == (d0, d0, midnight)
    assert (v.observed_usd, v.expected_usd) == (1010.0, 1000.0)
    assert v.reason == f"search spent $1,010 of its $1,000 daily budget (101%) on Mar 2 {LATE}"
    assert b.spent(midnight + 40 * M) == 0.0  # the new day is not charged for it
    # The same value re-sent, or sent again after a restore, fires nothing more.
    b.set_hour(d0 + 23 * H, 90.0)
    assert b.evaluate(midnight + 50 * M) == []
    after = orjson.loads(orjson.dumps(b.snapshot()))
    c = BudgetTracker("search", 1000.0, period="day")
    c.restore(after)
    c.set_hour(d0 + 23 * H, 50.0)  # a replay re-sends the hour's earlier value first
    c.set_hour(d0 + 23 * H, 90.0)
    assert c.evaluate(midnight + 40 * M) == [] and c.evaluate(midnight + H) == []
    # Restored from before the correction, it fires exactly what the original fired.
    d = BudgetTracker("search", 1000.0, period="day")
    d.restore(before)
    d.set_hour(d0 + 23 * H, 90.0)
    assert d.evaluate(midnight + 40 * M) == [v]
    # The current period still works as before.
    b.set_hour(midnight + H, 600.0)
    (w,) = b.evaluate(midnight + 2 * H)
    assert (w.threshold, w.period_start, w.observed_usd) == (0.5, midnight, 600.0)
    assert LATE not in w.reason


def test_last_hour_seen_only_after_the_end_still_fires() -> None:
    b = BudgetTracker("search", 100.0, period="week", hard_stop_at=None)
    w0 = utc(2026, 3, 2)  # a Monday
    b.set_hour(w0 + 10 * H, 90.0)
    assert [v.threshold for v in b.evaluate(w0 + 11 * H)] == [0.5, 0.8]
    b.set_hour(w0 + 7 * 86400 - H, 15.0)  # Sunday 23:00, evaluated first at Monday 00:05
    (v,) = b.evaluate(w0 + 7 * 86400 + 5 * M)
    assert (v.threshold, v.period_start, v.observed_usd) == (1.0, w0, 105.0)
    assert f"(105%) in the week of Mar 2 {LATE}" in v.reason


@pytest.mark.parametrize(("grace_s", "last_ok"), [(6 * H, 6 * H - 1.0), (H, H - 1.0)])
def test_correction_after_the_grace_time_is_ignored(grace_s: float, last_ok: float) -> None:
    b, d0, _ = day_at_97() if grace_s == 6 * H else day_at_97(grace_s=grace_s)
    midnight = d0 + 24 * H
    assert b.grace_s == grace_s
    early = BudgetTracker("search", 1000.0, period="day", grace_s=grace_s)
    early.restore(b.snapshot())
    # Just inside the grace time a correction still counts...
    assert early.evaluate(midnight + last_ok) == []
    early.set_hour(d0 + 23 * H, 90.0)
    assert [v.threshold for v in early.evaluate(midnight + last_ok)] == [1.0]
    # ...once the watermark reaches the end + grace, the ended day is dropped.
    assert b.evaluate(midnight + grace_s) == []
    b.set_hour(d0 + 23 * H, 90.0)
    b.set_hour(d0 + 22 * H, 500.0)
    assert b.evaluate(midnight + grace_s + 10 * M) == []
    assert b.evaluate(midnight + 2 * grace_s) == []
    assert all(h * H >= midnight for h, _ in b.snapshot()["hours"])  # memory bounded


def test_hard_stop_crossed_after_the_end_alerts_instead_of_pausing() -> None:
    b, d0, _ = day_at_97()
    midnight = d0 + 24 * H
    b.set_hour(d0 + 23 * H, 300.0)  # $1,220: past the 120 % hard stop, but the day is over
    vs = b.evaluate(midnight + 40 * M)
    assert [(v.kind, v.action, v.severity, v.threshold) for v in vs] == [
        ("budget", "alert", "critical", 1.0),
        ("budget", "alert", "critical", 1.2),
    ]
    assert all(v.period_start == d0 and v.window_end == midnight for v in vs)
    assert vs[1].expected_usd == pytest.approx(1200.0) and vs[1].observed_usd == 1220.0
    assert "hard stop at 120% not applied, the period had ended" in vs[1].reason
    assert LATE in vs[1].reason
    b.set_hour(d0 + 23 * H, 400.0)
    assert b.evaluate(midnight + H) == []
    # Nothing was paused, so the next period starts without a resume.
    assert b.evaluate(midnight + 24 * H) == []


def test_a_pause_inside_the_period_is_not_repeated_late() -> None:
    b = BudgetTracker("batch", 100.0, period="day")
    d0 = utc(2026, 3, 2)
    b.set_hour(d0 + 20 * H, 130.0)
    assert [v.action for v in b.evaluate(d0 + 21 * H)] == ["alert"] * 3 + ["pause"]
    b.set_hour(d0 + 23 * H, 50.0)
    assert [v.action for v in b.evaluate(d0 + 24 * H + 30 * M)] == ["resume"]
    b.set_hour(d0 + 22 * H, 50.0)
    assert b.evaluate(d0 + 24 * H + 40 * M) == []


def test_version_1_snapshot_and_old_pickle_still_load() -> None:
    b, d0, _ = day_at_97()
    snap = b.snapshot()
    v1 = {k: v for k, v in snap.items() if not k.startswith("prev")} | {"v": 1}
    c = BudgetTracker("search", 1000.0, period="day")
    c.restore(v1)
    assert c.snapshot() == snap | {"prev": None, "prev_fired": [], "prev_stopped": False}
    state = {k: v for k, v in b.__dict__.items() if k not in ("grace_s", "_prev", "_prev_fired")}
    # Until 2026-12-07 a pickle held dollars as floats, and no running totals.
    state = {k: v for k, v in state.items() if k not in ("_sums", "_burn_sums", "_burn_end")}
    state["_hours"] = {h: v / 1e9 for h, v in b._hours.items()}
    state["_minutes"] = {m: v / 1e9 for m, v in b._minutes.items()}
    old = BudgetTracker.__new__(BudgetTracker)
    old.__setstate__(state)
    assert old._hours == b._hours and old.spent(d0 + 24 * H) == b.spent(d0 + 24 * H)
    assert old.grace_s == 6 * H and old.evaluate(d0 + 25 * H) == []


def test_a_snapshot_reads_back_the_same_nano_dollars() -> None:
    """Snapshots keep the layout of the releases that held floats (dollars: nusd / NUSD):
    read back, they are the same nano-dollars up to 2**51 of them (about $2.2M a value)."""
    rng = random.Random(2)
    b = BudgetTracker("d", 1000.0)
    t0 = utc(2026, 6, 1)
    values = [rng.randrange(2**k) for k in range(1, 52) for _ in range(20)] + [2**51]
    for i, v in enumerate(values):
        b.set_hour_nusd(t0 + i * H, v)
        b.set_minute_nusd(t0 + i * M, v)
    c = BudgetTracker("d", 1000.0)
    c.restore(orjson.loads(orjson.dumps(b.snapshot())))
    assert c._hours == b._hours and c._minutes == b._minutes


# Calendar periods.


def test_month_boundary_paris_vs_utc() -> None:
    t = utc(2026, 10, 31, 23, 30)
    hour = utc(2026, 10, 31, 23)  # 00:00 on Nov 1 in Paris (CET, after the Oct 25 change)
    u = BudgetTracker("u", 1000.0)
    p = BudgetTracker("p", 1000.0, timezone="Europe/Paris")
    assert u.period_bounds(t) == (utc(2026, 10, 1), utc(2026, 11, 1))
    assert p.period_bounds(t) == (utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    assert p.period_bounds(t - H) == (utc(2026, 9, 30, 22), utc(2026, 10, 31, 23))  # CEST
    for b in (u, p):
        b.set_hour(hour, 600.0)
    (vu,) = u.evaluate(t)
    (vp,) = p.evaluate(t)
    assert vu.period_start == utc(2026, 10, 1)  # October in UTC
    assert vp.period_start == utc(2026, 10, 31, 23)  # November in Paris
    assert "by Oct 31" in vu.reason and "by Nov 1" in vp.reason
    assert u.spent(utc(2026, 11, 1, 1)) == 0.0
    assert p.spent(utc(2026, 11, 1, 1)) == 600.0
    assert u.evaluate(utc(2026, 11, 1, 1)) == []


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Paris", (2026, 3, 29), 23),
        ("Europe/Paris", (2026, 10, 25), 25),
        ("America/New_York", (2026, 11, 1), 25),
        ("UTC", (2026, 3, 29), 24),
    ],
)
def test_dst_day_length(tz: str, day: tuple[int, int, int], hours: int) -> None:
    b = BudgetTracker("d", 1000.0, period="day", timezone=tz)
    start = local(tz, *day)
    s, e = b.period_bounds(start + 12 * H)
    assert (s, (e - s) / H) == (start, hours)
    # Every UTC hour of the local day counts: 23 or 25 of them, not 24.
    feed_hours(b, s, e - H, lambda t: 1.0)
    b.set_hour(e - H, 1.0)
    assert b.evaluate(e - 1.0) == [] and b.spent(e - 1.0) == hours
    assert b.spent(e) == 0.0


def test_iso_week_starts_monday_local() -> None:
    b = BudgetTracker("w", 1000.0, period="week", timezone="Europe/Paris")
    s, e = b.period_bounds(utc(2026, 3, 26, 12))  # Thursday; Sunday Mar 29 is 23 h long
    assert s == local("Europe/Paris", 2026, 3, 23) and (e - s) / H == 167


# Projection.


def history_then(
    b: BudgetTracker, start: float, month: float, end: float, cost: Callable[[float], float]
) -> tuple[list[BudgetVerdict], list[tuple[float, float | None, float]]]:
    """Feed from ``start`` to ``end``; from ``month`` on, record (now, projected, linear)."""
    feed_hours(b, start, month, cost)
    out: list[BudgetVerdict] = []
    track = []
    t = month
    while t < end:
        b.set_hour(t, cost(t))
        now = t + H
        vs = b.evaluate(now)
        out += [v for v in vs if v.period_start == month]
        s, e = b.period_bounds(now)
        linear = b.spent(now) / max(now - s, H) * (e - s)
        track.append((now, b.projected(now), linear))
        t += H
    return out, track


def test_projection_not_fooled_by_weekday_heavy_start() -> None:
    # June 2026 starts on a Monday: its first days are all weekdays, yet 8 of its 30 days
    # are weekend days at a tenth of the spend. True total 22*240 + 8*24 = $5,472.
    b = BudgetTracker("search", 6000.0)
    june, july = utc(2026, 6, 1), utc(2026, 7, 1)
    vs, track = history_then(b, june - 21 * 86400, june, july, weekday_heavy)
    assert kinds(vs, "projection") == []
    assert math.fsum(weekday_heavy(june + i * H) for i in range(30 * 24)) == 5472.0
    assert [v.threshold for v in kinds(vs, "budget")] == [0.5, 0.8]  # it did land under
    early = [(p, lin) for now, p, lin in track if p is not None and now <= june + 5 * 86400]
    assert early and all(lin > 6000.0 for _, lin in early)  # a linear rule would fire
    assert all(p == pytest.approx(5472.0, rel=1e-3) for p, _ in early)


def test_projection_sees_weekdays_ahead_of_a_weekend_start() -> None:
    # August 2026 starts on a Saturday: linear from the 1st under-projects, ours does not.
    # True total 21*240 + 10*24 = $5,280 against $4,500.
    b = BudgetTracker("search", 4500.0)
    aug, sep = utc(2026, 8, 1), utc(2026, 9, 1)
    vs, track = history_then(b, aug - 21 * 86400, aug, sep, weekday_heavy)
    (p,) = kinds(vs, "projection")
    assert (p.action, p.severity, p.threshold) == ("alert", "warning", None)
    assert p.expected_usd == pytest.approx(5280.0, rel=1e-3)
    assert p.observed_usd < 4500.0
    at = {now: lin for now, _, lin in track}
    fired_at = next(now for now, proj, _ in track if proj is not None)
    assert at[fired_at] < 4500.0  # linear would still be silent when ours warns
    assert "projected to spend $5,280 by Aug 31" in p.reason


def noisy(scale: float, seed: int) -> Callable[[float], float]:
    rng = np.random.default_rng(seed)
    cache: dict[float, float] = {}

    def cost(t: float) -> float:
        if t not in cache:
            how = (t // H + 72) % 168  # UTC hour-of-week, Monday 00:00 = 0
            cache[t] = float(scale * shape(np.array([how]))[0] * rng.lognormal(0.0, 0.1))
        return cache[t]

    return cost


@pytest.mark.parametrize(("landing", "fires"), [(1.3, True), (0.9, False)])
def test_projection_fires_on_overrun_only(landing: float, fires: bool) -> None:
    octo, nov = utc(2026, 10, 1), utc(2026, 11, 1)
    cost = noisy(10.0, seed=3)
    total = math.fsum(cost(octo + i * H) for i in range(31 * 24))
    b = BudgetTracker("search", total / landing, hard_stop_at=None)
    vs, track = history_then(b, octo - 21 * 86400, octo, nov, cost)
    got = kinds(vs, "projection")
    assert len(got) == (1 if fires else 0)
    if fires:
        assert got[0].observed_usd < b.amount_usd < got[0].expected_usd
        assert got[0].window_end - got[0].period_start == 31 * 86400
    else:
        assert max(p for _, p, _ in track if p is not None) < b.amount_usd


def test_projection_waits_for_history_and_a_tenth_of_the_period() -> None:
    b = BudgetTracker("search", 10_000.0)
    t0 = utc(2026, 6, 1)
    feed_hours(b, t0, t0 + 71 * H, lambda t: 10.0)  # 10 % of June is 72 h
    assert b.projected(t0 + 71 * H) is None
    feed_hours(b, t0 + 71 * H, t0 + 72 * H, lambda t: 10.0)
    assert b.projected(t0 + 72 * H) == pytest.approx(7200.0)
    late = BudgetTracker("search", 10_000.0)
    t1 = utc(2026, 6, 20)  # two thirds into June, but only 20 h of history
    feed_hours(late, t1, t1 + 20 * H, lambda t: 10.0)
    assert late.projected(t1 + 20 * H) is None


# Burn rate.


def burn(
    b: BudgetTracker, start: float, pattern: list[tuple[int, float]], pace_min: float
) -> list[BudgetVerdict]:
    """Per-minute spend: (minutes, x pace) segments; evaluated at each minute's end."""
    out: list[BudgetVerdict] = []
    t = start
    for n, x in pattern:
        for _ in range(n):
            b.set_minute(t, pace_min * x)
            out += kinds(b.evaluate(t + M), "burn_rate")
            t += M
    return out


def burn_tracker() -> tuple[BudgetTracker, float]:
    b = BudgetTracker("agent", 30 * 24 * 10.0)  # $7,200 for 30-day June: pace $10/h
    return b, 10.0 / 60.0


def test_fast_burn_fires_once_per_burst_and_rearms() -> None:
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 10)
    vs = burn(b, t0, [(360, 1.0), (90, 20.0), (120, 1.0), (90, 20.0), (60, 1.0)], pace)
    vs = [v for v in vs if v.severity == "critical"]  # the 6 h window also warns here
    assert [(v.severity, v.threshold) for v in vs] == [("critical", 14.4)] * 2
    first, second = vs
    # 1 h at (20k + 60 - k) / 60 >= 14.4 once k >= 43 burst minutes.
    assert first.window_end == t0 + (360 + 43) * M
    assert second.window_end == t0 + (360 + 90 + 120 + 43) * M
    assert first.window_end - first.window_start == H
    assert first.expected_usd == pytest.approx(10.0)
    assert first.observed_usd == pytest.approx(pace * (43 * 20 + 17))
    assert "at 14.6x the even pace: $146 in the last 1 h vs $10.00" in first.reason


def test_fast_burn_stays_disarmed_until_the_hour_recovers() -> None:
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 10)
    # Two bursts 10 min apart: the 5 min window drops, the 1 h one never under 14.4x: one page.
    vs = burn(b, t0, [(60, 1.0), (90, 20.0), (10, 1.0), (60, 20.0), (60, 1.0)], pace)
    assert len([v for v in vs if v.severity == "critical"]) == 1


def test_a_runaway_whose_hour_hovers_at_the_factor_pages_once() -> None:
    """A loop in bursts (25x for 20 min, 5x for 17) keeps its hour at 14-17x the pace. Its
    hour dipped under 14.4x between bursts, which re-armed the page: 25 critical pages in
    15 hours, one every 37 minutes. A burn alert re-arms once its long window has clearly
    subsided (under half its factor), so it pages once, and again after a real recovery."""
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 10)
    vs = burn(b, t0, [(60, 1.0)] + [(20, 25.0), (17, 5.0)] * 25 + [(120, 1.0), (90, 20.0)], pace)
    assert [v.severity for v in vs] == ["critical", "warning", "critical"]
    assert vs[-1].window_end == t0 + (60 + 37 * 25 + 120 + 43) * M


def test_slow_burn_fires_on_sustained_8x_once_and_rearms() -> None:
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 10)
    vs = burn(b, t0, [(420, 8.0), (420, 1.0), (420, 8.0)], pace)
    assert [(v.severity, v.threshold) for v in vs] == [("warning", 6.0)] * 2  # no fast burn
    # First from no data: 8k / 360 >= 6 at k = 270. It re-arms after 103 min at 1x; then
    # from a 6 h window at 1x: (8k + 360 - k) / 360 >= 6 at k = 258.
    assert vs[0].window_end == t0 + 270 * M
    assert vs[0].window_end - vs[0].window_start == 6 * H
    assert vs[1].window_end == t0 + (840 + 258) * M


def test_burn_ignores_normal_pace_and_bursts_of_a_few_minutes() -> None:
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 10)
    assert burn(b, t0, [(600, 1.0), (10, 50.0), (600, 1.5)], pace) == []


@pytest.mark.parametrize("seed", range(6))
def test_burn_windows_are_running_sums_of_the_minutes_held(seed: int) -> None:
    """Random bursts near and past both factors, minutes arriving late and out of order
    (some too late to be held), gaps longer than the windows: at every check each window
    holds the exact sum of its minutes' last values, and a tracker restored from a snapshot
    just before (its windows summed afresh) gives the same verdicts and arming."""
    rng = random.Random(seed)
    t = utc(2026, 6, 10)
    pattern = [(rng.randrange(5, 200), rng.choice([0.0, 1.0, 5.0, 6.2, 14.0, 15.0, 30.0]))]
    pattern += [(rng.randrange(5, 200), rng.uniform(0.0, 25.0)) for _ in range(12)]
    b, pace = burn_tracker()
    held: dict[int, int] = {}
    fired = 0
    for n, x in pattern:
        t += rng.choice([0, 0, 0, 45, 400]) * M  # a gap: no minutes, no checks
        for k in range(n):
            late = t - rng.randrange(1, 420) * M if k % 7 == 3 else None
            for at, cost in ((t, pace * x), (late, pace * x * 0.5)):
                if at is not None:
                    b.set_minute(at, cost)
                    held[math.floor(at / M)] = round(cost * 1e9)
            twin, _ = burn_tracker()
            twin.restore(b.snapshot())
            out = b.evaluate(t + M)
            assert twin.evaluate(t + M) == out
            assert (twin._fast_armed, twin._slow_armed) == (b._fast_armed, b._slow_armed)
            m_end = math.floor((t + M) / M)
            exact = {w: sum(held.get(m, 0) for m in range(m_end - w, m_end)) for w in WINDOWS}
            assert b._burn_windows(m_end) == exact
            for v in kinds(out, "burn_rate"):
                fired += 1
                assert v.observed_usd == exact[60 if v.severity == "critical" else 360] / 1e9
            t += M
    assert fired


# Restart.


def scenario(amount: float) -> list[tuple[str, float, float]]:
    """Ops for 17 days of a weekly Paris budget: hours sent twice as they fill, late
    upward corrections, two minute-level bursts; week 1 overruns (pause), week 2 resumes."""
    pace_h = amount / 168.0
    ops: list[tuple[str, float, float]] = []
    final: dict[float, float] = {}
    t0 = utc(2026, 6, 1)
    for i in range(17 * 24):
        t = t0 + i * H
        x = 1.6 if i < 6 * 24 else 0.6
        if i in (60, 61, 62, 250, 251):
            acc = 0.0
            for k in range(60):
                c = pace_h / 60.0 * 20.0
                acc += c
                ops.append(("m", t + k * M, c))
                ops.append(("h", t, acc))
                ops.append(("e", t + (k + 1) * M, 0.0))
            final[t] = acc
        else:
            ops.append(("h", t, pace_h * x / 2))
            ops.append(("e", t + H / 2, 0.0))
            final[t] = pace_h * x
            ops.append(("h", t, final[t]))
            ops.append(("e", t + H, 0.0))
        if i % 7 == 0 and i > 5:
            final[t - 5 * H] *= 1.1  # late events raise an hour already evaluated
            ops.append(("h", t - 5 * H, final[t - 5 * H]))
            ops.append(("e", t + H, 0.0))
    return ops


def play(b: BudgetTracker, ops: list[tuple[str, float, float]]) -> list[BudgetVerdict]:
    out: list[BudgetVerdict] = []
    for op, t, c in ops:
        if op == "h":
            b.set_hour(t, c)
        elif op == "m":
            b.set_minute(t, c)
        else:
            out += b.evaluate(t)
    return out


def test_restart_replay_fires_nothing_twice() -> None:
    amount = 1000.0
    ops = scenario(amount)

    def make() -> BudgetTracker:
        return BudgetTracker("search", amount, period="week", timezone="Europe/Paris")

    whole = play(make(), ops)
    assert {v.kind for v in whole} == {"budget", "projection", "burn_rate"}
    assert {v.action for v in whole} == {"alert", "pause", "resume"}
    for at in (100, len(ops) // 3, len(ops) // 2, 2 * len(ops) // 3, len(ops) - 50):
        cut = next(i + 1 for i in range(at, len(ops)) if ops[i][0] == "e")  # snapshot after
        a = make()
        before = play(a, ops[:cut])
        b = make()
        b.restore(orjson.loads(orjson.dumps(a.snapshot())))
        assert play(b, ops[:cut]) == []  # the replay of what it had already seen
        after = play(b, ops[cut:])
        assert before + after == whole, cut


def test_replayed_partial_values_do_not_fire_a_projection() -> None:
    # A late upward correction pushes June to exactly its budget without a projection ever
    # being due. Replayed after a restore, the hour's first (lower) value briefly returns with
    # the later hours present: spent $950 and a projected $1,068. That dip is not news.
    t0 = utc(2026, 6, 1)
    ops = [op for i in range(600) for op in (("h", t0 + i * H, 1.0), ("e", t0 + (i + 1) * H, 0))]
    t600, t601 = t0 + 600 * H, t0 + 601 * H
    ops += [("h", t600, 250.0), ("e", t601, 0.0)]  # $850 spent, $969 projected
    ops += [("h", t600, 400.0), ("e", t601 + M, 0.0)]  # $1,000: at the budget, no projection
    ops += [("h", t601, 100.0), ("e", t601 + H, 0.0)]

    def make() -> BudgetTracker:
        return BudgetTracker("search", 1000.0, alert_at=(), hard_stop_at=None)

    a = make()
    assert play(a, ops) == []
    b = make()
    b.restore(orjson.loads(orjson.dumps(a.snapshot())))
    assert play(b, ops) == []
    assert b.spent(t601 + H) == 1100.0


# Bad input, snapshot, config.


def test_bad_values_are_ignored() -> None:
    b = BudgetTracker("search", 100.0)
    t0 = utc(2026, 3, 2)
    b.set_hour(t0, 10.0)
    b.set_minute(t0, 1.0)
    b.evaluate(t0 + 60.0)
    snap = b.snapshot()
    for bad in (math.nan, math.inf, -math.inf, -5.0, None, "12", True):
        b.set_hour(t0, bad)  # type: ignore[arg-type]
        b.set_hour(t0 + H, bad)  # type: ignore[arg-type]
        b.set_minute(t0 + 60.0, bad)  # type: ignore[arg-type]
        b.set_hour(bad, 50.0)  # type: ignore[arg-type]
        assert b.evaluate(bad) == []  # type: ignore[arg-type]
    assert b.snapshot() == snap
    assert b.evaluate(t0 + 120.0) == []
    assert b.spent(t0 + 120.0) == 10.0


def test_out_of_order_and_huge_gaps() -> None:
    b = BudgetTracker("search", 100.0)
    t0 = utc(2026, 3, 2)
    b.set_hour(t0 + 2 * H, 30.0)
    b.set_hour(t0, 30.0)
    assert [v.threshold for v in b.evaluate(t0 + 3 * H)] == [0.5]
    assert b.evaluate(t0) == []  # an older watermark is raised to the newest seen
    b.set_hour(t0 + H, 30.0)
    assert [v.threshold for v in b.evaluate(t0)] == [0.8]
    far = utc(2031, 7, 9, 5)
    assert b.evaluate(far) == []
    assert b.spent(far) == 0.0
    assert len(b.snapshot()["hours"]) == 0


def test_snapshot_is_json_and_small() -> None:
    b, pace = burn_tracker()
    t0 = utc(2026, 6, 1)
    feed_hours(b, t0 - 14 * 86400, t0 + 30 * 86400 - H, noisy(10.0, seed=5))
    burn(b, t0 + 29 * 86400 + 12 * H, [(600, 1.5)], pace)
    snap = b.snapshot()
    raw = orjson.dumps(snap)
    assert orjson.loads(raw) == snap
    assert len(snap["minutes"]) <= 361 and len(snap["hours"]) <= 31 * 24
    assert len(raw) < 40_000
    c, _ = burn_tracker()
    c.restore(orjson.loads(raw))
    assert c.snapshot() == snap


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"amount_usd": 0.0}, "amount_usd"),
        ({"amount_usd": math.nan}, "amount_usd"),
        ({"period": "year"}, "period"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"alert_at": (0.5, 2.5)}, "alert_at"),
        ({"alert_at": (0.5, 0.5)}, "alert_at"),
        ({"hard_stop_at": 0.9}, "hard_stop_at"),
        ({"fast_burn": 0.0}, "fast_burn"),
        ({"slow_burn": -1.0}, "slow_burn"),
        ({"name": ""}, "name"),
        ({"grace_s": -1.0}, "grace_s"),
        ({"grace_s": math.inf}, "grace_s"),
    ],
)
def test_bad_params_raise_one_line_naming_the_param(kwargs: dict, param: str) -> None:
    args = {"name": "b", "amount_usd": 100.0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{param}: must be") as err:
        BudgetTracker(**args)
    assert "\n" not in str(err.value)


def test_from_config() -> None:
    cfg = BudgetConfig(
        name="search-monthly",
        amount_usd=5000.0,
        timezone="Europe/Paris",
        alert_at=[0.9, 0.5],
        hard_stop_at=1.5,
    )
    b = BudgetTracker.from_config(cfg)
    assert (b.name, b.amount_usd, b.period, b.timezone) == (
        "search-monthly",
        5000.0,
        "month",
        "Europe/Paris",
    )
    assert b.alert_at == (0.5, 0.9) and b.hard_stop_at == 1.5
    assert (b.auto_resume, b.fast_burn, b.slow_burn) == (True, 14.4, 6.0)
    assert b.grace_s == 6 * 3600
    custom = BudgetTracker.from_config(SimpleNamespace(**cfg.model_dump(), grace_s=1800.0))
    assert custom.grace_s == 1800.0


def _feed_minutes(b: BudgetTracker, start: float, end: float, per_min: float) -> None:
    """$``per_min`` a minute over [start, end): minutes and the absolute hours they fill."""
    hours: dict[float, float] = {}
    t = start
    while t < end:
        b.set_minute(t, per_min)
        hour = math.floor(t / H) * H
        hours[hour] = hours.get(hour, 0.0) + per_min
        b.set_hour(hour, hours[hour])
        t += 60.0


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide"])
def test_a_day_starting_inside_a_utc_hour_is_split_by_its_minutes(tz: str) -> None:
    """00:00 IST is 18:30 UTC: the UTC hour 18:00-19:00 holds the end of one day and the
    start of the next. It was counted whole in the day before (up to 45 minutes wrong)."""
    b = BudgetTracker("d", 1000.0, period="day", timezone=tz, alert_at=(0.5,))
    midnight = local(tz, 2026, 10, 6)
    assert midnight % H != 0
    b.evaluate(midnight - 4 * H)
    _feed_minutes(b, midnight - 3 * H, midnight + 3 * H, per_min=2.0)
    assert b.spent(midnight - 1.0) == pytest.approx(2.0 * 180)  # the day before, to the minute
    assert b.spent(midnight + 3 * H - 1.0) == pytest.approx(2.0 * 180)
    # The first hour's minutes are kept for the whole day, past the 6 h of burn windows.
    b.set_hour(midnight + 20 * H, 0.0)
    b.evaluate(midnight + 20 * H)
    assert b.spent(midnight + 20 * H) == pytest.approx(2.0 * 180)
    b2 = pickle_round_trip(b)
    assert b2.spent(midnight + 20 * H) == pytest.approx(2.0 * 180)
    # The day ends the same way: its last partial hour counts up to midnight only.
    _feed_minutes(b2, midnight + 23 * H, midnight + 24.5 * H, per_min=5.0)
    assert b2.spent(midnight + 24 * H - 1.0) == pytest.approx(2.0 * 180 + 5.0 * 60)
    b2.evaluate(midnight + 24.5 * H)  # the next day
    assert b2.spent(midnight + 24.5 * H) == pytest.approx(5.0 * 30)


def test_without_minutes_a_split_hour_counts_where_it_starts() -> None:
    """A snapshot from before minutes were kept, or no minute rollups: as before."""
    b = BudgetTracker("d", 1000.0, period="day", timezone="Asia/Kolkata")
    midnight = local("Asia/Kolkata", 2026, 10, 6)
    for h in range(-3, 3):
        b.set_hour(math.floor(midnight / H) * H + h * H, 60.0)
    assert b.spent(midnight + 3 * H - 1.0) == pytest.approx(60.0 * 2)
    assert b.spent(midnight - 1.0) == pytest.approx(60.0 * 4)  # with the split hour whole


def pickle_round_trip(b: BudgetTracker) -> BudgetTracker:
    restored = BudgetTracker("d", 1000.0, period="day", timezone=b.timezone)
    restored.restore(orjson.loads(orjson.dumps(b.snapshot())))
    return restored


def test_burn_windows_are_exact_however_their_minutes_arrived() -> None:
    """A window was a float sum of its minutes, oldest first: off from the exact sum in its
    last digits, and by the order it was summed in. Minutes are now held in nano-dollars
    and summed as ints, with the minutes held sparse or dense, in any arrival order."""
    rng = random.Random(7)
    t0 = utc(2026, 6, 10)
    for held in (120, 400):  # fewer than the 6 h window's 360 minutes, then more
        values = [rng.uniform(0.1, 9.9) * (20.0 if i >= held - 60 else 1.0) for i in range(held)]
        order = list(range(held))
        rng.shuffle(order)
        b, _ = burn_tracker()
        for i in order:
            b.set_minute(t0 + i * M, values[i])
        fast = [
            v for v in kinds(b.evaluate(t0 + held * M), "burn_rate") if v.severity == "critical"
        ]
        exact = sum(round(v * 1e9) for v in values[-60:]) / 1e9
        assert [v.observed_usd for v in fast] == [exact]


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_period_sums_are_running_totals_that_match_the_hours_held(tz: str) -> None:
    """Three days of a daily budget checked every five minutes: hours re-sent as they fill
    and ahead of the watermark, late corrections to the day before (within its grace and
    after), minutes of the hour a Kolkata day starts in. At every check the spend is what a
    tracker restored from a snapshot (its totals summed afresh) reads and fires, and in UTC
    the exact sum of the hours so far."""
    rng = random.Random(11)
    b = BudgetTracker("d", 400.0, period="day", timezone=tz, alert_at=(0.25, 0.5, 0.8, 1.0))
    day = local(tz, 2026, 10, 6)
    hours: dict[int, int] = {}
    fired = []
    for step in range(3 * 24 * 12):
        now = day + step * 300.0
        h_now = math.floor(now / H)
        for h in (h_now, h_now, h_now + 1, h_now - rng.randrange(1, 30)):
            cost = rng.uniform(0.0, 9.0)
            if step % (24 * 12) == 2 and h < h_now:  # ten minutes into a day: the day before
                h, cost = h_now - 1, 150.0  # crosses 50 % late
            b.set_hour(h * H, cost)
            hours[h] = round(cost * 1e9)
        if tz != "UTC":
            b.set_minute(math.floor(now / M) * M, rng.uniform(0.0, 0.2))
        twin = BudgetTracker("d", 400.0, period="day", timezone=tz, alert_at=(0.25, 0.5, 0.8, 1.0))
        twin.restore(b.snapshot())
        out = b.evaluate(now)
        assert twin.evaluate(now) == out, step
        assert twin.spent(now) == b.spent(now), step
        fired += out
        if tz == "UTC":
            first = math.floor(b.period_bounds(now)[0] / H)
            assert b.spent(now) == sum(hours.get(h, 0) for h in range(first, h_now + 1)) / 1e9
    assert any("late events" in v.reason for v in fired)


def test_spend_read_from_rollups_is_summed_in_nano_dollars() -> None:
    """Rollups carry nano-dollars. Each hour's were divided into a float and the period's
    floats summed, so the spend a budget alert named could differ from the rollups' exact
    total in its last digits ($3,024.2618457910003 of $3,024.261845791 here, about one
    period in a hundred). They are now summed as ints and divided once."""
    rng = random.Random(24)
    cfg = BudgetConfig(name="t", scope={"team": "a"}, amount_usd=10**6, period="day")
    book = BudgetBook([cfg])
    t0 = int(utc(2026, 6, 1))
    records = [
        RollupRecord(
            ("team",), ("a",), 3600, t0 + i * 3600, p, 0, (rng.randrange(10**9, 10**11), 1)
        )
        for i in range(20)
        for p in range(3)
    ]
    hours = [sum(r.metrics[0] for r in records[i : i + 3]) for i in range(0, 60, 3)]
    assert math.fsum(h / NUSD for h in hours) != sum(hours) / NUSD  # what the floats said
    rng.shuffle(records)
    for block in RollupColumns.runs(records):
        book.parts(block)
    assert book.trackers[0].spent(t0 + 20 * 3600) == sum(hours) / NUSD == 3024.261845791


def test_projection_and_pruning_every_five_minutes_match_a_fresh_restore() -> None:
    """The projection keeps its expected hours between the hours it learns and prunes once
    an hour: at every early look it projects what a tracker restored from a snapshot (no
    cache, nothing left to prune) projects, and fires the same verdicts."""
    b = BudgetTracker("search", 6000.0)
    feed_hours(b, utc(2026, 9, 1), utc(2026, 10, 10), weekday_heavy)
    t = utc(2026, 10, 10)
    for step in range(2 * 24 * 12):  # two days of five-minute looks, the hours growing
        now = t + step * 300.0
        b.set_hour(math.floor(now / H) * H, weekday_heavy(now) * (1 + step % 12) / 12)
        twin = BudgetTracker("search", 6000.0)
        twin.restore(b.snapshot())
        assert b.evaluate(now) == twin.evaluate(now), step
        projected = b.projected(now)
        assert projected is not None and projected == twin.projected(now), step


def _team_records(t0: int, days: int, seed: int) -> list[RollupRecord]:
    """Hours and minutes of teams a and b over ``days`` from two partitions, in time order:
    each hour sent twice (a partial total, then the whole), some with a late epoch."""
    rng = random.Random(seed)
    out = []
    for h in range(days * 24):
        start = t0 + h * 3600
        for team in ("a", "b"):
            for p in (0, 1):
                cost = rng.randrange(10**9, 6 * 10**10) * (8 if h % 97 == 5 else 1)
                out.append(RollupRecord(("team",), (team,), 3600, start, p, 0, (cost // 2, 1)))
                out.append(RollupRecord(("team",), (team,), 3600, start, p, 0, (cost, 1)))
                if h % 7 == 3:
                    late = rng.randrange(10**9)
                    out.append(RollupRecord(("team",), (team,), 3600, start, p, 1, (late, 1)))
                out.extend(
                    RollupRecord(("team",), (team,), 60, start + m * 60, p, 0, (cost // 60, 1))
                    for m in range(0, 60, 5)
                )
    return out


def _checked(
    book: BudgetBook, records: list[RollupRecord], from_hour: int = 0
) -> list[tuple[str, str, float | None, float]]:
    """Feed ``records`` an hour at a time and check the book at each hour's end."""
    keys, rules = KeyDirectory(), KeysConfig()
    alerts = []
    by_hour: dict[int, list[RollupRecord]] = {}
    for r in records:
        by_hour.setdefault(r.window_start // 3600, []).append(r)
    for hour in sorted(by_hour)[from_hour:]:
        for block in RollupColumns.runs(by_hour[hour]):
            book.parts(block)
        at = (hour + 1) * 3600.0
        for alert, _ in book.check(at, at, keys, rules):
            alerts.append((alert.budget, alert.id, alert.threshold, alert.observed_usd))
    return alerts


def _team_budgets() -> list[BudgetConfig]:
    return [
        BudgetConfig(name=f"a-{period}", scope={"team": "a"}, amount_usd=amount, period=period)
        for period, amount in (("day", 1500.0), ("week", 9000.0), ("month", 30000.0))
    ] + [BudgetConfig(name="b-week", scope={"team": "b"}, amount_usd=9000.0, period="week")]


def test_budgets_of_one_scope_share_their_parts_and_alert_as_each_alone() -> None:
    """A team's day, week and month budgets read one store of parts (each record stored
    and summed once, not once per budget), kept as long as the month needs, and alert as
    each would in a book of its own."""
    records = _team_records(int(utc(2026, 6, 20)), 20, seed=5)
    budgets = _team_budgets()
    book = BudgetBook(budgets)
    assert book.held[0] is book.held[1] is book.held[2] is not book.held[3]
    together = _checked(book, records)
    alone = [a for cfg in budgets for a in _checked(BudgetBook([cfg]), records)]
    assert sorted(together, key=str) == sorted(alone, key=str)
    assert {a[0] for a in together} == {b.name for b in budgets}
    # The month (from June 1) and the previous one are held, not just the day's two days.
    assert min(book.held[0].hours) == int(utc(2026, 6, 20))
    assert min(book.held[3].hours) == int(utc(2026, 6, 29))  # the week before Monday July 6


def test_a_snapshot_with_a_copy_of_the_parts_per_budget_restores_their_union() -> None:
    """Releases before 2026-12-07 saved each budget's own copy of its scope's parts, the
    day budget's pruned to two days: restored, the scope holds the union (the month's), and
    a late correction to an hour only the month still held counts whole. A lagging copy of
    a part gives way to the larger total."""
    records = _team_records(int(utc(2026, 7, 1)), 12, seed=6)
    budgets = _team_budgets()
    book = BudgetBook(budgets)
    _checked(book, records)
    saved = orjson.loads(orjson.dumps(book.dump()))
    day, month = saved["budgets"][0], saved["budgets"][2]
    assert day["hours"] == month["hours"]  # one scope, written with each budget
    two_days = int(utc(2026, 7, 11))
    day["hours"] = [row for row in day["hours"] if row[0] >= two_days]
    day["hours"][0][1][0][2] -= 10**9  # a part of the day's copy lagging behind
    restored = BudgetBook(budgets)
    restored.load(saved)
    assert restored.held[0] is restored.held[2]
    assert restored.held[0].hours == book.held[0].hours
    assert restored.dump() == book.dump()
    late = [RollupRecord(("team",), ("a",), 3600, int(utc(2026, 7, 3, 5)), 1, 2, (10**13, 1))]
    assert _checked(restored, late) == _checked(book, late) != []


def test_the_hourly_prune_drops_what_a_full_scan_drops() -> None:
    """The prune looks for hours before the period only when the lowest hour held may be
    one (a bound kept as hours come, late ones too), not by a scan of a month of hours each
    hour: it holds what a scan every hour holds."""
    rng = random.Random(8)
    b, scanned = BudgetTracker("t", 500.0, period="day"), BudgetTracker("t", 500.0, period="day")
    t0 = utc(2026, 3, 1)
    for h in range(24 * 9):
        now = t0 + (h + 1) * H
        # Quiet odd days: a correction to one comes below every hour held.
        writes = [(t0 + h * H, rng.uniform(0, 20))] if h // 24 % 2 == 0 else []
        if rng.random() < 0.3:  # a late correction, up to a day back
            writes.append((t0 + (h - rng.randrange(1, 24)) * H, rng.uniform(0, 20)))
        for tracker in (b, scanned):
            for start, usd_ in writes:
                tracker.set_hour(start, usd_)
        scanned._first_hour = -(2**62)  # what the prune took: min(hours), always scanning
        assert b.evaluate(now) == scanned.evaluate(now)
        assert b._hours == scanned._hours and b.snapshot() == scanned.snapshot(), h
