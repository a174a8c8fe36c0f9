"""The early look's recent rate: a series' calls in the last quarter hour (``detectors._recent``).

The watch is fed as the detect stage is: each hour's absolute totals every 5 minutes of
event time, the watermark the end of the latest minute.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from spendbrake.detectors import SpendWatch, make_detector
from spendbrake.detectors._recent import STEPS, look, look_all
from spendbrake.detectors._series import Series
from spendbrake.schemas import NUSD, Alert, Config, RollupRecord

HOUR = 3600
STEP = 300
T0 = 1_790_553_600  # Monday 2026-09-28 00:00 UTC
KEY = "k-support"
USUAL = 6.0  # calls an hour, every hour
USD = 2  # dollars a call


def _watch() -> SpendWatch:
    return SpendWatch(Config.model_validate({"dimensions": [["api_key"]]}))


def _feed(watch: SpendWatch, minutes: np.ndarray, start: int) -> list[Alert]:
    """Calls per minute from ``start`` on, fed as the hours' totals every 5 minutes."""
    alerts: list[Alert] = []
    for step in range(len(minutes) // 5):
        end = start + (step + 1) * STEP
        hour = (end - 1) // HOUR * HOUR
        first = (hour - start) // 60
        calls = int(minutes[first : (end - start) // 60].sum())
        watch.observe(
            [
                RollupRecord(("api_key",), (KEY,), HOUR, hour, 0, 0, (calls * USD * NUSD, calls)),
                RollupRecord((), (), 60, end - 60, 0, 0, (0, 0)),
            ]
        )
        alerts.extend(alert for alert, _ in watch.advance())
    return alerts


def _history(seed: int, weeks: int = 3) -> tuple[SpendWatch, np.ndarray]:
    """A watch taught ``weeks`` of about six calls an hour; and the calls of those minutes."""
    rng = np.random.default_rng(seed)
    minutes = np.zeros(weeks * 168 * 60, dtype=np.int64)
    for h in range(weeks * 168):
        at = rng.integers(0, 60, rng.poisson(USUAL))
        np.add.at(minutes, h * 60 + at, 1)
    watch = _watch()
    assert not _feed(watch, minutes, T0)
    return watch, minutes


def _then(seed: int, extra_per_hour: float, from_minute: int, lasting: int) -> np.ndarray:
    """Three hours of the usual calls, and ``extra_per_hour`` more from ``from_minute`` on."""
    rng = np.random.default_rng(seed + 100)
    minutes = rng.poisson(USUAL / 60.0, 180)
    minutes[from_minute : from_minute + lasting] += rng.poisson(
        extra_per_hour / 60.0, len(minutes[from_minute : from_minute + lasting])
    )
    return minutes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_surge_late_in_an_hour_pages_on_its_last_quarter_hour(seed: int) -> None:
    # A spike from 00:40 at 12x the usual six calls an hour. Since the top of the hour it is
    # diluted by the 40 quiet minutes (about 20 calls in 55 minutes, where the bar is 44),
    # so the calls so far paged only in the next hour; its last quarter hour holds about
    # 18 calls where 1.5 are usual.
    watch, _ = _history(seed)
    start = T0 + 3 * 168 * HOUR
    alerts = _feed(watch, _then(seed, 12 * USUAL, 40, 120), start)
    pages = [a for a in alerts if a.kind == "anomaly"]
    assert pages, seed
    at = datetime.fromisoformat(pages[0].detected_at).timestamp()
    assert at - (start + 40 * 60) <= 20 * 60, pages[0]
    assert "calls for the last 15 minutes at Mon 00:00 where" in pages[0].reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_quarter_hour_burst_at_three_times_the_rate_stays_quiet(seed: int) -> None:
    # A legitimate burst: three times the usual rate for 30 minutes from 00:40.
    watch, _ = _history(seed)
    start = T0 + 3 * 168 * HOUR
    assert not _feed(watch, _then(seed, 2 * USUAL, 40, 30), start)


def _ring(*looks: tuple[int, int]) -> tuple[int, int]:
    """A ring (``hi``, ``lo``) after looks at (step, calls)."""
    hi = lo = 0
    for step, calls in looks:
        _, hi, lo = look(hi, lo, step, step, 12, calls, lambda hour: 0)
    return hi, lo


def test_the_window_spans_the_hour_boundary() -> None:
    # Steps of 5 minutes, 12 an hour: step 108 is 09:00. At 08:50 (106) the hour held 4
    # calls, at 08:55 (107) 6; 08:00 ended with 9; 09:00 has 5 calls by 09:05 (109).
    ring = _ring((106, 4), (107, 6), (108, 0))
    assert look(*ring, 109, 100, 12, 5, lambda hour: 9)[0] == 9 - 4 + 5


def test_the_window_waits_for_looks_at_every_step() -> None:
    # After a backlog (looks resumed at step 108), the calls at 106 say nothing about those
    # since: records came in between without a look. Three looks later it is known again.
    ring = _ring((106, 4), (108, 30))
    assert look(*ring, 109, 108, 12, 31, lambda hour: 0)[0] is None
    ring = _ring((106, 4), (108, 30), (109, 31), (110, 33))
    assert look(*ring, 111, 108, 12, 40, lambda hour: 0)[0] == 40 - 30
    assert STEPS == 3


def test_the_recent_calls_round_trip_through_the_snapshot() -> None:
    watch, _ = _history(0, weeks=1)
    series = next(iter(watch.series.values()))
    assert series.recent and watch.clock.looks_from is not None
    again = _watch()
    again.restore(watch.snapshot())
    restored = next(iter(again.series.values()))
    assert restored.recent == series.recent
    assert (again.clock.last_look, again.clock.looks_from) == (
        watch.clock.last_look,
        watch.clock.looks_from,
    )
    assert again.snapshot() == watch.snapshot()


def _baseline(weeks: int) -> tuple[object, float]:
    """A ``baseline`` counting calls, taught ``weeks`` of about six calls an hour ($2 each)."""
    rng = np.random.default_rng(0)
    d = make_detector("baseline", count_x=8.0)
    hours = weeks * 168
    for i in range(hours):
        calls = int(rng.poisson(USUAL))
        d.update(3600.0 * i, float(USD * calls), float(calls))
    return d, 3600.0 * hours


def test_the_recent_look_waits_for_a_slot_learned_three_times() -> None:
    # 20 calls in the last quarter hour where 1.5 are usual; the hour so far, 24 calls in 50
    # minutes, is under its bar (40). Against a slot learned from three weeks it pages; in
    # the third week (two samples) a quarter hour is judged against too young a rate.
    for weeks, pages in ((3, True), (2, False)):
        d, ts = _baseline(weeks)
        v = d.peek(ts, 48.0, 24.0, 50 / 60, recent=(20.0, 0.25))
        assert v.is_anomaly is pages, weeks
        assert not d.peek(ts, 48.0, 24.0, 50 / 60).is_anomaly
        if pages:
            assert v.reason.startswith("20 calls for the last 15 minutes at Thu 00:00 where")


def test_a_young_slot_is_judged_with_its_uncertainty() -> None:
    """Evaluation seeds 0-4: most pages of the third week were whole hours at 8-14x a slot
    learned from two hours (29 calls where 3.2 were usual), legitimate bursts. The chance
    test now takes such a slot's calls at the top of their band; a loop still pages."""
    rng = np.random.default_rng(0)
    d = make_detector("baseline", count_x=8.0, count_floor=2.0)
    for i in range(2 * 168):  # two weeks of about 3 calls an hour, a burst every third noon
        calls = int(rng.poisson(3.0))
        if i % 24 == 12 and i // 24 % 3 == 0:
            calls = 20
        d.update(3600.0 * i, float(USD * calls), float(calls))
    ts = 3600.0 * 2 * 168  # Thursday 00:00 of the third week: its slot learned twice
    assert not d.peek(ts, USD * 26.0, 26.0).is_anomaly  # paged before: 9x, improbable at 2x
    loop = d.peek(ts, USD * 40.0, 40.0)
    assert loop.is_anomaly and loop.reason.startswith("40 calls for Thu 00:00 where 3.2")


@pytest.mark.parametrize("seed", range(5))
def test_the_window_is_the_calls_of_the_last_three_steps(seed: int) -> None:
    # A series' new calls at each step (none at some: not looked at then), over hour
    # boundaries: every window the ring gives is the calls of the last three steps.
    rng = np.random.default_rng(seed)
    new = rng.poisson(3.0, 400) * (rng.random(400) < 0.6)
    hours: dict[int, int] = {}  # hour -> calls so far
    hi = lo = judged = 0
    for step in range(1000, 1400):
        calls = int(new[step - 1000])
        hour = (step - 1) // 12  # the step's calls came before it: in the hour before it
        hours[hour] = hours.get(hour, 0) + calls
        if not calls:
            continue  # unchanged: no look at this series
        now = hours.get(step // 12, 0)
        got, hi, lo = look(hi, lo, step, 1000, 12, now, lambda h: hours.get(h, 0))
        if got is not None:
            judged += 1
            assert got == int(new[step - 1000 - 2 : step - 1000 + 1].sum()), step
    assert judged > 100


def test_a_count_page_early_in_its_hour_sets_the_spend_so_far_against_as_much_expected() -> None:
    """The calls ten minutes in are a loop's; the spend so far is a fraction of a whole usual
    hour, and the reason showed it per hour ("spend $60/h vs $12/h expected", as if under
    way to no more than usual). It is set against the expected spend by then."""
    d, ts = _baseline(3)
    v = d.peek(ts, USD * 30.0, 30.0, 10 / 60)
    assert v.is_anomaly, v.reason
    _, _, spend = v.reason.partition("; ")
    assert spend.startswith("spend $60.00 so far vs $") and "expected by then" in spend, v.reason
    assert "/h" not in spend, v.reason


def test_spend_judged_early_in_its_hour_is_not_given_as_a_rate() -> None:
    """A third of an hour in, the spend so far is no hourly rate: the reasons said "$120/h"
    for $120 in twenty minutes, and "(7.5x)" of the whole hour as if it were the pace."""
    d, ts = _baseline(3)
    page = d.peek(ts, USD * 60.0, 8.0, 1 / 3)
    assert page.is_anomaly, page.reason
    assert page.reason.startswith("spend $120 in the first 33% of Thu 00:00, already "), page
    quiet = d.peek(ts, USD * 40.0, 8.0, 1 / 3)
    assert "spend $80.00 in the first 33% of Thu 00:00, already 7.5x the $" in quiet.reason
    for v in (page, quiet):
        assert "/h" not in v.reason, v.reason
    assert d.peek(ts, USD * 60.0, 8.0).reason.startswith("spend $120/h for Thu 00:00")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("looks_back", [0, 2, 3, 50])
def test_the_looks_of_a_step_at_once_are_the_looks_one_by_one(seed: int, looks_back: int) -> None:
    """``look_all`` takes the usual look of every series of a step without ``look``: on
    rings of every kind (a look a step before, rings empty, old, repeated at this step,
    over an hour's boundary, calls near and past 2**31 and 2**32) and looks at every step
    for a while or not (``looks_back``), its windows and rings are ``look``'s, one series
    at a time."""
    rng = np.random.default_rng(seed)
    step = 1_000 * 12 + int(rng.integers(0, 12))  # any step of an hour
    looks_from = step - looks_back
    series, calls, expected, usual = [], [], [], 0
    for n in range(400):
        s = Series((("api_key",), (f"k{n}",)))
        last = step - int(rng.choice([1, 1, 1, 0, 2, 3, 13, -1]))
        big = int(rng.choice([3, 2**31 - 1, 2**31, 2**32 - 2, 2**32]))
        kept = [int(rng.integers(0, big)) % 2**32 for _ in range(3)]
        hi, lo = (0, 0) if rng.random() < 0.1 else (last << 32 | kept[2], kept[1] << 32 | kept[0])
        s.recent = hi << 64 | lo
        s.set_part(step // 12 * HOUR - HOUR, 0, 0, 5, int(rng.choice([4, 2**32 + 1])))
        now = int(rng.choice([0, 7, big, 2**32 - 1]))
        got, want_hi, want_lo = look(
            hi, lo, step, looks_from, 12, now, lambda h, s=s: s.calls_of(h * HOUR)
        )
        series.append(s)
        calls.append(now)
        expected.append((got, want_hi << 64 | want_lo))
        usual += last == step - 1 and bool(hi or lo) and now < 2**32 - 1
    got = look_all(series, calls, step, looks_from, 12)
    assert [(g, s.recent) for g, s in zip(got, series, strict=True)] == expected
    assert 0 < usual < len(series)  # both paths are taken
