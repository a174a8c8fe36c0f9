"""The report benchmark runs end to end on a small store (figures are not checked)."""

from __future__ import annotations

from bench.bench_report import main


def test_bench_report_runs_on_a_small_store() -> None:
    out = main(["--series", "20", "--traces", "2000", "--writes", "1", "--json"])
    assert out["rollup_rows"] == 20 * 184 * 25  # hourly + daily windows, May to October
    assert set(out["timings_ms"]) >= {"report --by team", "chart query (team x model)"}
    assert out["write_s"] > 0 and out["write_empty_s"] > 0
