"""Remember which event ids were counted, for a bounded stretch of event time.

One set holds every remembered id, whatever its ``ts``: a copy sent again with its
``ts`` stamped anew (a caller's retry that crosses an hour) is still the same event.
The ids are also listed by the hour of their first copy's ``ts``, which is what bounds
the memory and what snapshots persist (a file per hour): an hour older than
``horizon_s`` before the watermark is forgotten, its ids with it. An event that old
cannot be checked and the caller must not count it blindly (the worker sends it to the
DLQ instead). So a copy is found while its first copy's hour is within the horizon.
"""

from __future__ import annotations

import math

BUCKET_S = 3600


class Deduper:
    """Seen-id memory for one input partition.

    >>> d = Deduper(horizon_s=7 * 86400)
    >>> d.add("e1", 1795428000.0), d.add("e1", 1795428000.0), d.add("e1", 1795431600.0)
    (True, False, False)
    """

    def __init__(self, horizon_s: float = 7 * 86400) -> None:
        self.horizon_s = horizon_s
        #: Every remembered id: the one lookup per event.
        self.seen: set[str] = set()
        #: Hour of the first copy's ``ts`` -> its ids, in the order they came; an id is in
        #: one hour only, so forgetting an hour forgets exactly its ids.
        self.buckets: dict[int, list[str]] = {}
        #: Hour -> how many of its ids were persisted before the last ``take_new()``: the
        #: ids past that are what a checkpoint must persist.
        self.new: dict[int, int] = {}
        #: The oldest hour held (or more), so that ``expire``, called at every flush (every
        #: step of replay), reads the hours only when one is due.
        self._oldest: float = math.inf

    def add(self, event_id: str, ts: float) -> bool:
        """Record the id; True if it was new (count the event), False for a duplicate."""
        seen = self.seen
        if event_id in seen:
            return False
        seen.add(event_id)
        self.bucket(int(ts // BUCKET_S)).append(event_id)
        return True

    def bucket(self, number: int) -> list[str]:
        """The ids of one hour, for a caller that adds many in a row
        (``PartitionProcessor.process_many``): append an id to it after adding it to
        ``seen``. It stays valid until the next ``expire()``."""
        ids = self.buckets.get(number)
        if ids is None:
            ids = self.buckets[number] = []
            if number < self._oldest:
                self._oldest = number
        if number not in self.new:
            self.new[number] = len(ids)
        return ids

    def expire(self, watermark: float) -> list[int]:
        """Forget buckets wholly before the horizon; return their numbers."""
        if watermark == -math.inf:
            return []
        oldest = int((watermark - self.horizon_s) // BUCKET_S)
        if self._oldest >= oldest:
            return []
        gone = [b for b in self.buckets if b < oldest]
        for bucket in gone:
            self.seen.difference_update(self.buckets.pop(bucket))
            self.new.pop(bucket, None)
        self._oldest = min(self.buckets, default=math.inf)
        return gone

    def take_new(self) -> dict[int, list[str]]:
        """The ids added since the last call, by hour: what a checkpoint appends."""
        new = {b: self.buckets[b][start:] for b, start in self.new.items()}
        self.new = {}
        return new

    def __len__(self) -> int:
        return len(self.seen)

    def restore(self, buckets: dict[int, list[str]]) -> None:
        """The persisted ids by hour (``PartitionStore.load``).

        State written before one set held every id may list an id under two hours (its
        copies were counted twice then): it is kept under its latest, so it is remembered
        for as long as any of its files is.
        """
        self.seen = seen = set()
        self.buckets = {}
        for bucket, ids in sorted(((int(b), i) for b, i in buckets.items()), reverse=True):
            if seen.isdisjoint(ids):
                size = len(seen)
                seen.update(ids)
                kept = list(ids) if len(seen) - size == len(ids) else list(dict.fromkeys(ids))
            else:  # an id also under a later hour: keep it there
                kept = [i for i in dict.fromkeys(ids) if i not in seen]
                seen.update(kept)
            self.buckets[bucket] = kept
        self.new = {}
        self._oldest = min(self.buckets, default=math.inf)
