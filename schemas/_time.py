"""Event time: epoch seconds in memory, RFC 3339 text on the wire.

``parse_ts`` states the contract's rule for a timestamp and writes every rejection;
``wire_ts`` is the same function with the common shape first (the per-event hot path);
``format_ts`` renders what every record writes.

>>> parse_ts("2026-11-23T10:00:00Z"), format_ts(1795428000.25)
(1795428000.0, '2026-11-23T10:00:00.250000Z')
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

from ._errors import InvalidEvent, show

__all__ = ["MAX_FUTURE_S", "MAX_TS", "MIN_TS", "format_ts", "parse_ts", "wire_ts"]

#: Accepted event-time range; epoch milliseconds fall far outside it.
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TS = 4_102_444_800.0  # 2100-01-01T00:00:00Z
#: How far after its Kafka record's time an event may be: the ingest dead-letters one
#: later (clock skew or a bogus timestamp), and the SDK refuses it at ``emit()``.
MAX_FUTURE_S = 3600.0


def format_ts(ts: float) -> str:
    """Epoch seconds to RFC 3339 UTC with microseconds, e.g. ``2026-11-23T10:00:00.000000Z``.

    Output records format two timestamps per trace, so this runs often: the
    text up to the second is cached and only the microseconds are formatted
    here, rounded exactly as ``datetime.fromtimestamp`` rounds them (half to
    even, carrying into the second); ``tests/schemas/test_event.py`` holds the
    two to the same text.
    """
    if not 0.0 <= ts < MAX_TS:
        return _format_ts_slow(ts)
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1_000_000)
    if micros >= 1_000_000:
        return f"{_second_text(int(whole) + 1)}{micros - 1_000_000:06d}Z"
    return f"{_second_text(int(whole))}{micros:06d}Z"


def _format_ts_slow(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=8192)
def _second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a whole second since the epoch."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_ts(value: Any) -> float:
    """Event time to epoch seconds: an RFC 3339 string with an offset, or a number."""
    kind = type(value)
    if kind is str:
        text = value
        # datetime.fromisoformat also takes ISO 8601 forms RFC 3339 does not
        # (dates alone, basic format), so check the shape first.
        if (
            len(text) < 19
            or text[4] != "-"
            or text[7] != "-"
            or text[10] not in "Tt "
            or text[13] != ":"
        ):
            raise InvalidEvent(
                "ts", f"must be an RFC 3339 timestamp or epoch seconds, got {show(value)}"
            )
        if text[-1] == "z":
            text = text[:-1] + "Z"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent("ts", f"must be an RFC 3339 timestamp, got {show(value)}") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts", f"must carry a UTC offset (Z or +HH:MM), got {show(value)}")
        ts = parsed.timestamp()
    elif kind is int or kind is float:
        ts = float(value)
        if not math.isfinite(ts):
            raise InvalidEvent("ts", f"must be finite, got {show(value)}")
    elif value is None:
        raise InvalidEvent("ts", "is required")
    elif isinstance(value, datetime):  # a Python caller's (JSON has none)
        if value.tzinfo is None:
            raise InvalidEvent("ts", f"a datetime must carry a timezone, got naive {value}")
        ts = value.timestamp()
    else:
        kind_name = type(value).__name__
        raise InvalidEvent(
            "ts", f"must be an RFC 3339 string or epoch seconds, got {kind_name} {show(value)}"
        )
    if not MIN_TS <= ts < MAX_TS:
        raise InvalidEvent(
            "ts", f"must fall between 2000 and 2100, got {show(value)}{_unit_hint(ts)}"
        )
    return ts


def _unit_hint(ts: float) -> str:
    """The epoch unit a number out of range looks like (OTel spans carry nanoseconds)."""
    for unit, scale in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if MIN_TS * scale <= ts < MAX_TS * scale:
            return f" (epoch {unit}? send seconds)"
    return ""


_fromisoformat = datetime.fromisoformat


def wire_ts(text: str) -> float:
    """``parse_ts`` of a string, the common shape (``...T..:..:..[.fff]Z``) first.

    ``parse_ts`` checks the RFC 3339 shape in Python before ``fromisoformat``;
    a text that passes the stricter test here passes that check too, so the
    result is the same float, for half the cost. Anything else, including
    every error, is ``parse_ts``'s.
    """
    if (
        len(text) >= 20
        and text[-1] == "Z"
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
    ):
        try:
            ts = _fromisoformat(text).timestamp()
        except ValueError:
            return parse_ts(text)
        if MIN_TS <= ts < MAX_TS:
            return ts
    return parse_ts(text)
