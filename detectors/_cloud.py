"""``cloud_sigma``: trailing 30-day mean + 3 sigma, the rule cloud budget alerts use.

Kept as an evaluation baseline: it ignores the weekly shape, so busy weekday afternoons
look anomalous and quiet nights hide real surges. The 30 days are kept as daily
(count, sum, sum of squares) buckets (three float64 arrays), so state stays ~0.8 KB.

>>> d = CloudSigma(min_n=24)
>>> vs = [d.update(h * 3600.0, 10.0 + h % 2) for h in range(48)]
>>> sum(v.is_anomaly for v in vs), d.update(48 * 3600.0, 30.0).is_anomaly
(0, True)
"""

from __future__ import annotations

import math
from array import array

from spendbrake.detectors._base import (
    Detector,
    Verdict,
    check,
    ignored,
    ratio_score,
    register,
    usable,
    usd,
)

__all__ = ["CloudSigma"]

_DAY_S = 86400.0


@register("cloud_sigma")
class CloudSigma(Detector):
    """Alert when a value exceeds the trailing ``days`` mean by ``k`` standard deviations.

    Parameters
    ----------
    days
        Trailing days kept (30).
    k
        Sigmas over the mean that alert (3).
    min_n
        Values needed before any alert (168: a week of hours).
    """

    def __init__(self, days: int = 30, k: float = 3.0, min_n: int = 168) -> None:
        check("days", days, isinstance(days, int) and days >= 1, "an int >= 1")
        check("k", k, k > 0, "> 0")
        check("min_n", min_n, min_n >= 2, ">= 2")
        self.days = days
        self.k = k
        self.min_n = min_n
        self._n = array("d", [0.0]) * days
        self._s = array("d", [0.0]) * days
        self._ss = array("d", [0.0]) * days
        self._head: int | None = None

    state_fields = ("_n", "_s", "_ss", "_head")

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score ``value`` against the trailing days' mean and sigma, then add it."""
        if not usable(ts, value):
            return ignored(value)
        value = float(value)
        day = math.floor(ts / _DAY_S)
        if self._head is None:
            self._head = day
        if day > self._head:
            for j in range(self._head + 1, min(day, self._head + self.days) + 1):
                i = j % self.days
                self._n[i] = self._s[i] = self._ss[i] = 0.0
            self._head = day
        n, s, ss = sum(self._n), sum(self._s), sum(self._ss)
        verdict = Verdict(0.0, False, None, value, "not enough history for mean + sigma")
        if n >= self.min_n:
            mean = s / n
            std = math.sqrt(max(0.0, ss / n - mean * mean))
            z = (value - mean) / std if std > 0 else (math.inf if value > mean else 0.0)
            alert = z >= self.k
            word = "over" if alert else "within"
            verdict = Verdict(
                ratio_score(z / self.k),
                alert,
                mean,
                value,
                f"{usd(value)} vs 30-day mean {usd(mean)} ({z:.1f} sigma, {word} {self.k:g})",
            )
        if day > self._head - self.days:  # values older than the ring are not learned
            i = day % self.days
            self._n[i] += 1.0
            self._s[i] += value
            self._ss[i] += value * value
        return verdict
