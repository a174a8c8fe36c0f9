"""The trend test's trade: how soon ``wow`` finds a creep against how many trend items it
raises on keys with nothing to find, per ``creep_z``.

Why: issue 18 asks for every creep within 10 days; a slow creep (+35 % a week, +4.4 % a
day) on a key whose daily spend swings 13-15 % stands out of that noise only after about a
week, so the bar is a trade of digest noise for days. This measures the trade on the
detection scenarios (``bench.scenarios``) with ``wow`` alone on each key's hourly spend,
many seeds in seconds (``python -m bench detect`` runs the whole engine, minutes a seed):

- **slow creeps** and **creeps**: days from the start to the first alert at or after it
  (median, latest, how many past 10 days; never found counts as past);
- **false trend items**: alerts after the warm-up on keys of no incident (launches left
  out: a launch is news for the digest), per 100 key-weeks.

    python -m bench trend --seeds 0-9 --creep-z 2.75,2.5,2.25,2.0

The default config's ``wow`` parameters, ``creep_z`` (and ``--creep-alpha``, ``--creep-rise``)
replaced.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from bench.bench_detect import seed_list
from bench.scenarios import DAY, HOUR, WEEK, generate
from spendbrake.detectors import make_detector
from spendbrake.schemas import Config

#: Days a creep must be found within (issue 18).
WITHIN_DAYS = 10.0


@dataclass
class TrendScore:
    """One ``creep_z``'s figures over the seeds run."""

    slow_days: list[float] = field(default_factory=list)
    creep_days: list[float] = field(default_factory=list)
    false_items: int = 0
    key_weeks: float = 0.0

    def row(self) -> dict[str, Any]:
        def latest(days: list[float]) -> float | str | None:
            if not days:
                return None
            return round(max(days), 1) if max(days) < np.inf else "never (one at least)"

        return {
            "slow creeps, median days": round(float(np.median(self.slow_days)), 1),
            "slow creeps, latest days": latest(self.slow_days),
            "slow creeps past 10 days": sum(d > WITHIN_DAYS for d in self.slow_days),
            "slow creeps": len(self.slow_days),
            "creeps, latest days": latest(self.creep_days),
            "false trend items": self.false_items,
            "false trend items / 100 key-weeks": round(
                100.0 * self.false_items / self.key_weeks, 1
            ),
        }


def wow_params(**override: float) -> dict[str, Any]:
    """The default config's ``wow`` parameters, with ``override``."""
    entry = next(d for d in Config().detectors if d.kind == "wow")
    return {**entry.params, **override}


def score_seed(seed: int, series: int, params: list[dict[str, Any]]) -> list[TrendScore]:
    """Each parameter set's figures on one seed's scenarios."""
    scenarios = generate(seed=seed, series=series)
    labels = scenarios.labels
    spend = scenarios.hourly_spend()
    hours = labels.start_ts + HOUR * np.arange(spend.shape[1])
    scores = [TrendScore() for _ in params]
    for row, label in enumerate(labels.series):
        creep = label.scenario in ("slow_creep", "creep")
        if not creep and (label.incident or label.scenario == "launch"):
            continue
        values = spend[row].tolist()
        for p, s in zip(params, scores, strict=True):
            wow = make_detector("wow", **p)
            alerts = [
                t
                for t, v in zip(hours.tolist(), values, strict=True)
                if wow.update(t, v).is_anomaly
            ]
            if creep:
                start = label.intervals[0].start
                found = [t for t in alerts if t >= start]
                days = (found[0] - start) / DAY if found else np.inf
                (s.slow_days if label.scenario == "slow_creep" else s.creep_days).append(days)
            else:
                s.false_items += sum(t >= labels.scored_from for t in alerts)
                s.key_weeks += (labels.end_ts - labels.scored_from) / WEEK
    return scores


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="0-4")
    parser.add_argument("--series", type=int, default=20, help="series per scenario (20)")
    parser.add_argument(
        "--creep-z", default="2.75,2.5,2.25,2.0", help="comma-separated values (2.75,2.5,2.25,2.0)"
    )
    parser.add_argument("--creep-alpha", type=float, help="creep_alpha (the default config's)")
    parser.add_argument(
        "--creep-rise", type=float, help="creep_rise (the default config's; 0: no least rise)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        zs = [float(z) for z in args.creep_z.split(",") if z.strip()]
    except ValueError:
        parser.error(f"--creep-z {args.creep_z!r}: use numbers like 2.75,2.5")
    extra = {} if args.creep_alpha is None else {"creep_alpha": args.creep_alpha}
    if args.creep_rise is not None:
        extra["creep_rise"] = args.creep_rise
    params = [wow_params(creep_z=z, **extra) for z in zs]
    totals = [TrendScore() for _ in params]
    for seed in args.seeds:
        print(f"seed {seed} ...", flush=True)
        for total, s in zip(totals, score_seed(seed, args.series, params), strict=True):
            total.slow_days += s.slow_days
            total.creep_days += s.creep_days
            total.false_items += s.false_items
            total.key_weeks += s.key_weeks
    rows = [{"creep_z": z, **t.row()} for z, t in zip(zs, totals, strict=True)]
    if args.json:
        print(orjson.dumps(rows).decode())
        return rows
    seeds = ", ".join(map(str, args.seeds))
    print(f"\nwow alone on each key's hourly spend, seeds {seeds}, {args.series} series a scenario")
    print("| " + " | ".join(rows[0]) + " |")
    print("| " + " | ".join("---" for _ in rows[0]) + " |")
    for row in rows:
        print("| " + " | ".join("-" if v is None else str(v) for v in row.values()) + " |")
    return rows
