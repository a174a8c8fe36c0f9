"""A stage's saved offsets checked against what the partition holds when it takes it
(``spendbrake.stages.offsets``): records deleted unread, a topic deleted and re-created.

Tansu has no retention and no DeleteRecords, so "below the log start" is tested on the
numbers and on the ingest's adoption with a consumer that reports a log start; "beyond
the end" end to end on the broker in ``tests/streamer/test_worker.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spendbrake.stages.offsets import BELOW_LOG_START, BEYOND_LOG_END, offset_gap
from tests.stages.ingest_fakes import TOPIC, ingest_stage, records, saved_offset, tp, until


@pytest.mark.parametrize(
    ("saved", "start", "end"),
    [(0, 0, 0), (0, 0, 10), (10, 0, 10), (5, 5, 5), (7, 5, 10)],
)
def test_a_saved_offset_inside_the_partition_is_no_gap(saved: int, start: int, end: int) -> None:
    assert offset_gap(saved, start, end) is None


def test_below_the_log_start_the_records_in_between_are_lost_and_reading_resumes_there() -> None:
    gap = offset_gap(120, 500, 900)
    assert gap is not None
    assert (gap.reason, gap.lost, gap.resume_at) == (BELOW_LOG_START, 380, 500)
    text = gap.describe("ingest", "spend.events", 2)
    assert text.startswith("ingest: spend.events partition 2: saved offset 120 ")
    assert "below the log start 500 (end 900): 380 record(s) were deleted" in text
    # Every record deleted, the partition empty: all of them lost, none left to read.
    emptied = offset_gap(120, 900, 900)
    assert emptied is not None and (emptied.lost, emptied.resume_at) == (780, 900)


def test_beyond_the_log_end_the_partition_is_read_from_its_start() -> None:
    gap = offset_gap(501, 0, 3)
    assert gap is not None
    assert (gap.reason, gap.lost, gap.resume_at) == (BEYOND_LOG_END, 0, 0)
    text = gap.describe("detect", "spend.rollups", 0)
    assert "saved offset 501 is beyond the log end 3 (start 0)" in text
    assert "deleted and re-created" in text and "its 3 record(s) from offset 0" in text


async def test_an_adopted_partition_whose_records_were_deleted_unread_says_so_and_resumes_at_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its snapshot is at offset 30; retention has since deleted up to offset 100. The
    stage used to seek to 30 and leave the rest to aiokafka (a reset to the oldest record,
    logged at INFO): 70 events gone uncounted, nothing said. Now it says so, counts them,
    reads on from 100, and its next save holds 100."""
    caplog.set_level(logging.WARNING)
    first, _, _ = ingest_stage(tmp_path)
    await first.adopt([tp(0)])
    await until(lambda: 0 in first.processors)
    first.processors[0].process_batch(records(0, 30))
    await first.revoke([tp(0)])  # saves the snapshot at 30
    assert saved_offset(tmp_path, 0) == 30

    stage, _, consumer = ingest_stage(tmp_path)
    consumer.log_starts[tp(0)], consumer.log_ends[tp(0)] = 100, 150
    await stage.adopt([tp(0)])
    await until(lambda: 0 in stage.processors)
    assert consumer.positions[tp(0)] == 100 and not consumer.paused
    assert f"ingest: {TOPIC} partition 0: saved offset 30 is below the log start 100" in caplog.text
    assert "70 record(s) were deleted (retention) before this stage read them" in caplog.text
    sample = stage.offset_metrics.registry.get_sample_value
    labels = {"stage": "ingest", "topic": TOPIC, "partition": "0"}
    assert sample("spendbrake_records_deleted_unread_total", labels) == 70
    reason = {**labels, "reason": BELOW_LOG_START}
    assert sample("spendbrake_saved_offsets_out_of_range_total", reason) == 1
    await stage.revoke([tp(0)])
    assert saved_offset(tmp_path, 0) == 100  # a restart does not report the gap again
