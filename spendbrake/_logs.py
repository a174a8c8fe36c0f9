"""Logging for long-running commands: one line per problem, not one per retry.

During a broker outage aiokafka logs the same connection error every 100 ms (its retry
backoff), thirty lines a second that bury everything else. ``RepeatFilter`` lets the
first of identical lines through, holds back the repeats for ``window_s`` and then lets
the next one through with how many were held back. Lines that differ (two alerts, two
offsets) are never held back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

__all__ = ["RepeatFilter", "setup_logging"]


class RepeatFilter(logging.Filter):
    """Pass a message, then at most one identical message per ``window_s``, with a count."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        #: (logger, level, text) -> (when it last passed, repeats held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        text = record.getMessage()
        key = (record.name, record.levelno, text)
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{text} (and {seen[1]} more like it in the last {self.window_s:g}s)"
            record.args = None
        self._seen[key] = (now, 0)
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
