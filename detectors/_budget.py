"""Budgets: threshold alerts, a hard stop, seasonal projection and burn rate, as pure state.

Why: a budget is a promise about a calendar period ("$5,000 a month for team search"),
so it is counted per local calendar day, ISO week or month in the budget's IANA time
zone, and each threshold must page exactly once per period, also across restarts and
replays. The tracker is fed *absolute* spend per UTC hour (``set_hour``) and per minute
(``set_minute``), so a rollup re-sent as the hour fills, a late correction or a replay
after a restart replaces a value instead of adding it twice. ``evaluate(now)`` takes the
event-time watermark (never a wall clock) and returns only verdicts newly due.

Beyond thresholds it answers two earlier questions. *Projection*: will the period
overrun? AI spend is weekly-shaped, so the forecast is the spend so far plus, for each
remaining hour, the learned mean spend of that hour-of-week; a weekday-heavy first week
does not predict a month full of weekends. *Burn rate*: is the budget being consumed
many times faster than the even pace (amount / period length)? As in SRE multi-window
burn-rate alerting, a long window shows it is real and a short one that it is still
happening: fast burn (1 h and 5 min at >= 14.4x) pages, slow burn (6 h and 30 min at
>= 6x) warns.

Hours are UTC hours. In zones with :30 or :45 offsets (India, Nepal, parts of Australia) a
period boundary falls inside a UTC hour: that hour is split by its minutes, the part from
the boundary on counting in the new period and the rest in the old one, so a day in
Asia/Kolkata starts at 00:00 IST, not at 00:30. The boundary hour's minutes are kept for
the whole period. Without them (a snapshot from before 2026-12-04, or no minute rollups)
the hour counts in the period its start falls in.

Spend is held in nano-dollars (ints, the rollups' unit), and the sums a check reads (the
period-to-date spend, the previous period's, each burn window's) are running totals that a
replaced hour or minute moves by new - old: exact whatever order the values came in, and a
check costs the same on the month's last day as on its first.

Late events: an hour's spend can be corrected hours after it ended, also after its period
ended (events of 23:10 arriving at 00:40 belong to yesterday). The previous period's hours
and fired thresholds are kept for ``grace_s`` after its end, corrections to it still count,
and a threshold they cross fires once for THAT period, as an alert: a hard stop crossed
after the end is not applied (the period is over, a pause would be resumed at once).

>>> b = BudgetTracker("search", 1000.0, period="day")
>>> day = 1_767_225_600.0  # 2026-01-01 00:00 UTC
>>> b.set_hour(day, 600.0)
>>> [(v.kind, v.action, v.threshold) for v in b.evaluate(day + 3600)]
[('budget', 'alert', 0.5)]
>>> b.set_hour(day + 3600, 700.0)
>>> [(v.action, v.threshold, v.severity) for v in b.evaluate(day + 7200)]
[('alert', 0.8, 'warning'), ('alert', 1.0, 'critical'), ('pause', 1.2, 'critical')]
>>> [v.action for v in b.evaluate(day + 86400)]
['resume']
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import repeat, takewhile
from numbers import Integral, Real
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spendbrake.detectors._base import check, usable, usd
from spendbrake.schemas import NUSD, STOP_PAUSING

__all__ = ["BudgetTracker", "BudgetVerdict"]

HOUR_S = 3600.0
WEEK_H = 168
GRACE_S = 600.0  # an hour is final (learned) once the watermark is 10 min past its end
PERIOD_GRACE_S = 6 * 3600.0  # default: the previous period takes corrections for 6 h
#: A burn rule: which, factor, long and short window (minutes), severity.
_Rule = tuple[str, float, int, int, str]
BURN_KEEP_MIN = 360  # minutes kept for burn windows: the 6 h slow window
BURN_WINDOWS_MIN = (5, 30, 60, 360)  # the fast rule's short and long window, the slow rule's
LEARN_MAX_H = 4 * WEEK_H  # after a longer gap, learning restarts from the last 4 weeks
SLOT_ALPHA = 0.25  # per hour-of-week EW weight: about a month of weeks
MEAN_ALPHA = 1.0 / WEEK_H  # trailing mean hourly rate: about a week of hours
#: A burn alert re-arms once its long window is under this share of its factor: a runaway
#: whose bursty minutes keep its hour around the factor (15x on average, dipping to 14x)
#: is one page, not one every quarter of an hour for as long as it runs.
REARM = 0.5
# datetime covers years 1..9999; stay clear of both ends so month arithmetic never overflows.
TS_MIN, TS_MAX = 0.0, 253_000_000_000.0
_PERIODS = ("day", "week", "month")
_ADJ = {"day": "daily", "week": "weekly", "month": "monthly"}
_SNAPSHOT_VERSION = 2  # 2 adds the previous period (1 is still read)
_LATE = "crossed after the period ended, by late events"


def _slot(hour: int) -> int:
    """UTC hour-of-week, Monday 00:00 = 0 (hour 0 of the epoch was a Thursday)."""
    return (hour + 72) % WEEK_H


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _cost(cost: object) -> bool:
    """A spend value we accept: a real number (not a bool), finite, >= 0."""
    return isinstance(cost, Real) and not isinstance(cost, bool) and usable(0.0, float(cost))


def _nusd(cost: object) -> bool:
    """A spend value in nano-dollars we accept: an integer (not a bool), >= 0."""
    if type(cost) is int:  # what rollups carry: no walk through the ABCs
        return cost >= 0
    return isinstance(cost, Integral) and not isinstance(cost, bool) and cost >= 0


def _nusd_of(cost_usd: float) -> int:
    """Dollars as the nano-dollars they were made of: exact for a value written as
    ``nusd / NUSD`` up to 2**51 nano-dollars (about $2.2M), where the float's own rounding
    stays under half a nano-dollar."""
    return round(float(cost_usd) * NUSD)


def _in_range(ts: object) -> bool:
    if type(ts) is float:  # the usual case, without the ABC check
        return TS_MIN <= ts <= TS_MAX
    return isinstance(ts, Real) and not isinstance(ts, bool) and TS_MIN <= ts <= TS_MAX


def _severity(fraction: float) -> str:
    return "info" if fraction < 0.8 else "warning" if fraction < 1.0 else "critical"


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """One budget event newly due: a threshold, a pause or resume, a projection, a burn.

    ``threshold`` is the budget fraction crossed (kind ``budget``), the burn factor (kind
    ``burn_rate``) or ``None`` (projection, resume). ``observed_usd`` is the period-to-date
    spend, or the spend in the long burn window; ``expected_usd`` is ``amount * threshold``,
    the projected period-end spend, or the even-pace spend of the burn window.
    ``window_start``/``window_end`` and ``period_start`` are epoch seconds. ``at``: the event
    time it is dated, when later than the watermark it was evaluated at (``counted_to``).
    """

    kind: str
    action: str
    severity: str
    threshold: float | None
    observed_usd: float
    expected_usd: float | None
    window_start: float
    window_end: float
    period_start: float
    reason: str
    at: float | None = None


class BudgetTracker:
    """Spend of one budget's scope against its amount, per calendar period.

    Parameters
    ----------
    name
        Budget name, used in every reason.
    amount_usd
        Budget per period, dollars (> 0).
    period
        ``"day"``, ``"week"`` (ISO, from Monday 00:00) or ``"month"``, in ``timezone``.
    timezone
        IANA zone of the calendar (``"Europe/Paris"``); DST days are 23 or 25 h long.
    alert_at
        Fractions of ``amount_usd`` that alert once per period each, in (0, 2].
    hard_stop_at
        Fraction that emits a ``pause`` once per period (``None``: never); not below the
        highest ``alert_at``.
    auto_resume
        Emit a ``resume`` at the start of the period after one that hard-stopped.
    fast_burn
        Burn factor over 1 h and 5 min that pages (critical).
    slow_burn
        Burn factor over 6 h and 30 min that warns.
    grace_s
        Seconds after a period's end during which late corrections to its hours still count
        and still fire its thresholds (as alerts, once each); then it is dropped.
    """

    def __init__(
        self,
        name: str,
        amount_usd: float,
        period: str = "month",
        timezone: str = "UTC",
        alert_at: Sequence[float] = (0.5, 0.8, 1.0),
        hard_stop_at: float | None = 1.2,
        auto_resume: bool = True,
        fast_burn: float = 14.4,
        slow_burn: float = 6.0,
        grace_s: float = PERIOD_GRACE_S,
    ) -> None:
        check("name", name, isinstance(name, str) and name != "", "a non-empty string")
        check("amount_usd", amount_usd, _number(amount_usd) and amount_usd > 0, "a number > 0")
        check("period", period, period in _PERIODS, "one of day, week, month")
        try:
            tz = ZoneInfo(timezone) if isinstance(timezone, str) and timezone else None
        except (ZoneInfoNotFoundError, ValueError):
            tz = None
        check("timezone", timezone, tz is not None, "an IANA time zone like Europe/Paris")
        fractions = list(alert_at) if isinstance(alert_at, Sequence) else [None]
        check(
            "alert_at",
            alert_at,
            all(_number(f) and 0 < f <= 2 for f in fractions)
            and len(set(fractions)) == len(fractions),
            "distinct fractions in (0, 2]",
        )
        fractions.sort()
        check(
            "hard_stop_at",
            hard_stop_at,
            hard_stop_at is None
            or (
                _number(hard_stop_at)
                and 0 < hard_stop_at <= 10
                and hard_stop_at >= max(fractions, default=0.0)
            ),
            "None or in (0, 10] and not below the highest alert_at",
        )
        check("auto_resume", auto_resume, isinstance(auto_resume, bool), "a bool")
        check("fast_burn", fast_burn, _number(fast_burn) and fast_burn > 0, "a number > 0")
        check("slow_burn", slow_burn, _number(slow_burn) and slow_burn > 0, "a number > 0")
        check("grace_s", grace_s, _number(grace_s) and grace_s >= 0, "a number of seconds >= 0")
        self.name = name
        self.amount_usd = float(amount_usd)
        self.period = period
        self.timezone = timezone
        self.alert_at = tuple(float(f) for f in fractions)
        self.hard_stop_at = None if hard_stop_at is None else float(hard_stop_at)
        self.auto_resume = auto_resume
        self.fast_burn = float(fast_burn)
        self.slow_burn = float(slow_burn)
        self.grace_s = float(grace_s)
        self._tz = tz
        self._bounds: tuple[float, float] | None = None  # cache of the last period_bounds
        self._reset_state()

    def _reset_state(self) -> None:
        # Absolute spend in nano-dollars per UTC hour index (hour_start // 3600) and per
        # minute index.
        self._hours: dict[int, int] = {}
        self._minutes: dict[int, int] = {}
        # Seasonal profile: EW mean spend per UTC hour-of-week, how many hours fed each slot,
        # and an EW mean over all hours as the fallback for slots never seen.
        self._profile = array("f", bytes(4 * WEEK_H))
        self._counts = array("I", bytes(4 * WEEK_H))
        self._mean = 0.0
        self._learned = 0  # hours learned in total (the "history" gate of the projection)
        self._learn_next: int | None = None  # first hour index not learned yet
        self._now = -math.inf  # highest watermark evaluated
        self._period_start: float | None = None
        self._fired: set[float] = set()  # alert_at fractions fired this period
        self._stopped = False  # hard stop fired this period (its keys resume at the next)
        self._stop_usd: float | None = None  # the dollars it fired at (a raise re-arms it)
        self._projected = False  # projected_overrun fired this period
        # The previous period while it takes late corrections: [start, end), the alert_at
        # fractions fired for it and whether its hard stop fired (as a pause or a late alert).
        self._prev: tuple[float, float] | None = None
        self._prev_fired: set[float] = set()
        self._prev_stopped = False
        self._fast_armed = True
        self._slow_armed = True
        # Derived, not state (rebuilt after a restore): the (hour, period start) of the last
        # prune, and the projection's expected hours by the hours learned they were made of.
        self._pruned: tuple[int, float] | None = None
        self._expect: tuple[int, list[float], float, dict[tuple[int, int], float]] | None = None
        self._forget_sums()

    def _forget_sums(self) -> None:
        """Drop the running totals; each is summed afresh from what is held when next read."""
        # Hour ranges [first, end) -> nano-dollars of the hours held in them: this period
        # and the one before (``_hours_in``), moved by every hour set or dropped.
        self._sums: dict[tuple[int, int], int] = {}
        # The highest hour index held, or above: hours after a watermark lie up to it.
        self._last_hour = max(self._hours, default=-1)
        # At or below the lowest hour index held (exact after each prune): the hourly prune
        # finds no hour before the period without a scan of a month of hours.
        self._first_hour = min(self._hours, default=0)
        # The burn windows' nano-dollars (by length in minutes) over the minutes before
        # minute index ``_burn_end`` (None: not summed yet).
        self._burn_end: int | None = None
        self._burn_sums: dict[int, int] = {}
        # Nano-dollars of every minute held: over any burn window's sum (spend is never
        # negative), so a burn check it rules out needs no window summed.
        self._minutes_total = sum(self._minutes.values())

    @classmethod
    def from_config(cls, cfg: Any) -> BudgetTracker:
        """Build from a ``schemas.BudgetConfig``; burn and resume knobs default if absent."""
        return cls(
            name=cfg.name,
            amount_usd=cfg.amount_usd,
            period=cfg.period,
            timezone=cfg.timezone,
            alert_at=tuple(cfg.alert_at),
            hard_stop_at=cfg.hard_stop_at,
            auto_resume=getattr(cfg, "auto_resume", True),
            fast_burn=getattr(cfg, "fast_burn", 14.4),
            slow_burn=getattr(cfg, "slow_burn", 6.0),
            grace_s=getattr(cfg, "grace_s", PERIOD_GRACE_S),
        )

    def carry_over(self, before: BudgetTracker) -> None:
        """Continue ``before`` (the same budget, scope, period and zone under its previous
        config): its spend, profile and what fired this period, under this one's amount and
        fractions.

        A reload never sends a threshold by itself going up: one already sent, or one the
        spend so far is past, stays sent. One whose dollar level rose above the spend (a
        raised amount or fraction) is armed again at its new level, and so is the hard
        stop: raising a budget mid-period no longer switches its alerts and its hard stop
        off until the next period. A lowered one sends what the spend is now past.
        """
        vars(self).update({k: v for k, v in vars(before).items() if k.startswith("_")})
        spent = before.spent(before._now) if math.isfinite(before._now) else 0.0
        # New containers: ``before`` stays as it was, for a reload that is put back.
        self._fired = {
            f
            for f in before._fired
            if f not in self.alert_at or self.amount_usd * f <= max(before.amount_usd * f, spent)
        }
        stop = self.hard_stop_at
        if self._stop_usd is not None and stop is not None and self.amount_usd * stop <= spent:
            self._stop_usd = max(self._stop_usd, self.amount_usd * stop)
        self._projected = before._projected and self.amount_usd <= before.amount_usd
        self._prev_fired = set(before._prev_fired)
        self._hours = dict(before._hours)
        self._minutes = dict(before._minutes)
        self._sums = dict(before._sums)
        self._burn_sums = dict(before._burn_sums)
        self._profile = array("f", before._profile)
        self._counts = array("I", before._counts)

    def lift_stop(self) -> bool:
        """After ``carry_over``: True, and the stop of this period forgotten (its keys are
        resumed by the caller, not again at the next period), when the spend is now under
        the hard stop's level (an amount or fraction raised, the stop removed)."""
        if not self._stopped or not math.isfinite(self._now):
            return False
        if self.spent(self._now) >= self._stop_level():
            return False
        self._stopped = False
        self._stop_usd = None
        return True

    def learn_from(self, before: BudgetTracker) -> None:
        """Take ``before``'s hour-of-week profile, the watermark it reached and its burn
        alerts' arming (the same scope under another period or time zone): all of that is
        kept by UTC hour, not by period. Hours, periods and what fired start afresh."""
        self._profile = array("f", before._profile)
        self._counts = array("I", before._counts)
        self._mean, self._learned = before._mean, before._learned
        self._learn_next, self._now = before._learn_next, before._now
        self._fast_armed, self._slow_armed = before._fast_armed, before._slow_armed

    def _stop_level(self) -> float:
        """Dollars of the hard stop (inf without one)."""
        stop = self.hard_stop_at
        return math.inf if stop is None else self.amount_usd * stop

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickles written before the previous period was kept lack its fields.
        self.__dict__.update(state)
        for k, v in (("grace_s", PERIOD_GRACE_S), ("_prev", None), ("_prev_stopped", False)):
            self.__dict__.setdefault(k, v)
        self.__dict__.setdefault("_stop_usd", self._stop_level() if self._stopped else None)
        self.__dict__.setdefault("_prev_fired", set())
        # Pickles written before 2026-12-07 held dollars as floats, and no running totals.
        self._hours = {h: v if type(v) is int else _nusd_of(v) for h, v in self._hours.items()}
        self._minutes = {m: v if type(v) is int else _nusd_of(v) for m, v in self._minutes.items()}
        self._forget_sums()

    def __repr__(self) -> str:
        return (
            f"BudgetTracker({self.name!r}, {self.amount_usd!r}, period={self.period!r}, "
            f"timezone={self.timezone!r}, alert_at={self.alert_at!r}, "
            f"hard_stop_at={self.hard_stop_at!r}, grace_s={self.grace_s!r})"
        )

    # Calendar.

    def period_bounds(self, ts: float) -> tuple[float, float]:
        """``[start, end)`` epoch seconds of the calendar period containing ``ts``.

        Local midnights are converted with the zone's rules, so a local day spans 23 or
        25 hours on DST changes and a month's length follows its days.
        """
        cached = self._bounds
        if cached is not None and cached[0] <= ts < cached[1]:
            return cached
        check("ts", ts, _in_range(ts), f"epoch seconds in [{TS_MIN:g}, {TS_MAX:g}]")
        day = datetime.fromtimestamp(ts, self._tz).date()
        if self.period == "day":
            first, nxt = day, day + timedelta(days=1)
        elif self.period == "week":
            first = day - timedelta(days=day.weekday())
            nxt = first + timedelta(days=7)
        else:
            first = day.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
        bounds = (self._midnight(first), self._midnight(nxt))
        self._bounds = bounds
        return bounds

    def _midnight(self, d: date) -> float:
        # fold=0: a midnight skipped by DST maps to the instant of the jump (the day's start).
        return datetime.combine(d, time(), tzinfo=self._tz).timestamp()

    # Inputs.

    def set_hour(self, hour_start: float, cost_usd: float) -> None:
        """Set the ABSOLUTE spend of the UTC hour starting at ``hour_start``; last value wins.

        Dollars, rounded to the nano-dollar (``set_hour_nusd`` takes them as rollups carry
        them). NaN, infinite or negative values are ignored.
        """
        if _cost(cost_usd) and math.isfinite(nusd := float(cost_usd) * NUSD):
            self.set_hour_nusd(hour_start, round(nusd))

    def set_hour_nusd(self, hour_start: float, cost_nusd: int) -> None:
        """Set the ABSOLUTE spend of the UTC hour starting at ``hour_start``, in nano-dollars.

        Negative or non-integer values are ignored. An hour before the current period that
        is already learned no longer matters and is dropped, unless it belongs to the
        previous period still within its ``grace_s``: then it is a late correction of it.
        """
        if not (_nusd(cost_nusd) and _in_range(hour_start)):
            return
        h = math.floor(hour_start / HOUR_S)
        if (
            self._period_start is not None
            and (h + 1) * HOUR_S <= self._period_start
            and self._learn_next is not None
            and h < self._learn_next
            and not self._in_prev(h)
        ):
            return
        self._put_hour(h, int(cost_nusd))

    def set_minute(self, minute_start: float, cost_usd: float) -> None:
        """Set the ABSOLUTE spend of the minute starting at ``minute_start`` (burn windows),
        in dollars rounded to the nano-dollar, as ``set_hour``."""
        if _cost(cost_usd) and math.isfinite(nusd := float(cost_usd) * NUSD):
            self.set_minute_nusd(minute_start, round(nusd))

    def set_minute_nusd(self, minute_start: float, cost_nusd: int) -> None:
        """Set the ABSOLUTE spend of the minute starting at ``minute_start``, in nano-dollars."""
        if not (_nusd(cost_nusd) and _in_range(minute_start)):
            return
        m = math.floor(minute_start / 60.0)
        if math.isfinite(self._now) and m < math.floor(self._now / 60.0) - BURN_KEEP_MIN:
            return
        self._put_minute(m, int(cost_nusd))

    def _put_hour(self, h: int, cost_nusd: int | None) -> None:
        """Hold ``cost_nusd`` for hour index ``h`` (None: drop it), moving the running totals
        of the ranges it is in by the difference."""
        hours = self._hours
        old = hours.get(h, 0)
        if cost_nusd is None:
            hours.pop(h, None)
            cost_nusd = 0
        else:
            hours[h] = cost_nusd
            if h > self._last_hour:
                self._last_hour = h
            if h < self._first_hour:
                self._first_hour = h
        if cost_nusd != old:
            sums = self._sums
            for first, end in sums:
                if first <= h < end:
                    sums[first, end] += cost_nusd - old

    def _put_minute(self, m: int, cost_nusd: int | None) -> None:
        """Hold ``cost_nusd`` for minute index ``m`` (None: drop it), moving the sums of the
        burn windows it is in by the difference."""
        minutes = self._minutes
        old = minutes.get(m, 0)
        if cost_nusd is None:
            minutes.pop(m, None)
            cost_nusd = 0
        else:
            minutes[m] = cost_nusd
        self._minutes_total += cost_nusd - old
        if cost_nusd != old and self._burn_end is not None:
            age = self._burn_end - m  # 1 for the last complete minute
            sums = self._burn_sums
            for length in BURN_WINDOWS_MIN:
                if 1 <= age <= length:
                    sums[length] += cost_nusd - old

    # Reading.

    def spent(self, now: float) -> float:
        """Period-to-date spend: hours of the period containing ``now`` that start by ``now``.

        Meant for the current period: hours of earlier periods are pruned once learned,
        those of the previous period only ``grace_s`` after its end.
        """
        start, end = self.period_bounds(now)
        return self._spent_in(start, end, math.floor(now / HOUR_S) + 1) / NUSD

    def _spent_in(self, start: float, end: float, hi: int | None = None) -> int:
        """Nano-dollars of ``[start, end)`` over the hours before hour index ``hi``, with an
        hour that holds ``start`` or ``end`` split by its minutes where they are known."""
        lo, top = math.floor(start / HOUR_S), math.ceil(end / HOUR_S)
        total = self._hours_in(lo, top)
        hours = self._hours
        if hi is not None and hi < top:  # less the hours after the watermark, if any
            total -= sum(map(hours.get, range(hi, min(top, self._last_hour + 1)), repeat(0)))
            top = hi
        for edge in (start, end):
            h = math.floor(edge / HOUR_S)
            if h * HOUR_S == edge or not lo <= h < top or h not in hours:
                continue  # on the hour, or outside what is summed
            before = self._before(h, edge)
            if before is None:  # no minutes: the hour belongs where its start falls
                total -= hours[h] if edge == start else 0
            else:  # the hour is in ``total`` whole: take away the part outside
                total -= before if edge == start else hours[h] - before
        return total

    def _hours_in(self, first: int, end: int) -> int:
        """Nano-dollars of the hours held in ``[first, end)`` (hour indices): a running total,
        summed once for a range not kept yet. Two ranges are kept (this period and the one
        before, which ``_late`` reads), the one made first giving way."""
        sums = self._sums
        total = sums.get((first, end))
        if total is None:
            total = sum(v for h, v in self._hours.items() if first <= h < end)
            if len(sums) >= 2:
                del sums[next(iter(sums))]
            sums[first, end] = total
        return total

    def _before(self, h: int, edge: float) -> int | None:
        """Nano-dollars in hour ``h`` before ``edge``, from its minutes (None: none known)."""
        first = h * 60
        minutes = [
            (m, v) for m in range(first, first + 60) if (v := self._minutes.get(m)) is not None
        ]
        if not minutes:
            return None
        return sum(v for m, v in minutes if m * 60.0 < edge)

    def _in_prev(self, h: int) -> bool:
        """Whether hour index ``h`` belongs to the previous period still held."""
        prev = self._prev
        return prev is not None and math.floor(prev[0] / HOUR_S) <= h < math.ceil(prev[1] / HOUR_S)

    def expected_hour(self, hour_start: float) -> float | None:
        """Learned expected spend of the UTC hour at ``hour_start``; ``None`` before any."""
        k = _slot(math.floor(hour_start / HOUR_S))
        if self._counts[k]:
            return float(self._profile[k])
        return self._mean if self._learned else None

    def projected(self, now: float) -> float | None:
        """Projected spend at the end of the period containing ``now``, or ``None``.

        Spend so far plus the expected spend of every remaining hour (its hour-of-week mean,
        else the trailing mean hourly rate). ``None`` until 24 h of history (6 h for a
        daily budget) and 10 % of the period are behind us: earlier guesses are noise.
        """
        start, end = self.period_bounds(now)
        return self._project(now, start, end, self.spent(now))

    def _project(self, now: float, start: float, end: float, spent: float) -> float | None:
        need_h = 6 if self.period == "day" else 24
        if self._learned < need_h or now - start < 0.1 * (end - start):
            return None
        # Expected spend per hour of week, their sum, and sums of runs of them: they change
        # only when an hour is learned, and the early look asks every five minutes.
        cache = self._expect
        if cache is None or cache[0] != self._learned:
            exp = [
                float(self._profile[k]) if self._counts[k] else self._mean for k in range(WEEK_H)
            ]
            cache = self._expect = (self._learned, exp, math.fsum(exp), {})
        _, exp, week, runs = cache
        total = spent
        h_now = math.floor(now / HOUR_S)
        if h_now * HOUR_S >= start:  # the rest of the hour in progress
            total += exp[_slot(h_now)] * max(0.0, 1.0 - (now - h_now * HOUR_S) / HOUR_S)
        n = math.ceil(end / HOUR_S) - 1 - h_now  # whole hours left that start before `end`
        if n > 0:
            weeks, rest = divmod(n, WEEK_H)
            first = _slot(h_now + 1)
            total += weeks * week
            run = runs.get((first, rest))
            if run is None:
                run = runs[first, rest] = math.fsum(exp[(first + i) % WEEK_H] for i in range(rest))
            total += run
        return total

    # Evaluation.

    def evaluate(self, now: float) -> list[BudgetVerdict]:
        """Verdicts newly due at watermark ``now``: thresholds of the previous period crossed
        late, resume, thresholds, projection, burn.

        A watermark lower than one already seen is raised to it, so a replay after a
        restore re-reads the same values without re-firing anything. Thresholds are
        checked on every call (a late correction may cross one); the projection and the
        re-arming of burn alerts only when the watermark advances, because a replay that
        re-sends an hour's partial values briefly lowers spend and must not flap them.
        The previous period is checked on every call until the first one at or after its
        end + ``grace_s`` (which checks it a last time and drops it).
        """
        if not _in_range(now):
            return []
        advanced = float(now) > self._now
        now = max(float(now), self._now)
        self._now = now
        start, end = self.period_bounds(now)
        out: list[BudgetVerdict] = []
        resume: list[BudgetVerdict] = []
        if self._period_start != start:
            if self._period_start is not None:
                out.extend(self._late())  # a last look at the period before, if held
                self._prev = self.period_bounds(self._period_start)
                self._prev_fired, self._prev_stopped = self._fired, self._stopped
                if self._stopped and self.auto_resume:
                    resume.append(self._resume(start, end))
            self._period_start = start
            self._fired = set()
            self._stopped = self._projected = False
            self._stop_usd = None
        out.extend(self._late())
        out.extend(resume)
        if self._prev is not None and now >= self._prev[1] + self.grace_s:
            self._prev = None
            self._prev_fired = set()
            self._prev_stopped = False
        self._learn(now)
        self._prune(now, start)
        spent = self.spent(now)
        out.extend(self._thresholds(now, start, end, spent))
        if advanced and not self._projected and spent < self.amount_usd:
            seen = self.counted_to(now)
            proj = self._project(seen, start, end, spent)
            if proj is not None and proj > self.amount_usd:
                self._projected = True
                out.append(self._projection(seen, start, end, spent, proj))
        out.extend(self._burn(now, start, end, advanced))
        return out

    def counted_to(self, now: float) -> float:
        """The event time the spend counted at watermark ``now`` reaches: the latest minute of
        ``now``'s hour that holds spend, if after ``now``; else ``now``.

        ``spent(now)`` counts ``now``'s whole hour as read so far, and rollups arrive before
        their partition's mark (sent at the ingest's next checkpoint). After a quiet gap, with
        every partition idle, the watermark stands at the last call before the gap, and a
        threshold crossed by calls at 23:17 said "by 23:03".
        """
        first = math.floor(now / HOUR_S) * 60
        get = self._minutes.get
        for m in range(first + 59, math.floor(now / 60.0), -1):
            if get(m):
                return m * 60.0
        return now

    def burns_before(self, until: float, step: float) -> list[tuple[float, BudgetVerdict]]:
        """Burn-rate verdicts at each multiple of ``step`` (event time) after the last
        evaluation and before ``until``, each with its time: the burn windows as a stage
        looking every ``step`` would have seen them. A backlog's budgets are evaluated as
        each hour closes, and a burn that ran and stopped within the hour was missed (its
        5-minute window empty by then); live, and in replay, every step looks."""
        if not (math.isfinite(self._now) and _in_range(until)):
            return []
        t = max(math.floor(self._now / step) + 1, math.ceil((until - HOUR_S) / step)) * step
        out = []
        while t < until:
            start, end = self.period_bounds(t)
            out.extend((t, verdict) for verdict in self._burn(t, start, end, True))
            t += step
        return out

    def _learn(self, now: float) -> None:
        # Learn each complete hour once, on its value GRACE_S after it ended; hours without
        # a value between the first seen and the watermark had no spend and learn as zero.
        last = math.floor((now - GRACE_S) / HOUR_S) - 1
        if self._learn_next is None:
            if not self._hours:
                return
            self._learn_next = min(self._hours)
        first = max(self._learn_next, last - LEARN_MAX_H + 1)
        for h in range(first, last + 1):
            x = self._hours.get(h, 0) / NUSD
            k = _slot(h)
            n = self._counts[k] = min(self._counts[k] + 1, 2**32 - 1)
            self._profile[k] += max(1.0 / n, SLOT_ALPHA) * (x - self._profile[k])
            self._learned += 1
            self._mean += max(1.0 / self._learned, MEAN_ALPHA) * (x - self._mean)
        self._learn_next = max(self._learn_next, last + 1)

    def _prune(self, now: float, start: float) -> None:
        """Drop hours learned before the period (bar the previous one's, while it takes late
        corrections) and minutes older than the burn windows; once an hour: what is kept
        longer is never read (``spent`` sums the period, ``_burn`` its last six hours)."""
        at = (math.floor(now / HOUR_S), start)
        if self._pruned == at:
            return
        self._pruned = at
        learned = self._learn_next if self._learn_next is not None else -math.inf
        hours = self._hours
        if hours and (self._first_hour + 1) * HOUR_S <= start:  # most: none before the period
            old = [
                h
                for h in hours
                if (h + 1) * HOUR_S <= start and h < learned and not self._in_prev(h)
            ]
            for h in old:
                self._put_hour(h, None)
            self._first_hour = min(hours, default=0)
        keep = math.floor(now / 60.0) - BURN_KEEP_MIN
        # The minutes of the hour the period starts in split it for the whole period.
        split = math.floor(start / HOUR_S) * 60 if start % HOUR_S else -1
        # Minutes come in time order, but for a late one: the old ones are at the front.
        old_minutes = takewhile(keep.__gt__, self._minutes)
        for m in [m for m in old_minutes if not split <= m < split + 60]:
            self._put_minute(m, None)

    def _thresholds(
        self, now: float, start: float, end: float, spent: float
    ) -> list[BudgetVerdict]:
        due: list[tuple[float, str]] = [
            (f, "alert")
            for f in self.alert_at
            if f not in self._fired and spent >= self.amount_usd * f
        ]
        stop = self.hard_stop_at
        level = self._stop_level()
        if (
            stop is not None
            and spent >= level
            and (self._stop_usd is None or level > self._stop_usd)
        ):
            due.append((stop, "pause"))
        due.sort(key=lambda d: (d[0], d[1] == "pause"))
        if not due:
            return []
        now = self.counted_to(now)  # looked up only when a verdict is due
        proj = self._project(now, start, end, spent)
        tail = f"; projected {usd(proj)} by {self._end_label(end)}" if proj is not None else ""
        out = []
        head = self._spent_by(spent, now)
        at = now if now > self._now else None
        for frac, action in due:
            target = self.amount_usd * frac
            if action == "pause":
                self._stopped = True
                self._stop_usd = target
                reason = f"{head}: hard stop at {frac:.0%}{STOP_PAUSING}"
            else:
                self._fired.add(frac)
                reason = head + tail
            sev = "critical" if action == "pause" else _severity(frac)
            out.append(
                BudgetVerdict(
                    "budget", action, sev, frac, spent, target, start, end, start, reason, at
                )
            )
        return out

    def _spent_by(self, spent: float, now: float) -> str:
        return (
            f"{self.name} spent {usd(spent)} of its {usd(self.amount_usd)} "
            f"{_ADJ[self.period]} budget ({spent / self.amount_usd:.0%}) by "
            f"{self._now_label(now)}"
        )

    def stop_in_force(self) -> BudgetVerdict | None:
        """The hard stop that paused the current period, while the spend is still at or past
        it (None: no stop this period, or a raised amount put the spend below it): a key in
        scope that spends after the stop is paused under it too, as a follow-up ``pause``.
        Without it a key that started spending later, or whose first rollup was read after
        the stop, ran on unpaused for the rest of the period."""
        stop = self.hard_stop_at
        if stop is None or self._stop_usd is None or not math.isfinite(self._now):
            return None
        start, end = self.period_bounds(self._now)
        spent = self.spent(self._now)
        level = self._stop_level()
        if spent < level:
            return None
        seen = self.counted_to(self._now)
        reason = (
            f"{self._spent_by(spent, seen)}: hard stop at {stop:.0%} in force, pausing the "
            "non-critical keys in scope that spent since it was applied"
        )
        at = seen if seen > self._now else None
        return BudgetVerdict(
            "budget", "pause", "critical", stop, spent, level, start, end, start, reason, at
        )

    def _late(self) -> list[BudgetVerdict]:
        """Thresholds of the previous period newly crossed by late corrections, as alerts."""
        prev = self._prev
        if prev is None:
            return []
        start, end = prev
        spent = self._spent_in(start, end) / NUSD
        due = [
            f for f in self.alert_at if f not in self._prev_fired and spent >= self.amount_usd * f
        ]
        stop = self.hard_stop_at
        if stop is not None and (self._prev_stopped or spent < self.amount_usd * stop):
            stop = None  # not newly crossed
        if not due and stop is None:
            # Most checks of the previous period's grace: no reason worded (a calendar label).
            return []
        head = (
            f"{self.name} spent {usd(spent)} of its {usd(self.amount_usd)} "
            f"{_ADJ[self.period]} budget ({spent / self.amount_usd:.0%}) "
            f"{self._period_label(start)}"
        )
        out = []
        for frac in due:
            self._prev_fired.add(frac)
            out.append(
                BudgetVerdict(
                    "budget",
                    "alert",
                    _severity(frac),
                    frac,
                    spent,
                    self.amount_usd * frac,
                    start,
                    end,
                    start,
                    f"{head} ({_LATE})",
                )
            )
        if stop is not None:
            self._prev_stopped = True
            reason = f"{head}: hard stop at {stop:.0%} not applied, the period had ended ({_LATE})"
            out.append(
                BudgetVerdict(
                    "budget",
                    "alert",
                    "critical",
                    stop,
                    spent,
                    self.amount_usd * stop,
                    start,
                    end,
                    start,
                    reason,
                )
            )
        return out

    def _resume(self, start: float, end: float) -> BudgetVerdict:
        stop = self.hard_stop_at if self.hard_stop_at is not None else 0.0
        reason = (
            f"{self.name}: new {_ADJ[self.period]} period from {self._day_label(start)}; "
            f"resuming what the {stop:.0%} hard stop paused"
        )
        # The new period's spend is read after the reset; at the boundary it is near zero.
        spent = self.spent(max(start, self._now))
        return BudgetVerdict(
            "budget", "resume", "info", None, spent, None, start, end, start, reason
        )

    def _projection(
        self, now: float, start: float, end: float, spent: float, proj: float
    ) -> BudgetVerdict:
        reason = (
            f"{self.name} is projected to spend {usd(proj)} by {self._end_label(end)}, over its "
            f"{usd(self.amount_usd)} {_ADJ[self.period]} budget ({usd(spent)} spent so far, "
            f"{spent / self.amount_usd:.0%}, by {self._now_label(now)})"
        )
        at = now if now > self._now else None
        return BudgetVerdict(
            "projection", "alert", "warning", None, spent, proj, start, end, start, reason, at
        )

    def _burn(self, now: float, start: float, end: float, advanced: bool) -> list[BudgetVerdict]:
        pace = self.amount_usd / (end - start)  # dollars per second at the even pace
        # The sums are exact, the even pace is not: a burn of exactly the factor counts as
        # reaching it.
        tol = 1.0 - 1e-9
        rules = (
            ("fast", self.fast_burn, 60, 5, "critical"),
            ("slow", self.slow_burn, 360, 30, "warning"),
        )
        if self._burn_ruled_out(pace, tol, rules, advanced):
            return []
        m_end = math.floor(now / 60.0)
        sums = {length: nusd / NUSD for length, nusd in self._burn_windows(m_end).items()}
        out = []
        for which, factor, long_m, short_m, severity in rules:
            even = pace * long_m * 60.0
            f_long = sums[long_m] / even
            f_short = sums[short_m] / (pace * short_m * 60.0)
            armed = self._fast_armed if which == "fast" else self._slow_armed
            if not armed:
                if advanced and f_long < factor * REARM:  # re-armed once it has subsided
                    armed = True
            elif f_long >= factor * tol and f_short >= factor * tol:
                armed = False
                w_end = m_end * 60.0
                reason = (
                    f"{self.name} is burning its {_ADJ[self.period]} budget at {f_long:.1f}x "
                    f"the even pace: {usd(sums[long_m])} in the last {long_m // 60} h vs "
                    f"{usd(even)} at even pace, {f_short:.1f}x over the last {short_m} min"
                )
                out.append(
                    BudgetVerdict(
                        "burn_rate",
                        "alert",
                        severity,
                        factor,
                        sums[long_m],
                        even,
                        w_end - long_m * 60.0,
                        w_end,
                        start,
                        reason,
                    )
                )
            if which == "fast":
                self._fast_armed = armed
            else:
                self._slow_armed = armed
        return out

    def _burn_ruled_out(
        self,
        pace: float,
        tol: float,
        rules: tuple[tuple[str, float, int, int, str], ...],
        advanced: bool,
    ) -> bool:
        """True when the minutes held, all of them, cannot put either rule's long window at
        its factor: no burn alert, and an unarmed rule re-arms as ``_burn`` would, with no
        window summed (most steps of a replay: a budget with many others is looked at every
        five minutes). The windows slide to the next step that needs them."""
        held = self._minutes_total / NUSD
        for which, factor, long_m, _, _ in rules:
            even = pace * long_m * 60.0
            armed = self._fast_armed if which == "fast" else self._slow_armed
            if armed and held >= factor * tol * even:
                return False
            if not armed and advanced:
                if held >= factor * REARM * even:
                    return False
                if which == "fast":
                    self._fast_armed = True
                else:
                    self._slow_armed = True
        return True

    def _burn_windows(self, m_end: int) -> dict[int, int]:
        """The burn windows' nano-dollars over the minutes before minute index ``m_end``:
        the running sums slid there, the minutes leaving each window taken away and those
        entering it added (summed afresh the first time, or after a restore)."""
        sums, was = self._burn_sums, self._burn_end
        get = self._minutes.get
        if was is None or m_end < was:
            for length in BURN_WINDOWS_MIN:
                sums[length] = sum(map(get, range(m_end - length, m_end), repeat(0)))
        elif m_end > was:
            for length in BURN_WINDOWS_MIN:
                moved = min(m_end - was, length)  # minutes entering the window, and leaving
                entering = range(m_end - moved, m_end)
                leaving = range(was - length, was - length + moved)
                sums[length] += sum(map(get, entering, repeat(0))) - sum(
                    map(get, leaving, repeat(0))
                )
        self._burn_end = m_end
        return sums

    # Labels (local calendar of the budget).

    def _local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self._tz)

    def _day_label(self, ts: float) -> str:
        d = self._local(ts)
        return f"{d:%b} {d.day}"

    def _period_label(self, start: float) -> str:
        d = self._local(start)
        if self.period == "day":
            return f"on {d:%b} {d.day}"
        if self.period == "week":
            return f"in the week of {d:%b} {d.day}"
        return f"in {d:%B %Y}"

    def _now_label(self, now: float) -> str:
        return f"{self._local(now):%H:%M}" if self.period == "day" else self._day_label(now)

    def _end_label(self, end: float) -> str:
        return "end of day" if self.period == "day" else self._day_label(end - 1.0)

    # State.

    def snapshot(self) -> dict[str, Any]:
        """Learned and fired state as small plain data (JSON-able; a few KB to ~30 KB).

        Hours and minutes are ``[index, usd]`` pairs (hour index = epoch s // 3600), dollars
        written as ``nusd / NUSD`` (read back to the same nano-dollars up to about $2.2M a
        value; the layout of the releases that held floats, which read it alike); the
        profile floats are float32 values written with 9 significant digits (exact).
        """
        return {
            "v": _SNAPSHOT_VERSION,
            "hours": [[h, v / NUSD] for h, v in sorted(self._hours.items())],
            "minutes": [[m, v / NUSD] for m, v in sorted(self._minutes.items())],
            "profile": [float(f"{x:.9g}") for x in self._profile],
            "counts": list(self._counts),
            "mean": self._mean,
            "learned": self._learned,
            "learn_next": self._learn_next,
            "now": self._now if math.isfinite(self._now) else None,
            "period_start": self._period_start,
            "fired": sorted(self._fired),
            "stopped": self._stopped,
            "stop_usd": self._stop_usd,
            "projected": self._projected,
            "fast_armed": self._fast_armed,
            "slow_armed": self._slow_armed,
            "prev": None if self._prev is None else list(self._prev),
            "prev_fired": sorted(self._prev_fired),
            "prev_stopped": self._prev_stopped,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace learned and fired state with a ``snapshot()``; parameters stay as built."""
        check("data", data.get("v"), data.get("v") in (1, 2), "a version 1 or 2 snapshot")
        self._reset_state()
        self._hours = {int(h): _nusd_of(v) for h, v in data["hours"]}
        self._minutes = {int(m): _nusd_of(v) for m, v in data["minutes"]}
        self._forget_sums()
        self._profile = array("f", [float(x) for x in data["profile"]])
        self._counts = array("I", [int(n) for n in data["counts"]])
        check("profile", len(self._profile), len(self._profile) == WEEK_H, f"{WEEK_H} floats")
        check("counts", len(self._counts), len(self._counts) == WEEK_H, f"{WEEK_H} ints")
        self._mean = float(data["mean"])
        self._learned = int(data["learned"])
        nxt = data["learn_next"]
        self._learn_next = None if nxt is None else int(nxt)
        self._now = -math.inf if data["now"] is None else float(data["now"])
        ps = data["period_start"]
        self._period_start = None if ps is None else float(ps)
        self._fired = {float(f) for f in data["fired"]}
        self._stopped = bool(data["stopped"])
        # Absent before 2026-12-08: the stop fired at today's level.
        stop_usd = data.get("stop_usd", self._stop_level() if self._stopped else None)
        self._stop_usd = None if stop_usd is None else float(stop_usd)
        self._projected = bool(data["projected"])
        self._fast_armed = bool(data["fast_armed"])
        self._slow_armed = bool(data["slow_armed"])
        prev = data.get("prev")  # absent in version 1
        self._prev = None if prev is None else (float(prev[0]), float(prev[1]))
        self._prev_fired = {float(f) for f in data.get("prev_fired", ())}
        self._prev_stopped = bool(data.get("prev_stopped", False))
