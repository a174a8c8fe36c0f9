"""``baseline``: a multiplicative hour-of-week baseline with a fast level and a robust scale.

Why this shape: AI spend is strongly weekly and roughly log-normal, so the expected value
per hour-of-week slot is learned in ``log1p(value / unit)`` space (ratios, not dollars),
times a global fast *level* that absorbs launches within about a day. Residuals are judged
by :class:`~detectors._robust.BurnScale` (robust scale, fast and slow windows must both be
high) and an alert also needs ``min_usd`` of dollar impact, so tiny series never page.

Zero windows are treated as silence (an outage, a quiet night): they may lower their own
slot a little but never drag the level or the scale down, so normal traffic after a silent
day does not look like a surge. An outage's trickle (with calls counted: a run of windows
with a few of their calls) may bring a level raised over the profile back to it but not pull
it under. NaN, inf and negative values are ignored.

Cold start: no alert (score 0) until ``warmup_n`` windows and ``min_slot_n`` samples of the
slot were seen: two weeks for hour-of-week. Missing windows restart the slow window.
Trade-off to know: a runaway that lasts past ``shift_n`` windows is, statistically, a launch;
it alerts in its first windows and then becomes the new level.

Lumpy spend: a series of a few calls an hour is count noise, not log-normal noise (one
$40 call in a slot expecting $2 is 20x). When the first season has silent windows amid
spend, ``unit`` is raised to ``auto_unit`` times its mean window, so quiet hours are judged
about linearly and busy ones as ratios; then a 10x runaway stands 10+ sigmas out instead
of 4. A sharp spike (one or two windows, too short for the slow window) alerts when the
last two residuals together are ``sharp_z`` sigmas over (sum / sqrt 2).

Cost per call: feed the per-window cost-per-call series here too, with ``min_usd`` set for
that unit (e.g. ``min_usd=0.005`` for calls costing about a cent); ``unit`` (default $1)
can be set near the typical value so small values are judged as ratios as well.

>>> import math
>>> d = SeasonalBaseline(period_s=3600, season=24, warmup_n=48)
>>> vs = [d.update(h * 3600.0, 40.0 * (1.5 + math.sin(h / 24 * 2 * math.pi))) for h in range(72)]
>>> sum(v.is_anomaly for v in vs)
0
>>> v = d.update(72 * 3600.0, 800.0)
>>> v.is_anomaly, round(v.expected)
(True, 60)
"""

from __future__ import annotations

import math
import operator
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spendbrake.detectors._base import (
    HyperParams,
    Verdict,
    check,
    expose,
    ignored,
    per,
    ratio_score,
    register,
    share,
    slot_label,
    usable,
    usd,
)
from spendbrake.detectors._logcode import EMPTY, decode, encode
from spendbrake.detectors._robust import BurnScale, ScaleBlock
from spendbrake.detectors._rows import InRows, Rows, numbers, rows_for

__all__ = ["SeasonalBaseline"]

#: Share of silent windows in the first season that marks spend as lumpy (a few calls a window).
LUMPY_SHARE = 0.01

#: Codes after the daily peaks in the profile array: EW sums of calls and of expected spend.
_SUMS = 2
#: Their decay per window (about four days of hours), and the least calls for a count alert.
SUMS_DECAY = 0.99
COUNT_MIN = 3.0
COUNT_ALPHA = 1e-5
#: An early look's chance test: a part of an hour is short enough to be all burst, so its
#: calls must be improbable even at this many times the slot's rate (a legitimate burst is
#: 2-5x for under an hour; over a whole hour it is diluted, and twice the rate will do).
BURST_X = 3.0
#: The recent look's least calls, in the series' mean calls per window times the part's
#: share (a quarter hour's: at least a whole usual hour's calls), so a lumpy series whose
#: slot expects a call or two does not page on a quarter hour's burst.
RECENT_FLOOR = 4.0
#: Samples of the slot the recent look needs (three weeks of hour-of-week): a quarter hour
#: judged against a slot learned from two is an early look at a young rate, and a batch
#: window's legitimate burst ran at 10x such a slot for half an hour (a pause).
RECENT_MIN_N = 3
#: A slot learned fewer times than RECENT_MIN_N (the third week) is itself uncertain: its
#: chance test takes the slot's calls at the top of a band this many standard errors wide
#: (Poisson on its few hours' calls, and YOUNG_SPREAD of hour-to-hour spread in the rate).
YOUNG_Z = 2.0
YOUNG_SPREAD = 0.25

#: An outage's trickle (``_outage``): a window with under OUTAGE_X of its slot's expected
#: calls, that few with Poisson chance under OUTAGE_ALPHA, right after a window over
#: OUTAGE_Z sigmas under its expectation (an outage lasts hours; noise is an hour alone).
OUTAGE_X = 0.35
OUTAGE_ALPHA = 0.01
OUTAGE_Z = 1.0

#: Weighted windows: the EW mean of ``weight`` learns at this rate (about four days of hours),
#: and a window counts as at most WEIGHT_CAP usual ones (its residual at most doubled).
WEIGHT_ALPHA = 0.01
WEIGHT_CAP = 4.0

#: A silent run this long or longer is learned with numpy, a season of hours at a time
#: (``_silent_run_arrays``); a shorter one hour by hour (numpy's calls cost more there).
ARRAY_RUN_H = 32

#: Profile slots are int16 in steps of 1/PROFILE_Q log units (``log1p(value / unit)`` minus the
#: level), over +-32 (e**32 units: far beyond any hourly spend; beyond it a slot saturates).
#: Why that is precise enough: a read is within 1/2048 of the value learned (0.05 % of the
#: expected spend), and since a step under half of 1/1024 rounds away, a slot settles
#: within 1/(2048 * season_alpha) = 0.0024 of its target (0.24 %). The slot mean's own
#: sampling noise is 0.33 sigma (EW mean with alpha 0.2), about 0.03 for hourly spend
#: (sigma 0.1-0.5), ten times more, and ``widen`` already budgets for it; the robust scale
#: learns from residuals that include the rounding. Decisions move only for a window
#: within a few tenths of a percent of its threshold.
PROFILE_Q = 1024.0

_WINDOW_NAMES = {60.0: "minute", 3600.0: "hour", 86400.0: "day"}
#: What ``_step`` returns to ``learn`` for a silent window: nobody reads it.
_QUIET = Verdict(0.0, False, None, 0.0, "")


