"""A stage's saved input offsets against what their partitions still hold.

Every stage keeps its input offsets with its state, not in the consumer group, and seeks to
them when it takes a partition (``Stage.seek``). Two things leave a saved offset outside
the partition, and left to the client neither is said:

- **below the log start**: retention (or DeleteRecords) removed records the stage never
  read, while it was down longer than the topic's retention. Apache Kafka answers the fetch
  with OFFSET_OUT_OF_RANGE and aiokafka resets to ``auto_offset_reset`` (earliest here) with
  an INFO line: the records in between were never counted, and nothing says so.
- **beyond the log end**: the topic was deleted and re-created (a restart of the embedded
  broker does this: Tansu keeps topics in memory only), or the partition lost records it
  had acknowledged (an unclean leader election). Apache Kafka answers OFFSET_OUT_OF_RANGE
  and aiokafka resets to earliest, again with an INFO line. Tansu answers with no records
  and no error (measured): the consumer waits at the saved offset, and the re-created
  topic's records below it are never read.

What the stage does instead, in both cases, is resume at the log start, say so in a
warning naming the topic, partition, offsets and what follows, and count it
(``spendbrake_saved_offsets_out_of_range_total``, ``spendbrake_records_deleted_unread_total``):

- below the start, the records in between are gone. Stopping would not bring them back
  (they can only be sent again by their producers), and retention would take more
  meanwhile; the oldest record left is the first one not yet lost.
- beyond the end, the records the partition now holds are read from its start. On a
  re-created topic none of them was read before: resuming anywhere later skips them.
  On a partition that lost its tail, they were read before, and reading them again
  counts nothing twice: the ingest drops events it already counted by ``event_id`` (its
  dedupe memory covers 7 days), the detect and store stages take keyed absolute values
  (rollups), and the act stage skips alerts whose record key it has seen.

A saved offset inside the partition cannot tell a re-created topic that has already grown
past it: offsets carry no topic identity, so those records below it are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ``OffsetGap.reason``: the label values of the metrics.
BELOW_LOG_START = "below_log_start"
BEYOND_LOG_END = "beyond_log_end"


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """A saved offset outside its partition: ``saved`` against ``[log_start, log_end]``."""

    reason: Literal["below_log_start", "beyond_log_end"]
    saved: int
    log_start: int
    log_end: int

    @property
    def resume_at(self) -> int:
        """Where the stage reads on from: the oldest record the partition holds."""
        return self.log_start

    @property
    def lost(self) -> int:
        """Records deleted before the stage read them (0 beyond the end: unknown there)."""
        return self.log_start - self.saved if self.reason == BELOW_LOG_START else 0

    def describe(self, stage: str, topic: str, partition: int) -> str:
        """One warning line: where, the offsets, what was lost and what happens now."""
        where = f"{stage}: {topic} partition {partition}: saved offset {self.saved:,}"
        if self.reason == BELOW_LOG_START:
            return (
                f"{where} is below the log start {self.log_start:,} (end {self.log_end:,}): "
                f"{self.lost:,} record(s) were deleted (retention) before this stage read "
                f"them and are not counted; reading on from {self.log_start:,}"
            )
        return (
            f"{where} is beyond the log end {self.log_end:,} (start {self.log_start:,}): the "
            "topic was deleted and re-created (a restart of the embedded broker does this) "
            "or lost records it had acknowledged; reading its "
            f"{self.log_end - self.log_start:,} record(s) from offset {self.log_start:,} "
            "(records read before are recognised: events by event_id, rollups and alerts "
            "by key)"
        )


def offset_gap(saved: int, log_start: int, log_end: int) -> OffsetGap | None:
    """The gap between a saved offset and what its partition holds, or None if there is none.

    ``log_start`` and ``log_end`` are the partition's ``beginning_offsets`` and
    ``end_offsets``: the first offset it holds and the next it will write. A saved offset
    equal to the end is the usual case of a stage that had read everything.

    >>> offset_gap(120, 100, 900) is None
    True
    >>> offset_gap(900, 100, 900) is None
    True
    >>> gap = offset_gap(40, 100, 900)
    >>> gap.reason, gap.lost, gap.resume_at
    ('below_log_start', 60, 100)
    >>> gap = offset_gap(500, 0, 3)
    >>> gap.reason, gap.lost, gap.resume_at
    ('beyond_log_end', 0, 0)
    """
    if saved < log_start:
        return OffsetGap(BELOW_LOG_START, saved, log_start, log_end)
    if saved > log_end:
        return OffsetGap(BEYOND_LOG_END, saved, log_start, log_end)
    return None
