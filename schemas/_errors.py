"""The error tree every SpendBrake package raises from.

    SpendBrakeError
    ├── InvalidEvent(field, reason)   a usage event broke contract v1
    ├── ConfigError(path, reason)     an operator config value is wrong
    └── StateUnreadable(path, reason, way_out)
                                      a stage's saved state cannot be read: it refuses to start

Messages are one line, ``field: reason``, so they fit a DLQ record, a log line
and a terminal without a traceback.
"""

from __future__ import annotations

import orjson


class SpendBrakeError(Exception):
    """Root of every error SpendBrake raises on purpose."""


class InvalidEvent(SpendBrakeError):
    """A usage event that cannot be counted as sent.

    ``field`` names the offending wire field (``payload`` for problems with the
    record as a whole: size, encoding, JSON syntax).
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ConfigError(SpendBrakeError):
    """An operator config value that cannot be used; ``path`` is like ``budgets[2].alert_at[1]``."""

    def __init__(self, path: str, reason: str, location: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.location = location
        prefix = f"{location}: " if location else ""
        super().__init__(f"{prefix}{path}: {reason}" if path else f"{prefix}{reason}")


class StateUnreadable(SpendBrakeError):
    """A saved state file a stage needs is corrupt, truncated or missing a part.

    Starting without it would silently drop or double count what it held, so the stage
    refuses to start; ``way_out`` tells the operator what to do instead.
    """

    def __init__(self, path: object, reason: str, way_out: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.way_out = way_out
        super().__init__(f"{self.path}: unreadable state ({reason}); {way_out}")


class ValueAt(ValueError):
    """A config validator's ``ValueError`` about one field below the model it checks.

    A model-level check (one rule against another) would otherwise point at the whole
    list; the loader appends ``loc`` so the message names ``keys.rules[3].api_key`` and its
    line.
    """

    def __init__(self, loc: tuple[str | int, ...], reason: str) -> None:
        self.loc = loc
        super().__init__(reason)


def show(value: object, limit: int = 60) -> str:
    """Render a bad value for an error message: JSON-ish, and short."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
