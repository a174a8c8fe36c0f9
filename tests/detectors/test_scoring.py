"""The early look's choice of what to peek at (``detectors._scoring``)."""

from __future__ import annotations

from spendbrake.detectors import make_detector
from spendbrake.detectors._scoring import NUSD, _worth_peeking
from spendbrake.schemas import DetectorConfig


def test_a_rate_judging_detector_is_peeked_at_before_the_hour_outspends_the_last() -> None:
    # A loop that began at 12:50 made 12:00 dear ($100); by 13:15 it has spent $40, a
    # quarter of the hour at 1.6x the previous hour's rate. A detector that judges the part
    # seen as a rate (baseline counting calls) looks now; one that judges the hour's sum
    # against the whole hour's waits until the hour passes $100, as it did.
    cfg = DetectorConfig(kind="baseline", metric="cost_usd")
    closed = (100 * NUSD, 50)  # the hour before's cost_nusd and calls
    counted = make_detector("baseline", count_x=8.0)
    assert counted.peeks_partial
    assert _worth_peeking(cfg, counted, 40.0, 20, *closed, seen=0.25)
    assert not _worth_peeking(cfg, counted, 20.0, 10, *closed, seen=0.25)
    other = make_detector("cloud_sigma")
    assert not other.peeks_partial
    assert not _worth_peeking(cfg, other, 40.0, 20, *closed, seen=0.25)
