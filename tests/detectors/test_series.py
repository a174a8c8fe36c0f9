"""A series' open hours: the rows ``Series.state`` keeps, against a plain dict of the same."""

from __future__ import annotations

import random

from spendbrake.detectors._series import HEAD, Series

_KEY = (("api_key",), ("k",))


def _hours_in_order(series: Series) -> bool:
    hours = series.state[HEAD::5]
    return list(hours) == sorted(hours)


def test_a_backlog_of_open_hours_in_any_order_sums_and_closes_exactly() -> None:
    """A detect stage catching up holds hundreds of open hours a series, set in any order
    (partitions interleave, corrections come late): every part, total and close must be
    what a dict of the same records says, and the rows stay in hour order."""
    rng = random.Random(5)
    series = Series(_KEY)
    truth: dict[tuple[int, int, int], tuple[int, int]] = {}
    hours = [h * 3600 for h in range(300)]
    for _ in range(4000):
        part = (rng.choice(hours), rng.randrange(4), rng.randrange(2))
        value = (rng.randrange(10**9), rng.randrange(100))
        changed = series.set_part(*part, *value)
        assert changed == (truth.get(part) != value)
        truth[part] = value
    assert _hours_in_order(series)
    assert sorted(series.part_items()) == sorted(truth.items())
    for part, value in rng.sample(sorted(truth.items()), 50):
        assert series.part(*part) == value
    for hour in sorted(rng.sample(hours, 100)):
        want = [v for (h, _, _), v in truth.items() if h == hour]
        expected = (sum(c for c, _ in want), sum(n for _, n in want))
        assert series.total(hour) == expected
        assert series.close_hour(hour) == expected
        assert series.closed == (hour, *expected)
        truth = {k: v for k, v in truth.items() if k[0] != hour}
        assert series.total(hour) == (0, 0)
    assert sorted(series.part_items()) == sorted(truth.items())
    assert _hours_in_order(series)


def test_a_part_past_int64_is_kept_exact_wherever_it_lands() -> None:
    series = Series(_KEY)
    series.set_part(7200, 0, 0, 5, 1)
    series.set_part(3600, 0, 0, 2**70, 2)  # before the row there: inserted, as a list
    series.set_part(3600, 1, 0, 1, 1)
    assert series.total(3600) == (2**70 + 1, 3)
    assert series.close_hour(3600) == (2**70 + 1, 3)
    assert series.part_items() == [((7200, 0, 0), (5, 1))]


def test_rows_restored_in_arrival_order_are_put_in_hour_order() -> None:
    """A snapshot written before rows were kept in hour order holds them as they came."""
    rows = [7200, 0, 0, 10, 1, 3600, 1, 0, 20, 2, 7200, 1, 0, 30, 3, 3600, 0, 0, 40, 4]
    series = Series(_KEY)
    series.parts = rows
    assert _hours_in_order(series)
    assert series.total(3600) == (60, 6) and series.total(7200) == (40, 4)
    # Each hour's rows keep their order.
    assert [k for k, _ in series.part_items()] == [
        (3600, 1, 0),
        (3600, 0, 0),
        (7200, 0, 0),
        (7200, 1, 0),
    ]
