"""``python -m bench trend``: the creep test's trade, scored on the detection scenarios."""

from __future__ import annotations

import math

from bench import bench_trend
from bench.bench_trend import TrendScore


def test_a_creep_never_found_counts_past_the_ten_days() -> None:
    row = TrendScore([3.0, 9.5, math.inf], [4.0], false_items=3, key_weeks=150.0).row()
    assert row["slow creeps past 10 days"] == 1 and row["slow creeps"] == 3
    assert (
        row["slow creeps, median days"] == 9.5 and row["false trend items / 100 key-weeks"] == 2.0
    )


def test_it_scores_each_creep_z_on_the_same_series(capsys) -> None:
    rows = bench_trend.main(["--seeds", "0", "--series", "2", "--creep-z", "2.75,0"])
    assert [r["creep_z"] for r in rows] == [2.75, 0.0]
    assert all(r["slow creeps"] == 2 for r in rows)
    # creep_z 0 turns the creep test off: only steps are left to find a slow creep, late.
    on, off = rows
    assert off["slow creeps, median days"] > on["slow creeps, median days"]
    assert "| creep_z |" in capsys.readouterr().out
    # --creep-rise 0: no least rise (the default until 2026-12-07), more false items or as many.
    [none] = bench_trend.main(
        ["--seeds", "0", "--series", "2", "--creep-z", "2.75", "--creep-rise", "0"]
    )
    assert none["false trend items"] >= on["false trend items"]
