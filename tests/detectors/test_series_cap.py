"""A flood of distinct attribution values (customers, keys) is bounded by
``limits.series_per_set``: past it, series are watched together as ``(other)``, still
counted exactly, with one operator alert a day."""

from __future__ import annotations

from spendbrake.detectors import SpendWatch
from spendbrake.schemas import NUSD, Config, RollupRecord

HOUR = 3600
T0 = 1_790_553_600  # Monday 2026-09-28 00:00 UTC


Rec = RollupRecord  # the streamer's own record, as the detect stage decodes it


def _customer(name: str, hour: int, cost_nusd: int, partition: int = 0) -> Rec:
    return Rec(("customer",), (name,), HOUR, hour, partition, 0, (cost_nusd, 2, 0, 0, 0, 0, 0, 0))


def _minute(at: int) -> Rec:
    return Rec((), (), 60, at, 0, 0, (0, 0, 0, 0, 0, 0, 0, 0))


def _watch(cap: int = 10) -> SpendWatch:
    config = Config.model_validate(
        {"dimensions": [["customer"]], "limits": {"series_per_set": cap}}
    )
    return SpendWatch(config)


def test_series_past_the_cap_are_one_other_series_counted_exactly() -> None:
    watch = _watch()
    records = [_customer(f"c{i}", T0, (i + 1) * NUSD) for i in range(30)]
    watch.observe(records)
    watch.observe(records[15:])  # re-sent absolute records replace, never add
    watch.observe([_customer("c29", T0, 100 * NUSD), _customer("c29", T0, 1 * NUSD, 1)])
    customers = {values for dims, values in watch.series if dims == ("customer",)}
    assert len(customers) == 11 and ("(other)",) in customers
    other = watch.series[(("customer",), ("(other)",))]
    # c10 .. c28 as first sent, c29 replaced by $100 in partition 0 plus $1 in partition 1.
    want = sum(range(11, 30)) * NUSD + 101 * NUSD
    assert other.total(T0) == (want, 2 * 19 + 4)
    assert watch.folded_series() == 20
    # Folded together per block (``SeriesBook.fold``): the same series twice in one block,
    # the last write wins there too.
    watch.observe([_customer("c28", T0, 50 * NUSD), _customer("c28", T0, 2 * NUSD)])
    assert other.total(T0) == (want - 29 * NUSD + 2 * NUSD, 2 * 19 + 4)


def test_one_operator_alert_a_day_and_the_cap_frees_up() -> None:
    watch = _watch()
    alerts = []
    for day in range(3):
        hour = T0 + day * 86400
        watch.observe([_customer(f"d{day}-{i}", hour, NUSD) for i in range(25)])
        watch.observe([_minute(hour + 2 * HOUR)])
        alerts += [alert for alert, _ in watch.advance()]
    caps = [a for a in alerts if a.kind == "series_cap"]
    assert [a.id for a in caps] == [
        f"series-cap/customer/{T0}",
        f"series-cap/customer/{T0 + 86400}",
        f"series-cap/customer/{T0 + 2 * 86400}",
    ]
    assert caps[0].scope == {"customer": "(other)"} and caps[0].action == "alert"
    assert "limits.series_per_set" in caps[0].reason
    # A restored watch counts its series again (the count is derived, not saved).
    again = _watch()
    again.restore(watch.snapshot())
    again.observe([_customer("new", T0 + 3 * 86400, NUSD)])
    assert (("customer",), ("new",)) not in again.series


def test_a_callers_own_other_value_is_folded_not_overwriting() -> None:
    watch = _watch(cap=10)
    watch.observe([_customer(f"c{i}", T0, NUSD) for i in range(12)])  # two folded: $2
    watch.observe([_customer("(other)", T0, 5 * NUSD)])
    other = watch.series[(("customer",), ("(other)",))]
    assert other.total(T0)[0] == 7 * NUSD
