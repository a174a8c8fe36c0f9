"""``wow_naive``: the plain week-over-week rule, kept as a baseline for evaluation.

Alerts on every window whose trailing 24 h is over ``1 + rise`` times the same 24 h a week
earlier: no dollar floor, no hysteresis. It shows what the floor and hysteresis of ``wow``
buy (the same ring and gap handling are reused, so only those two differ).

>>> d = WowNaive()
>>> _ = [d.update(h * 3600.0, 0.01) for h in range(192)]
>>> sum(d.update(h * 3600.0, 0.02).is_anomaly for h in range(192, 216))
17
"""

from __future__ import annotations

from spendbrake.detectors._base import register
from spendbrake.detectors._wow import WeekOverWeek

__all__ = ["WowNaive"]


@register("wow_naive")
class WowNaive(WeekOverWeek):
    """Trailing ``window_s`` over ``1 + rise`` times last week's: alert, every time."""

    __slots__ = ()
    _restored_z = 0.0  # an old snapshot stays the plain rule

    def __init__(
        self, window_s: float = 86400.0, period_s: float = 3600.0, rise: float = 0.30
    ) -> None:
        super().__init__(
            window_s=window_s,
            period_s=period_s,
            rise=rise,
            min_usd=0.0,
            cooldown_s=0.0,
            trim=0,
            z=0.0,
        )