@dataclass(frozen=True, slots=True)
class _BaselineParams(HyperParams):
    period_s: float
    season: int
    min_usd: float
    unit: float
    fast_z: float
    slow_n: int
    slow_z: float
    warmup_n: int
    min_slot_n: int
    season_alpha: float
    level_alpha: float
    shift_n: int
    level_alpha_fast: float
    peak_x: float
    peak_days: int
    peak_n: int
    auto_unit: float
    sharp_z: float
    count_x: float
    count_floor: float

    #: Slot counts stop here: past it a count changes no decision, so it need not grow.
    #: A count is read as: zero or not, ``>= min_slot_n`` (warm), ``n_eff = min(count,
    #: (2 - a) / a)`` and the slot's rate ``max(a, 1 / (count + 1))``, ``a`` the season
    #: alpha; all are constant from ``max(min_slot_n, (2 - a) / a + 1)`` on (10 for the
    #: defaults). When that is at most 15, counts take 4 bits and stop at 15 (so a retune
    #: within that range reads them as before); else a byte, stopping at 255 as they did.
    #: A retune across the two (``season_alpha`` under 0.125 or ``min_slot_n`` over 15)
    #: changes the layout, so ``retune`` restarts the detector (it used to keep it).
    count_cap: int = field(init=False, repr=False, compare=False)
    #: The residual scale's hyperparameters (the scale's own defaults otherwise).
    scale: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = self.season_alpha
        needed = max(self.min_slot_n, math.floor((2.0 - a) / a) + 1)
        object.__setattr__(self, "count_cap", 15 if needed <= 15 else 255)
        scale = BurnScale(fast_z=self.fast_z, slow_n=self.slow_n, slow_z=self.slow_z).hyper
        object.__setattr__(self, "scale", scale)


