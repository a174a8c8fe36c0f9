"""Spend as int16 codes of ``log2(spend)``: 2 bytes a value where a float32 takes 4.

Steps of 1/Q octave, from 2**-64 to 2**64 (5e-20 to 1.8e19 dollars; more is inf, "out of
range", as float32 overflow was). A code reads back within a factor 2**(1/1024) (+-0.07 %)
of the value encoded. ``wow`` keeps its week of hourly buckets this way and ``baseline`` its
daily peaks; each says why that precision is enough for its decisions.
"""

from __future__ import annotations

import math

__all__ = ["EMPTY", "INF", "Q", "decode", "encode"]

Q = 512.0
EMPTY = -32768  # no value (no spend in the bucket); the smallest code, so ``max`` skips it
INF = 32767  # beyond 2**64


def encode(value: float) -> int:
    """Code of ``value`` (> 0): the nearest step of log2; INF past 2**64."""
    if value >= 2.0**64:
        return INF
    return max(-INF, min(INF - 1, round(math.log2(value) * Q)))


def decode(code: int) -> float:
    """Value of a code: NaN for EMPTY, inf for INF."""
    if code == EMPTY:
        return math.nan
    if code == INF:
        return math.inf
    return 2.0 ** (code / Q)
