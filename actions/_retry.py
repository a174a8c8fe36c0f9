"""Retry spacing shared by every outbound action (Slack and gateway alike).

Pure: the caller owns the schedule (attempt numbers survive restarts in its durable
state) and the clock; this module only says how long to wait before the next attempt.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_RNG = random.Random()

# 2**64 x any sane base is far past any cap; stop growing the exponent there so a huge
# attempt count never overflows a float.
_MAX_EXPONENT = 64


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 60.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    "Full jitter" exponential backoff (AWS Architecture Blog, *Exponential Backoff And
    Jitter*): uniform in ``[0, min(cap, base * 2**attempt)]``. Jitter spreads the retries
    of many stalled actions (one runaway pausing twenty keys) so they do not hit a
    recovering gateway or Slack in lockstep; full jitter does the least total work of
    the variants the article measures. A server's ``Retry-After``, when given, should
    win over this value.

    ``rng`` makes the delay repeatable (tests, replay); by default a private
    ``random.Random`` is used.

    >>> backoff_delay(0, base=1.0, rng=random.Random(7)) <= 1.0
    True
    >>> backoff_delay(10, rng=random.Random(7)) == backoff_delay(10, rng=random.Random(7))
    True
    """
    if attempt < 0:
        raise ValueError(f"attempt: must be >= 0, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap: must be >= 0, got base={base:g} cap={cap:g}")
    ceiling = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))
    return (rng or _RNG).uniform(0.0, ceiling)
