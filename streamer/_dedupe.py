"""Remember which event ids were counted, for a bounded stretch of event time.

Ids are bucketed by the event's own hour: a duplicate carries the same ``ts``
as its first copy, so it is found in one bucket however late it arrives.
Buckets older than ``horizon_s`` before the watermark are forgotten; an event
that old cannot be checked and the caller must not count it blindly (the
worker sends it to the DLQ instead).
"""

from __future__ import annotations

import math

BUCKET_S = 3600


class Deduper:
    """Seen-id memory for one input partition.

    >>> d = Deduper(horizon_s=7 * 86400)
    >>> d.add("e1", 1795428000.0), d.add("e1", 1795428000.0)
    (True, False)
    """

    def __init__(self, horizon_s: float = 7 * 86400) -> None:
        self.horizon_s = horizon_s
        self.buckets: dict[int, set[str]] = {}
        #: Ids added since the last ``take_new()``: what a checkpoint must persist.
        self.new: dict[int, list[str]] = {}

    def add(self, event_id: str, ts: float) -> bool:
        """Record the id; True if it was new (count the event), False for a duplicate."""
        seen, fresh = self.bucket(int(ts // BUCKET_S))
        if event_id in seen:
            return False
        seen.add(event_id)
        fresh.append(event_id)
        return True

    def bucket(self, number: int) -> tuple[set[str], list[str]]:
        """The seen ids of one hour and the list of its ids not yet persisted.

        For callers that add many ids in a row (``PartitionProcessor.process_batch``):
        both stay valid until the next ``expire()`` or ``take_new()``.
        """
        seen = self.buckets.get(number)
        if seen is None:
            seen = self.buckets[number] = set()
        fresh = self.new.get(number)
        if fresh is None:
            fresh = self.new[number] = []
        return seen, fresh

    def expire(self, watermark: float) -> list[int]:
        """Forget buckets wholly before the horizon; return their numbers."""
        if watermark == -math.inf:
            return []
        oldest = int((watermark - self.horizon_s) // BUCKET_S)
        gone = [b for b in self.buckets if b < oldest]
        for bucket in gone:
            del self.buckets[bucket]
            self.new.pop(bucket, None)
        return gone

    def take_new(self) -> dict[int, list[str]]:
        new, self.new = self.new, {}
        return new

    def __len__(self) -> int:
        return sum(len(s) for s in self.buckets.values())

    def restore(self, buckets: dict[int, list[str]]) -> None:
        self.buckets = {int(b): set(ids) for b, ids in buckets.items()}
        self.new = {}
