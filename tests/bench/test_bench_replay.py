"""The replay benchmark runs end to end on a small file (speeds are not checked)."""

from __future__ import annotations

import orjson
import pytest

from bench.bench_replay import main


def test_bench_replay_counts_every_event_and_finds_the_injected_incidents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["--events", "20000", "--weeks", "2", "--customers", "5000", "--rounds", "2", "--json"])
    out = orjson.loads(capsys.readouterr().out)
    assert out["rounds"] == 2
    low, high = map(float, out["two_process_over_bare_range"].split("-"))
    assert low <= out["two_process_over_bare"] <= high
    assert out["events"] == out["replay_valid"] == 20_000
    assert out["replay_alerts"] > 0  # the batch runaway and the spike are in the file
    assert out["bare_events_per_s"] > 0 and out["replay_events_per_s"] > 0
    target = out["target_events_per_s"]
    assert out["target_met_one_process"] == (out["replay_events_per_s"] >= target)
    assert out["target_met_two_processes"] == (out["two_process_events_per_s"] >= target)
    assert out["two_process_cpu_us_per_event"] > 0 and out["two_process_speedup"] > 0
    # The flood, in one process and in two (the bench stops if the two count differently).
    assert out["flood_customers"] == 5000 and out["flood_alerts"] > 0
    assert out["flood_two_process_events_per_s"] > 0 and out["flood_two_process_slowdown"] > 0
