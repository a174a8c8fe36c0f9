"""Units and the order of a rollup's metrics: defined here once for every package.

Money is counted in integer nano-dollars (10⁻⁹ USD): a month of calls sums exactly, where
float dollars would drift in the last digits and disagree between a replay and the store.

>>> to_nusd(0.0125), METRICS[COST], METRICS[CALLS]
(12500000, 'cost_nusd', 'calls')
"""

from __future__ import annotations

#: Nano-dollars in a dollar.
NUSD = 1_000_000_000
#: A rollup's metrics, in the order its records, the store's columns and the detectors read.
METRICS: tuple[str, ...] = (
    "cost_nusd",
    "calls",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "unpriced_calls",
)
#: Positions in ``METRICS`` that code outside the rollup reads by name.
COST, CALLS = METRICS.index("cost_nusd"), METRICS.index("calls")


def to_nusd(cost_usd: float) -> int:
    return round(cost_usd * NUSD)
