"""Synthetic hourly spend for detector tests: weekly shape, log-normal noise, bursts.

Everything is drawn from a seeded ``numpy.random.Generator`` so every run sees the same
series. ``T0`` is a Monday 00:00 UTC, so hour ``h`` of the series is hour-of-week ``h % 168``.
"""

from __future__ import annotations

import numpy as np

from spendbrake.detectors import Detector, Verdict

T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday
HOUR = 3600.0
WEEK_H = 168


def shape(hours: np.ndarray) -> np.ndarray:
    """Diurnal curve (peak mid-afternoon UTC, low at night), weekends at 40 %."""
    hod = hours % 24
    dow = (hours // 24) % 7
    diurnal = 0.35 + 0.65 * np.exp(-(((hod - 15.0) / 4.5) ** 2))
    weekday = np.where(dow >= 5, 0.4, 1.0)
    return diurnal * weekday


def spend(
    weeks: float,
    seed: int = 7,
    base_usd: float = 60.0,
    sigma: float = 0.3,
    bursts_per_week: int = 3,
) -> np.ndarray:
    """Hourly spend: ``base_usd`` x shape x lognormal noise, plus legit x3 bursts of 1-2 h."""
    rng = np.random.default_rng(seed)
    n = int(weeks * WEEK_H)
    hours = np.arange(n)
    y = base_usd * shape(hours) * rng.lognormal(0.0, sigma, n)
    # Legit bursts never overlap (that would be x9): one per stretch of the series.
    n_bursts = int(bursts_per_week * weeks)
    for j in range(n_bursts):
        lo, hi = j * n // n_bursts, (j + 1) * n // n_bursts - 2
        start = int(rng.integers(lo, hi))
        y[start : start + int(rng.integers(1, 3))] *= 3.0
    return y


def times(n: int) -> np.ndarray:
    """Epoch seconds of ``n`` consecutive hourly windows from ``T0``."""
    return T0 + HOUR * np.arange(n)


def run(det: Detector, ys: np.ndarray, start_h: int = 0) -> list[Verdict]:
    """Feed ``ys`` hour by hour (from hour ``start_h``); return the verdicts."""
    return [det.update(T0 + HOUR * (start_h + i), float(v)) for i, v in enumerate(ys)]