def _new_counts(hp: _BaselineParams) -> bytearray:
    """Zeroed slot counts: two a byte when ``count_cap`` fits 4 bits, else one a byte."""
    return bytearray((hp.season + 1) // 2 if hp.count_cap <= 15 else hp.season)


@register("baseline")
@expose(_BaselineParams)
class SeasonalBaseline(InRows):
    """Volatility-aware seasonal baseline for spend per window.

    Parameters
    ----------
    period_s
        Window length in seconds; one ``update`` per window (3600: hourly totals).
    season
        Slots per season (168: hour-of-week). State grows with it (2.5 bytes a slot).
    min_usd
        Alert only when observed - expected exceeds this many dollars (in the value's unit).
    unit
        Values are modelled as ``log1p(value / unit)``; ratios dominate above ``unit``.
    fast_z, slow_n, slow_z
        Burn-rate confirmation: last residual over ``fast_z`` sigmas and the mean of the last
        ``slow_n`` residuals over ``slow_z`` sigmas.
    warmup_n
        Valid windows seen before any alert (336: two weeks of hours).
    min_slot_n
        Samples of this slot needed before it can alert (2: two weeks for hour-of-week).
    season_alpha
        Smallest learning rate of a slot's profile (each slot learns once per season).
    level_alpha
        Learning rate of the global level from clipped residuals (slow drift).
    shift_n, level_alpha_fast
        When the last ``shift_n`` residuals all sit over two sigmas on one side (a sustained
        new level, not a spike), the level steps by ``level_alpha_fast`` times their median,
        so a launch alerts a couple of times and becomes normal within hours.
    auto_unit
        After the first season, a series with silent windows (over 1 % of them) gets
        ``unit = max(unit, auto_unit * its mean non-zero window)``; the profile is
        re-expressed and the scale relearned. 0 turns it off.
    sharp_z
        Sharp-spike path: this window's and the previous one's residuals summed, over
        ``sharp_z * sigma * sqrt(2)``, alerts without the slow window. 0 turns it off.
    peak_x, peak_days
    peak_n
        Ceiling rule: the sum of the last ``peak_n`` windows over ``peak_x`` times the
        highest such sum of the last ``peak_days`` days (and over ``min_usd`` of excess)
        alerts too, however wide sigma is. A very volatile series (a sporadic batch job)
        can hide even a 100x hour in its sigma, and a few-calls-an-hour service hides an
        8-20x hour until the next one confirms it; neither hides an hour at three times
        the most it spent in any hour of two weeks, and the early look sees that minutes
        into the hour. The bar moves up with the level (``peak_x * peak * e**level`` once
        the level is over 0): a launch the level has taken in is no runaway, where its first
        busy hour paged against the old peaks. ``peak_x=0`` turns it off. (``peak_n`` was 6
        until 2026-12: the single window catches more critical spikes, sooner, with fewer
        false alerts in the evaluation.)
    count_x, count_floor
        Count path, for ``value`` a sum over ``weight`` calls (cost per hour; 0: off, and
        ``weight`` is the evidence behind a mean, as for cost per call): a window, or the
        part of it seen so far, with ``count_x`` times the calls expected for its slot (and
        at least ``count_floor`` times the series' mean calls per window, and improbable as
        chance) alerts, with ``min_usd`` of excess. Expected calls are the slot's expected
        spend times the series' calls per expected dollar (both EW sums over about four days
        of windows). Why: a loop makes calls; counted, it shows minutes in, where its dollars
        still sit inside a lumpy series' sigma. A legitimate burst (a few times the slot's
        rate for under an hour) stays under the bar.
    """

    def __init__(
        self,
        period_s: float = 3600.0,
        season: int = 168,
        min_usd: float = 5.0,
        unit: float = 1.0,
        fast_z: float = 5.0,
        slow_n: int = 6,
        slow_z: float = 1.25,
        warmup_n: int = 336,
        min_slot_n: int = 2,
        season_alpha: float = 0.2,
        level_alpha: float = 0.05,
        shift_n: int = 3,
        level_alpha_fast: float = 0.5,
        peak_x: float = 3.0,
        peak_days: int = 14,
        peak_n: int = 1,
        auto_unit: float = 1.0,
        sharp_z: float = 6.0,
        count_x: float = 0.0,
        count_floor: float = 0.5,
    ) -> None:
        check("period_s", period_s, period_s > 0, "> 0")
        check("season", season, isinstance(season, int) and season >= 1, "an int >= 1")
        check("min_usd", min_usd, min_usd >= 0, ">= 0")
        check("unit", unit, unit > 0, "> 0")
        check("fast_z", fast_z, fast_z > 0, "> 0")
        check("slow_n", slow_n, isinstance(slow_n, int) and slow_n >= 1, "an int >= 1")
        check("slow_z", slow_z, slow_z > 0, "> 0")
        check("warmup_n", warmup_n, warmup_n >= 0, ">= 0")
        check("min_slot_n", min_slot_n, 1 <= min_slot_n <= 255, "in [1, 255]")
        check("season_alpha", season_alpha, 0 < season_alpha <= 1, "in (0, 1]")
        check("level_alpha", level_alpha, 0 <= level_alpha <= 1, "in [0, 1]")
        check("shift_n", shift_n, isinstance(shift_n, int) and shift_n >= 1, "an int >= 1")
        check("level_alpha_fast", level_alpha_fast, 0 <= level_alpha_fast <= 1, "in [0, 1]")
        check("auto_unit", auto_unit, auto_unit >= 0, ">= 0 (0: off)")
        check("sharp_z", sharp_z, sharp_z >= 0, ">= 0 (0: off)")
        check("count_x", count_x, count_x == 0 or count_x > 1, "0 (off) or > 1")
        check("count_floor", count_floor, count_floor >= 0, ">= 0")
        check("peak_x", peak_x, peak_x == 0 or peak_x > 1, "0 (off) or > 1")
        check(
            "peak_days",
            peak_days,
            isinstance(peak_days, int) and 1 <= peak_days <= 60,
            "in [1, 60]",
        )
        # Shared by every detector of this config; read back as attributes (``self.unit``).
        self._hp = share(
            _BaselineParams(
                period_s,
                season,
                min_usd,
                unit,
                fast_z,
                slow_n,
                slow_z,
                warmup_n,
                min_slot_n,
                season_alpha,
                level_alpha,
                shift_n,
                level_alpha_fast,
                peak_x,
                peak_days,
                peak_n,
                auto_unit,
                sharp_z,
                count_x,
                count_floor,
            )
        )
        # Learned state. The profile is int16 fixed point (``_get``/``_set``) and the counts
        # 4 bits a slot where their cap allows (``_count``): 168 slots take 420 bytes, where a
        # float32 profile and a byte per count took 840. After its ``season`` slots the
        # profile array holds the highest window of each of the last ``peak_days`` days (a
        # ring by day number) as int16 log2 codes (``detectors._logcode``): one array where
        # a float32 array of its own took 136 bytes. Why that is precise enough: a peak reads
        # back within 0.07 %, so only a window within 0.07 % of the ceiling can change sides.
        # Then two log codes for the count path: EW sums of calls and of expected spend.
        # Both are blocks of a row (``detectors._rows``, read by name: ``_profile``,
        # ``_counts``) in the ``Rows`` of their lengths (``_rows_for``), with the numbers.
        #: The numbers (``_NUMBERS``' layout; each read by name): the
        #: level over the profile (``_level``), windows learned (``_n``), the last window's
        #: index (``_last_k``, None before any), the day of the newest peak (``_peak_day``),
        #: the window from which the ceiling may alert again (``_ceiling_quiet_k``), the unit
        #: in force (``_unit``: ``unit`` until the first season has shown the series' level)
        #: and the EW mean of the ``weight`` of learned windows (``_wmean``; 0.0: none yet).
        self._take()
        self._unit = unit
        # Held in the row too (``Held``: objects, an entry a row). The last ``peak_n - 1``
        # window values, for the trailing sum the ceiling compares (with the default
        # ``peak_n=1`` the shared empty tuple); the first season's (sum, count) of non-zero
        # windows and count of silent ones (None once the unit is set).
        self._last = ()
        self._first = [0.0, 0.0, 0.0] if auto_unit > 0 else None

    state_fields = (
        "_ceiling_quiet_k",
        "_counts",
        "_first",
        "_last",
        "_last_k",
        "_level",
        "_n",
        "_peak_day",
        "_profile",
        "_scale",
        "_unit",
        "_wmean",
    )
    __slots__ = ("_hp",)
    #: The residual scale: the row's third block (after ``_profile`` and ``_counts``), read
    #: by name as a ``BurnScale`` of its own, learned in place through ``_scale_here``.
    _scale = ScaleBlock(2, operator.attrgetter("_hp.scale"))

    def _rows_for(self) -> Rows:
        hp = self._hp

        def make() -> Rows:
            profile = array("h", [0]) * hp.season + array("h", [EMPTY]) * (hp.peak_days + _SUMS)
            scale = array("d", bytes(8 * BurnScale.size(hp.scale)))
            return Rows(_NUMBERS, (profile, _new_counts(hp), scale), held=(None, ()))

        shape = (SeasonalBaseline, hp.season, hp.peak_days, hp.count_cap <= 15, hp.slow_n)
        return rows_for(shape, make)

    def _scale_here(self) -> BurnScale:
        """The residual scale, read and learned in place in this detector's row."""
        rows = self._rows
        return BurnScale.over(self._hp.scale, rows.blocks[_SCALE], self._row * rows.sizes[_SCALE])

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickle: this layout (a slot per number and array until 2026-12-06: the
        same names), or the older instance dict (one entry per hyperparameter; from before
        ``auto_unit``/``sharp_z`` too, which keeps its unit)."""
        if "_hp" not in state:
            state = _from_dict_layout(state)
        if state["_profile"].typecode == "f":  # float32 log values: to fixed point
            state["_profile"] = array("h", [_fixed(x) for x in state["_profile"]])
            old_counts, state["_counts"] = state["_counts"], _new_counts(state["_hp"])
        else:
            old_counts = None
        peaks = state.pop("_peaks", ())  # float32 daily peaks, an array of their own until 2026-12
        hp = state["_hp"]
        codes = [encode(v) if v > 0.0 else EMPTY for v in peaks]
        codes += [EMPTY] * (hp.peak_days - len(codes))  # none kept: from before the ceiling
        if len(state["_profile"]) == hp.season:
            state["_profile"] += array("h", codes)
        if len(state["_profile"]) == hp.season + hp.peak_days:  # from before the count path
            state["_profile"] += array("h", [EMPTY]) * _SUMS
        state["_profile"] = state["_profile"][:]  # an unpickled array is over-allocated
        state["_last"] = tuple(state["_last"])  # an array until 2026-12
        state.setdefault("_wmean", 0.0)  # from before weights: learns from the next window
        self._place(state)
        if old_counts is not None:  # a byte a count, capped at 255
            for slot, count in enumerate(old_counts):
                self._set_count(slot, count)

    def _get(self, slot: int) -> float:
        rows = self._rows
        return rows.blocks[_PROFILE][self._row * rows.sizes[_PROFILE] + slot] / PROFILE_Q

    def _set(self, slot: int, x: float) -> None:
        rows = self._rows
        rows.blocks[_PROFILE][self._row * rows.sizes[_PROFILE] + slot] = _fixed(x)

    def _profile_at(self) -> tuple[array[int], int]:
        """The profile's array (shared by the rows) and where this detector's starts in it."""
        rows = self._rows
        return rows.blocks[_PROFILE], self._row * rows.sizes[_PROFILE]

    def update(self, ts: float, value: float, weight: float = 1.0) -> Verdict:
        """Score the window at ``ts`` against its slot's expectation, then learn from it.

        ``weight`` (e.g. the calls behind an hour's cost per call) scales the residual by
        ``sqrt(weight / usual weight)``, capped at 2x: the noise of a mean of n calls falls
        as ``1 / sqrt(n)``, so a busy hour's shift means more than a two-call hour's.
        """
        verdict = self._step(ts, value, True, weight)
        self._learn_first(ts, value)
        return verdict

    def learn(self, ts: float, value: float, weight: float = 1.0) -> None:
        """``update`` with no verdict: a silent window is then learned without its reason
        text (a sleeping series wakes with hundreds of them)."""
        if value == 0.0:
            self._step(ts, 0.0, True, weight, quiet=True)
            self._learn_first(ts, 0.0)
        else:
            self.update(ts, value, weight)

    def learn_run(self, start: int, until: int, value: float, weight: float = 1.0) -> None:
        """``learn`` of a run of silent hours with ``_step``'s arithmetic for one, and only
        that: a silent hour moves its slot toward zero spend and counts a window, nothing
        else (no verdict, no scale, no level), so a waking series' hundreds of them cost a
        third of what ``learn`` costs hour by hour. An hour after a gap (or with no window
        learned yet) is ``learn``'s, as is any run of spend or of a weight that teaches the
        usual weight; in the first season the run counts its silences too, and the hour that
        fixes the unit (``_fix_unit``) ends a stretch, the next one reading the new unit."""
        hp = self._hp
        if (
            value != 0.0
            or hp.period_s != 3600
            or start % 3600
            or not (hp.count_x or not (weight > 0.0 and math.isfinite(weight)))
        ):
            super().learn_run(start, until, value, weight)
            return
        v, i = self._rows.nums, self._row * _WIDTH
        ts = start
        while ts < until:
            if v[i + _LAST_K] == ts // 3600 - 1 and 0.0 < v[i + _UNIT] < math.inf:
                ts = self._silent_run(ts, until)
            else:  # a gap restarts the slow window; or nothing learned yet: ``_step``'s
                self.learn(float(ts), 0.0, weight)
                ts += 3600

    def _silent_run(self, start: int, until: int) -> int:
        """``learn_run``'s silent hours from ``start`` (the hour after the last learned) on,
        until ``until`` or the hour that fixes the unit: the hour after the last learned."""
        hp = self._hp
        v, i = self._rows.nums, self._row * _WIDTH
        n, level = v[i + _N], v[i + _LEVEL]
        c = self._scale_here().clip_at()  # silences leave the scale as it was
        profile, at = self._profile_at()
        first = self._first
        season, alpha, cap = hp.season, hp.season_alpha, hp.count_cap
        last_k = (until - 1) // 3600
        if last_k + 1 - start // 3600 >= ARRAY_RUN_H and math.isfinite(level + c):
            return self._silent_run_arrays(start, until)
        rows = self._rows
        counts, cat = rows.blocks[_COUNTS], self._row * rows.sizes[_COUNTS]
        nibbles = cap != 255
        for k in range(start // 3600, last_k + 1):
            slot = k % season
            # ``_step`` on a silent hour (its weight's evidence ``s`` is 1.0): ``_count``,
            # ``_get``, ``_set``, ``_fixed``, ``_slot_alpha``, ``BurnScale.clip`` and
            # ``_set_count`` inline.
            if nibbles:
                byte, shift = cat + (slot >> 1), (slot & 1) << 2
                count = (counts[byte] >> shift) & 15
            else:
                count = counts[cat + slot]
            if count == 0:
                x = 0.0 - level
            else:
                learned = profile[at + slot] / PROFILE_Q
                x = learned + max(alpha, 1.0 / (count + 1)) * max(
                    -c, min(c, 0.0 - (learned + level))
                )
            q = round(x * PROFILE_Q)
            profile[at + slot] = q if -32767 <= q <= 32767 else (32767 if q > 0 else -32767)
            if count < cap:
                if nibbles:
                    counts[byte] = counts[byte] & (0xF0 >> shift) | (count + 1) << shift
                else:
                    counts[cat + slot] = count + 1
            n += 1.0  # a window counted, as ``_step`` counts it
            if first is not None:  # ``_learn_first``'s silence
                first[2] += 1.0
                if n >= season and first[1] > 0:
                    v[i + _N], v[i + _LAST_K] = n, k
                    self._fix_unit(first)
                    return (k + 1) * 3600
        v[i + _N] = n
        v[i + _LAST_K] = last_k
        return until

    def _silent_run_arrays(self, start: int, until: int) -> int:
        """``_silent_run`` with numpy, up to a season of hours at a time (a slot once each),
        on the row's profile codes and counts: the same float operations in the same order
        (IEEE arithmetic, ``min``/``max`` as Python picks, ``round`` half to even), so the
        same codes; a season at a time, as a later lap reads what an earlier one wrote."""
        hp = self._hp
        rows = self._rows
        v, i = rows.nums, self._row * _WIDTH
        n, level = v[i + _N], v[i + _LEVEL]
        c = self._scale_here().clip_at()
        first = self._first
        season, alpha, cap = hp.season, hp.season_alpha, hp.count_cap
        at = self._row * rows.sizes[_PROFILE]
        profile = np.frombuffer(rows.blocks[_PROFILE], np.int16)[at : at + season]
        size = rows.sizes[_COUNTS]
        packed = np.frombuffer(rows.blocks[_COUNTS], np.uint8)[
            self._row * size : (self._row + 1) * size
        ]
        if cap == 255:
            counts = packed.astype(np.int64)
        else:  # two a byte, the even slot's low
            counts = np.empty(2 * size, np.int64)
            counts[0::2] = packed & 15
            counts[1::2] = packed >> 4
        k, last_k = start // 3600, (until - 1) // 3600
        fixed = False
        while k <= last_k:
            m = min(season, last_k + 1 - k)
            if first is not None and first[1] > 0:
                m = min(m, max(1, math.ceil(season - n)))  # to the hour that fixes the unit
            slots = np.arange(k, k + m) % season
            count = counts[slots]
            learned = profile[slots] / PROFILE_Q
            r = 0.0 - (learned + level)
            r = np.where(r < c, r, c)  # ``min(c, r)``
            r = np.where(r > -c, r, -c)  # ``max(-c, r)``
            step = np.maximum(alpha, 1.0 / (count + 1))  # ``_slot_alpha``
            x = np.where(count == 0, 0.0 - level, learned + step * r)
            profile[slots] = np.clip(np.rint(x * PROFILE_Q), -32767, 32767)
            counts[slots] = np.minimum(count + 1, cap)
            n += m
            k += m
            if first is not None:
                first[2] += m
                if n >= season and first[1] > 0:
                    fixed = True
                    break
        if cap == 255:
            packed[:] = counts
        else:
            packed[:] = counts[0::2] | counts[1::2] << 4
        del profile, packed  # the rows' arrays may grow again
        v[i + _N] = n
        v[i + _LAST_K] = k - 1
        if fixed:
            self._fix_unit(first)  # type: ignore[arg-type]
        return k * 3600

    def quiet_until(self, ts: int, value: float) -> float:
        """Never, for a silent window: a zero is learned as silence, never judged, and an
        unusable value (a cost per call of no calls) is ignored."""
        return math.inf if value == 0.0 or not usable(float(ts), value) else float(ts)

    def _learn_first(self, ts: float, value: float) -> None:
        """The first season's mean window and silences, until the unit is fixed."""
        first = self._first
        if first is not None and usable(ts, value):
            if value > 0:
                first[0] += float(value)
                first[1] += 1.0
            else:
                first[2] += 1.0
            self._fix_unit(first)

    def _fix_unit(self, first: list[float]) -> None:
        """Fix the unit once the first season is seen, with spend in it (``_set_unit``)."""
        if self._n >= self._hp.season and first[1] > 0:
            # Silent windows amid spend say the series is a few calls a window (count
            # noise); a series that never pauses keeps the log scale of its ``unit``.
            lumpy = first[2] >= LUMPY_SHARE * (first[1] + first[2])
            self._set_unit(self._hp.auto_unit * first[0] / first[1] if lumpy else 0.0)

    def _set_unit(self, typical: float) -> None:
        """Fix the unit at ``typical`` (the first season's mean window), re-expressing the profile.

        Why: hourly spend of a few calls an hour is lumpy (one $40 call in a slot that
        expects $2 is 20x), so in pure log space its sigma is huge and a 10x runaway hides
        in it. ``log1p(value / unit)`` with the unit near the series' own mean window is
        about linear below the mean (lumpy quiet hours stop dominating sigma) and log above
        it (a busy series' noise stays multiplicative): close to the variance-stabilising
        transform of compound Poisson spend. The scale is relearned in the new unit.
        """
        new = max(self._hp.unit, typical)
        old, level = self._unit, self._level
        profile, at = self._profile_at()
        expm1, log1p = math.expm1, math.log1p
        for slot in self._learned_slots():  # ``_get`` and ``_set`` inline
            expected = old * expm1(min(profile[at + slot] / PROFILE_Q + level, 700.0))
            profile[at + slot] = _fixed(log1p(max(expected, 0.0) / new))
        self._level = 0.0
        self._unit = new
        self._first = None
        hp = self._hp
        self._scale = BurnScale(fast_z=hp.fast_z, slow_n=hp.slow_n, slow_z=hp.slow_z)

    peeks_partial = True

    def peek(
        self,
        ts: float,
        value: float,
        weight: float = 1.0,
        elapsed: float = 1.0,
        recent: tuple[float, float] | None = None,
    ) -> Verdict:
        """The verdict ``update`` would give, with no state change.

        ``elapsed`` (in (0, 1]) is the share of the window seen so far: the count path then
        judges the calls so far against that share of the slot's calls, as a rate. Why: a
        loop that started ten minutes into an hour has made a fraction of a whole hour's
        calls by minute fifteen, yet calls at many times the slot's rate; judged against the
        whole hour, it shows only when the hour is nearly over. 1.0 (the default) is the
        whole window, as ``update`` judges it.

        ``recent`` is (calls, share of a window) of the last minutes (the watch's last
        quarter hour, which may begin in the window before): judged as a rate the same way,
        with at least ``RECENT_FLOOR`` times the series' mean calls for that share. Why: a
        surge that began at minute 40 is diluted by the 40 normal minutes before it in the
        calls since the top of the hour, not in the last quarter hour's.
        """
        return self._step(ts, value, False, weight, min(1.0, max(elapsed, 1e-3)), recent=recent)

    def _evidence(self, weight: float, learn: bool) -> float:
        """``sqrt`` of this window's weight over the usual one (learned), capped; 1.0 unweighted."""
        if self._hp.count_x or not (weight > 0.0 and math.isfinite(weight)):
            return 1.0  # with the count path, ``weight`` counts calls behind a sum
        usual = self._wmean
        if learn and weight != usual:  # a constant weight (1.0) allocates nothing
            self._wmean = weight if usual == 0.0 else usual + WEIGHT_ALPHA * (weight - usual)
        if usual == 0.0 or weight == usual:
            return 1.0
        return math.sqrt(min(weight / usual, WEIGHT_CAP))

    def _step(
        self,
        ts: float,
        value: float,
        learn: bool,
        weight: float,
        elapsed: float = 1.0,
        quiet: bool = False,
        recent: tuple[float, float] | None = None,
    ) -> Verdict:
        if not usable(ts, value):
            return ignored(value)
        value = float(value)
        hp = self._hp
        k = math.floor(ts / hp.period_s)
        slot = k % hp.season
        v, i = self._rows.nums, self._row * _WIDTH
        last_k = v[i + _LAST_K]  # NaN before any window: no gap
        gap = k > last_k + 1
        if learn:
            if gap:
                self._scale_here().reset_window()  # missing windows: the slow window restarts
            v[i + _LAST_K] = k if last_k != last_k else max(k, last_k)
        unit, level = v[i + _UNIT], v[i + _LEVEL]
        x = math.log1p(value / unit)
        if math.isinf(x):
            return ignored(value)  # only with an absurd unit; never let inf into the state
        # ``quiet`` (``learn`` of a silent window): no verdict, so no label to write.
        label = "" if quiet else slot_label(k, hp.period_s, hp.season)
        # Residuals are judged times ``s``; level and slot learn at ``s**2`` their rate (a
        # weighted mean: a two-call hour teaches less than a forty-call one).
        s = self._evidence(weight, learn)
        count = self._count(slot)
        if count == 0:
            if learn:
                self._set(slot, x - level)
                self._set_count(slot, 1)
                v[i + _N] += 1.0
            if quiet:
                return _QUIET
            return Verdict(0.0, False, None, value, f"first window for {label}; learning")

        learned = self._get(slot)  # the slot's profile value; unchanged until its update below
        mu = learned + level
        expected = unit * math.expm1(min(mu, 700.0))  # e**709 overflows a float
        r = x - mu
        sc = self._scale_here()
        warm = count >= hp.min_slot_n and v[i + _N] >= hp.warmup_n
        if value == 0.0:
            if learn:
                # Silence: nudge this slot (seasonal zeros are real) but leave level and scale.
                self._set(slot, learned + self._slot_alpha(count) * s * sc.clip(r * s))
                self._set_count(slot, count + 1)
                v[i + _N] += 1.0
            if quiet:
                return _QUIET
            return Verdict(0.0, False, expected, value, f"silent window for {label}; no alert")

        # A slot mean from few samples is itself uncertain: widen sigma by sqrt(1 + 1/n_eff),
        # n_eff capped at the EW memory of a slot. This keeps a noisy-low slot plus a legit
        # burst from paging in the third week.
        n_eff = min(count, (2.0 - hp.season_alpha) / hp.season_alpha)
        widen = math.sqrt(1.0 + 1.0 / n_eff)
        fresh = gap and not learn
        ratio = sc.ratio(r * s, widen, fresh=fresh) if warm else 0.0
        sharp_won = False
        if warm and hp.sharp_z and r > 0.0:
            # A sharp spike (an hour or two far over, on a critical service) is too short for
            # the slow window; two windows together that far over are no burst either.
            sharp = sc.pair_z(r * s, fresh=fresh) / hp.sharp_z / widen
            if sharp > ratio:
                ratio, sharp_won = sharp, True
        score = ratio_score(ratio)
        excess = value - expected
        alert = ratio >= 1.0 and excess > hp.min_usd
        reason = self._reason(warm, ratio, value, expected, excess, label, count, elapsed)
        if alert and sharp_won:
            reason = reason.replace(
                "fast and slow windows both high", "this and the last window far over"
            )
        trailing = value + sum(self._last[max(0, len(self._last) + 1 - hp.peak_n) :])
        ceiling = False
        if (
            warm
            and not alert
            and hp.peak_x
            and excess > hp.min_usd
            and k >= v[i + _CEILING_QUIET_K]
            and (peak := self._peak(ts)) > 0  # last: it scans two weeks of daily peaks
        ):
            # However wide sigma is (a sporadic batch job, a few calls an hour), spend at
            # several times the most of the last two weeks is a runaway or a spike; unless
            # the series has since moved up to a new level (a launch the level has taken
            # in): the bar moves up with the level.
            over = trailing / (hp.peak_x * peak * math.exp(max(level, 0.0)))
            if over >= 1.0:
                alert = ceiling = True
                score = max(score, ratio_score(over))
                reason = self._ceiling_reason(trailing, peak, label, elapsed)
        if warm and not alert and hp.count_x and value - expected * elapsed > hp.min_usd:
            before = self._slot_spend((slot - 1) % hp.season, k)
            base = self._count_usual(slot, self._count_spend(learned, level), k, before)
            usual = base if elapsed >= 1.0 else _early_usual(base, before)
            over = self._count_over(weight, usual, elapsed, samples=count)
            if over >= 1.0:
                alert = True
                score = max(score, ratio_score(over))
                reason = self._count_reason(weight, usual, value, label, elapsed, seen=elapsed)
            elif recent is not None and count >= RECENT_MIN_N:
                calls, share = recent
                if usual is base:
                    usual = _early_usual(base, before)
                over = self._count_over(calls, usual, share, RECENT_FLOOR)
                if over >= 1.0:
                    alert = True
                    score = max(score, ratio_score(over))
                    reason = self._count_reason(
                        calls, usual, value, label, share, recent=True, seen=elapsed
                    )
        if not learn:
            return Verdict(score, alert, expected, value, reason)
        # An outage's trickle teaches no calls per dollar (nor does a silence).
        spend = self._count_spend(learned, level) if hp.count_x else 0.0
        outage = bool(hp.count_x) and self._outage(weight, spend, sc)
        if hp.count_x and not outage:
            self._learn_sums(weight, spend)

        # Learn: scale and slow window first, then the level (a robust jump on a shift), then slot.
        sc.learn(r * s)
        jump = sc.shift(hp.shift_n)  # a median of weighted residuals: about unweighted ones
        if jump is not None:
            step = hp.level_alpha_fast * jump
        else:
            step = hp.level_alpha * s * sc.clip(r * s)
        if outage and step < 0.0:
            # Down to the profile at most: a runaway the level took in must still leave it.
            step = max(step, min(0.0, -level))
        level += step
        v[i + _LEVEL] = level
        r2 = x - learned - level
        self._set(slot, learned + self._slot_alpha(count) * s * sc.clip(r2 * s))
        self._set_count(slot, count + 1)
        v[i + _N] += 1.0
        self._learn_peak(ts, trailing)
        if ceiling:
            # The trailing sum stays high while it holds this window: one alert per span.
            v[i + _CEILING_QUIET_K] = k + hp.peak_n
        if hp.peak_n > 1:
            self._last = (*self._last, value)[1 - hp.peak_n :]
        elif self._last:
            self._last = ()  # a retune lowered ``peak_n`` to one: nothing is summed any more
        return Verdict(score, alert, expected, value, reason)

    def _peak(self, ts: float) -> float:
        """Highest window of the trailing ``peak_days`` days before the day of ``ts``."""
        peak_day = self._peak_day
        if peak_day is None:
            return 0.0
        day = math.floor(ts / 86400.0)
        age = day - peak_day
        if age >= self._hp.peak_days:
            return 0.0  # all of it is older than the horizon
        # Earlier days only: a runaway's own first hours must not raise today's bar.
        n, peaks = self._hp.peak_days, self._hp.season
        profile, at = self._profile_at()
        peaks += at
        code = max(
            (profile[peaks + d % n] for d in range(day - n + 1, min(day, peak_day + 1))),
            default=EMPTY,
        )
        return 0.0 if code == EMPTY else decode(code)

    def _learn_peak(self, ts: float, value: float) -> None:
        day = math.floor(ts / 86400.0)
        n, peaks = self._hp.peak_days, self._hp.season
        profile, at = self._profile_at()
        peaks += at
        v, i = self._rows.nums, self._row * _WIDTH + _PEAK_DAY
        peak_day = v[i]  # NaN: none yet
        if peak_day != peak_day or day - peak_day >= n:
            profile[peaks : peaks + n] = array("h", [EMPTY]) * n
            v[i] = day
        elif day > peak_day:
            for d in range(int(peak_day) + 1, day + 1):
                profile[peaks + d % n] = EMPTY
            v[i] = day
        elif day < peak_day:
            return  # an out-of-order window older than today: keep the ring as it is
        if value > 0.0 and (code := encode(value)) > profile[peaks + day % n]:
            profile[peaks + day % n] = code

    def _sums(self) -> tuple[float, float]:
        """EW sums of calls and of expected spend (0.0 before any)."""
        profile, at = self._profile_at()
        at += self._hp.season + self._hp.peak_days
        calls, spend = profile[at], profile[at + 1]
        return (
            0.0 if calls == EMPTY else decode(calls),
            0.0 if spend == EMPTY else decode(spend),
        )

    def _learn_sums(self, weight: float, expected: float) -> None:
        if not (weight >= 0.0 and math.isfinite(weight)) or not expected > 0.0:
            return
        calls, spend = self._sums()
        calls = SUMS_DECAY * calls + weight
        spend = SUMS_DECAY * spend + expected
        profile, at = self._profile_at()
        at += self._hp.season + self._hp.peak_days
        profile[at] = encode(calls) if calls > 0.0 else EMPTY
        profile[at + 1] = encode(spend)

    def _expected_calls(self, expected: float) -> tuple[float, float]:
        """(calls expected in this window, the series' mean calls per window); 0s if unknown."""
        calls, spend = self._sums()
        if not (calls > 0.0 and spend > 0.0):
            return 0.0, 0.0
        return expected * calls / spend, calls * (1.0 - SUMS_DECAY)

    def _count_usual(self, slot: int, expected: float, k: int, before: float | None) -> float:
        """The spend a count test's calls are judged against: the slot's, or, when it is
        under both hours beside it (``before``: the slot before's, ``_slot_spend``),
        halfway (in log terms) to the lower of them. Why: a slot
        is learned from three or four hours by the third week, and a few calls an hour make
        its mean noisy (seen: a slot at a third of the hours around it, where a legitimate
        burst then read 8x); hours side by side share most of their rate, so a slot under
        both is partly a slot learned low by chance, partly a real dip (or its neighbours
        learned high: one dear call's hour). Never lowered: a slot over its neighbours is a
        peak (a nightly batch hour), whose bursts must not read larger."""
        after = self._slot_spend((slot + 1) % self._hp.season, k)
        if before is None or after is None or min(before, after) <= expected or expected <= 0.0:
            return expected
        return math.sqrt(expected * min(before, after))

    def _slot_spend(self, slot: int, k: int) -> float | None:
        """Slot ``slot``'s expected spend (None: never learned); the slot of window ``k -
        1`` as it was before it learned that window, which may hold this surge's own start
        (a spike from 23:33 made 23:00 look busy, and the hour after judged the spike's
        calls against it: 48 calls where 2.4 are usual paged only at the close)."""
        count = self._count(slot)
        if not count:
            return None
        learned, level = self._get(slot), self._level
        if self._last_k == k - 1 and slot == (k - 1) % self._hp.season and count > 1:
            level_rise, slot_rise = self._last_rise(count - 1)
            learned, level = learned - slot_rise, level - level_rise
        return self._count_spend(learned, level)

    def _count_spend(self, learned: float, level: float) -> float:
        """A slot's expected spend for the count test: a level under zero taken as a factor.
        Why: in log1p units a level step is a factor only for slots well over the unit; for
        a quiet slot it is nearly a sum, so three low hours that stepped the level down by
        0.35 took a $38 slot to $2.60 (seen: a legitimate burst then read 31x, "17 calls
        where 0.5 are usual"). A level over zero stays as the spend test reads it: taken as
        a factor too, it paged more on seeds 0-4 (39 false pages to 56, a spike lost)."""
        up, down = max(level, 0.0), min(level, 0.0)
        return self._unit * math.expm1(min(learned + up, 700.0)) * math.exp(down)

    def _last_rise(self, count: int) -> tuple[float, float]:
        """How far the window learned last raised the level and its slot's profile value (log1p
        units; 0s for a window under it), recomputed from the slow window: nothing has been
        learned since. ``count`` is the slot's count before it."""
        hp, sc = self._hp, self._scale_here()
        if not sc.recent or sc.recent[-1] <= 0.0:
            return 0.0, 0.0
        r = sc.recent[-1]
        jump = sc.shift(hp.shift_n)
        level = hp.level_alpha_fast * jump if jump is not None else hp.level_alpha * sc.clip(r)
        return level, self._slot_alpha(count) * sc.clip(r - level)

    def _outage(self, weight: float, expected: float, sc: BurnScale) -> bool:
        """Whether this window's ``weight`` calls are an outage's trickle: under OUTAGE_X of
        the slot's expected calls, that few with Poisson chance under OUTAGE_ALPHA, and the
        window before over OUTAGE_Z sigmas under too (``sc``: the scale, not yet taught this
        window).

        Such a window may bring a level raised over the profile back down to it, not under,
        and teaches no calls per dollar. Why: an outage's hours at a few percent of their
        calls pulled the level down as real quiet hours do, and three of them in a row
        jumped it down as a new level would: a key of 20-60 calls an hour came back from a
        12-hour outage read at 20x and paged; the bench's few-calls outage keys read 0.82x
        for a day and a legitimate burst paged. A few-calls key's low hour is no outage
        (one call where four are usual: 9 %, and alone): it teaches as before, both ways.
        """
        if not (weight >= 0.0 and math.isfinite(weight)):
            return False
        slot_calls = self._expected_calls(expected)[0]
        if not weight < OUTAGE_X * slot_calls:
            return False
        recent = sc.recent
        if not recent or recent[-1] >= -OUTAGE_Z * sc.sigma():
            return False
        return 1.0 - _poisson_sf(weight + 1.0, slot_calls) < OUTAGE_ALPHA

    def _count_over(
        self,
        weight: float,
        expected: float,
        elapsed: float = 1.0,
        floor: float | None = None,
        samples: int = RECENT_MIN_N,
    ) -> float:
        """This window's calls over the count bar (>= 1: a count alert).

        The bar is ``count_x`` times the slot's expected calls, at least ``count_floor``
        times the series' mean calls per window (a loop adds at least several windows' worth
        of calls an hour; a quiet slot's own calls say little). A few calls more are also
        judged as counts: their tail probability under twice the expected calls (slot
        expectations are noisy; calls come in clumps) must be under COUNT_ALPHA. With
        ``elapsed`` under 1 (an early look), both are that share of the window's, and the
        chance test allows for a burst (BURST_X). ``floor`` replaces ``count_floor``. A slot
        learned from fewer than RECENT_MIN_N ``samples`` is allowed its uncertainty too.
        """
        if not (weight >= COUNT_MIN and math.isfinite(weight)):
            return 0.0
        slot_calls, mean_calls = self._expected_calls(expected)
        slot_calls, mean_calls = slot_calls * elapsed, mean_calls * elapsed
        if mean_calls <= 0.0:
            return 0.0
        hp = self._hp
        least = hp.count_floor if floor is None else floor
        bar = max(COUNT_MIN, hp.count_x * slot_calls, least * mean_calls)
        over = weight / bar
        null = (2.0 if elapsed >= 1.0 else BURST_X) * max(slot_calls, 0.25 * mean_calls)
        if samples < RECENT_MIN_N:
            # Third week: a slot from one or two hours (seen: 29 calls where 3.2 were usual
            # paged a legitimate burst). Its hourly calls, at the band's top.
            hourly = max(slot_calls / elapsed, 0.25 * mean_calls / elapsed, 1.0)
            null *= math.exp(
                YOUNG_Z * math.sqrt(1.0 / (samples * hourly) + YOUNG_SPREAD**2 / samples)
            )
        if over >= 1.0 and _poisson_sf(weight, null) >= COUNT_ALPHA:
            return 0.999  # over the bar, but a few calls more could be chance
        return over

    def _count_reason(
        self,
        weight: float,
        expected: float,
        value: float,
        label: str,
        elapsed: float,
        recent: bool = False,
        seen: float = 1.0,
    ) -> str:
        """``seen``: the share of the window ``value`` (its spend so far) covers. Short of the
        whole window the spend is set against that share of the expected, not per window:
        "spend $7.80/h vs $9.80/h expected" five minutes into an hour read as under."""
        slot_calls, _ = self._expected_calls(expected)
        rate = per(self._hp.period_s)
        if seen < 1.0:
            spend = f"spend {usd(value)} so far vs {usd(expected * seen)} expected by then"
        else:
            spend = f"spend {usd(value)}{rate} vs {usd(expected)}{rate} expected"
        if recent:
            slot_calls *= elapsed
            minutes = elapsed * self._hp.period_s / 60.0
            label = f"the last {minutes:.0f} minutes at {label}"
        elif elapsed < 1.0:
            slot_calls *= elapsed
            label = f"the first {elapsed:.0%} of {label}"
        return (
            f"{weight:g} calls for {label} where {slot_calls:.1f} are usual "
            f"({weight / max(slot_calls, 1e-9):.0f}x); {spend}"
        )

    def _count(self, slot: int) -> int:
        """Samples this slot has learned, up to ``count_cap`` (which also fixes the layout)."""
        rows = self._rows
        counts, at = rows.blocks[_COUNTS], self._row * rows.sizes[_COUNTS]
        if self._hp.count_cap == 255:
            return counts[at + slot]
        return (counts[at + (slot >> 1)] >> ((slot & 1) << 2)) & 15

    def _set_count(self, slot: int, count: int) -> None:
        cap = self._hp.count_cap
        if count > cap:
            count = cap
        rows = self._rows
        counts, at = rows.blocks[_COUNTS], self._row * rows.sizes[_COUNTS]
        if cap == 255:
            counts[at + slot] = count
        else:
            shift = (slot & 1) << 2
            i = at + (slot >> 1)
            counts[i] = counts[i] & (0xF0 >> shift) | count << shift

    def _learned_slots(self) -> list[int]:
        """The slots with a count (``_count``), read off the row's counts at once."""
        rows, season = self._rows, self._hp.season
        counts, at = rows.blocks[_COUNTS], self._row * rows.sizes[_COUNTS]
        if self._hp.count_cap == 255:
            return [s for s in range(season) if counts[at + s]]
        row = counts[at : at + rows.sizes[_COUNTS]]
        return [s for s in range(season) if row[s >> 1] >> ((s & 1) << 2) & 15]

    def _slot_alpha(self, count: int) -> float:
        return max(self._hp.season_alpha, 1.0 / (count + 1))

    def _ceiling_reason(self, trailing: float, peak: float, label: str, seen: float = 1.0) -> str:
        hp = self._hp
        times = f"{trailing / peak:.1f}x the most in any"
        if hp.peak_n == 1:
            window = _WINDOW_NAMES.get(float(hp.period_s), "window")
            rate = per(hp.period_s)
            if seen < 1.0:  # the spend so far, not a rate (``_reason``)
                return (
                    f"spend {usd(trailing)} in the first {seen:.0%} of {label}, already "
                    f"{times} {window} of the last {hp.peak_days} days ({usd(peak)})"
                )
            return (
                f"spend {usd(trailing)}{rate} for {label}, {times} {window} of the last "
                f"{hp.peak_days} days ({usd(peak)}{rate})"
            )
        n = min(len(self._last), hp.peak_n - 1) + 1
        return (
            f"spend {usd(trailing)} in the last {n} windows, {times} {hp.peak_n} windows "
            f"of the last {hp.peak_days} days ({usd(peak)})"
        )

    def _reason(
        self,
        warm: bool,
        ratio: float,
        value: float,
        expected: float,
        excess: float,
        label: str,
        count: int,
        seen: float = 1.0,
    ) -> str:
        """``seen``: the share of the window ``value`` (its spend so far) covers; short of
        all of it, the spend is not a rate ("$254/h" twenty minutes into an hour was $254
        in those twenty minutes)."""
        rate = per(self._hp.period_s)
        times = f"{value / expected:.1f}x" if expected > 0 else "from zero"
        if seen < 1.0:
            whole = f"{times} the " if expected > 0 else ""
            head = (
                f"spend {usd(value)} in the first {seen:.0%} of {label}, already {whole}"
                f"{usd(expected)} expected for all of it"
            )
        else:
            head = (
                f"spend {usd(value)}{rate} vs {usd(expected)}{rate} expected for {label} ({times})"
            )
        if not warm:
            return f"{head}; warming up ({count} of {self._hp.min_slot_n} samples for this slot)"
        if ratio < 1.0:
            return f"{head}; within the usual range"
        if excess <= self._hp.min_usd:
            return f"{head}; under the {usd(self._hp.min_usd)} impact floor"
        return f"{head}, fast and slow windows both high"


#: The numbers' layout, each also readable by name (``SeasonalBaseline._level``...), then
#: the blocks': ``Rows`` per (season, peak days, counts layout).
_NUMBERS = numbers(
    SeasonalBaseline,
    {
        "_level": float,
        "_n": int,
        "_last_k": None,
        "_peak_day": None,
        "_ceiling_quiet_k": int,
        "_unit": float,
        "_wmean": float,
    },
    blocks=("_profile", "_counts"),
    byte_blocks=("_counts",),
    held=("_first", "_last"),
)
_LEVEL, _N, _LAST_K, _PEAK_DAY, _CEILING_QUIET_K, _UNIT, _WMEAN = range(7)
_WIDTH = len(_NUMBERS)
_PROFILE, _COUNTS, _SCALE = 0, 1, 2


def _poisson_sf(n: float, mu: float) -> float:
    """P(N >= n) for N ~ Poisson(mu), summed in log space (no overflow at any size)."""
    k_max = math.ceil(n) - 1
    if k_max < 0:
        return 1.0
    if mu <= 0.0:
        return 0.0
    if k_max > 50_000:
        z = (n - 0.5 - mu) / math.sqrt(mu)  # far past any hour's calls: normal approximation
        return 0.5 * math.erfc(z / math.sqrt(2.0))
    log_mu = math.log(mu)
    log_terms = [k * log_mu - mu - math.lgamma(k + 1.0) for k in range(k_max + 1)]
    top = max(log_terms)
    cdf = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return max(0.0, 1.0 - cdf)


def _early_usual(expected: float, before: float | None) -> float:
    """The spend an early look's calls are judged against: this slot's, or the slot before's
    (``before``) if larger. Why: the part of an hour seen may be a burst begun in the hour
    before, at a few times that hour's rate; after a busy hour (a nightly batch window
    closing) that is many times a quiet slot's rate, and it paused a batch key."""
    return expected if before is None else max(expected, before)


def _fixed(x: float) -> int:
    """``x`` log units as a profile code (``PROFILE_Q``), saturating at the int16 range."""
    q = round(x * PROFILE_Q)
    return q if -32767 <= q <= 32767 else (32767 if q > 0 else -32767)


def _from_dict_layout(old: dict[str, Any]) -> dict[str, Any]:
    """Slot values for a detector pickled when it kept an instance dict (up to 2026-11).

    That dict held every hyperparameter by name; ``auto_unit`` and ``sharp_z`` came later,
    and a snapshot from before them learned its profile in ``unit`` (no ``_unit``, no
    ``_first``: it keeps its unit).
    """
    names = [f.name for f in _BaselineParams.__dataclass_fields__.values() if f.init]
    defaults = {"auto_unit": 1.0, "sharp_z": 6.0, "count_x": 0.0, "count_floor": 0.5}
    hp = share(_BaselineParams(*(old[n] if n in old else defaults[n] for n in names)))
    state = {k: v for k, v in old.items() if k.startswith("_")}
    state["_hp"] = hp
    state.setdefault("_unit", hp.unit)
    state.setdefault("_first", None)
    state["_last"] = tuple(state["_last"])
    return state
