"""Logging for long-running commands: one line per problem, not one per retry.

During a broker outage aiokafka logs the same connection error every 100 ms (its retry
backoff), thirty lines a second that bury everything else. ``RepeatFilter`` lets the
first of identical lines through, holds back the repeats for ``window_s`` and then lets
the next one through with how many were held back since when. Lines that differ (two
alerts, two offsets) are never held back, and neither are SpendBrake's own INFO lines: each
says something happened (a partition adopted or released, an alert), and a worker whose
partitions moved twice within the window logged only the first "partition 0 released", as
if it still owned partition 0 after the second rebalance.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

__all__ = ["RepeatFilter", "setup_logging"]


#: A record whose ``extra`` sets this is never held back: its caller says it once already.
NOT_HELD = "spendbrake_not_held"


class RepeatFilter(logging.Filter):
    """Pass a message, then at most one identical message per ``window_s``, with a count."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        #: (logger, level, text) -> (when it last passed, repeats held back since, and the
        #: wall-clock time it passed at, for the count's "since")
        self._seen: dict[tuple[str, int, str], tuple[float, int, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, NOT_HELD, False) or (
            record.levelno < logging.WARNING and record.name.split(".", 1)[0] == "spendbrake"
        ):
            return True  # an event of ours, not a retry loop's
        now = self.clock()
        text = record.getMessage()
        key = (record.name, record.levelno, text)
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._seen[key] = (seen[0], seen[1] + 1, seen[2])
            return False
        if seen is not None and seen[1]:
            since = time.strftime("%H:%M:%S", time.localtime(seen[2]))
            # Counted since that line passed: the next one may come long after the window.
            record.msg = f"{text} (and {seen[1]} more like it held back since {since})"
            record.args = None
        self._seen[key] = (now, 0, record.created)
        if len(self._seen) > 1000:  # forget lines not seen for a window
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
        return True


def setup_logging() -> None:
    """Log to stderr at ``$SPENDBRAKE_LOG_LEVEL`` (default INFO), repeats held back."""
    logging.basicConfig(
        level=os.environ.get("SPENDBRAKE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
