"""The columnar measurement gives the Python rollup half's records, step by step and in
order, on a small file (its CPU figures are not checked)."""

from __future__ import annotations

import orjson
import pytest

from bench.bench_columnar import main


def test_duckdb_gives_the_python_halfs_records(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--events", "20000", "--weeks", "3", "--duplicates", "0.05", "--threads", "1", "--json"])
    out = orjson.loads(capsys.readouterr().out)
    assert out["records"] > out["steps"] > 1000 and out["copies_resent"] > 500
    assert out["first_difference"] is None
    assert out["same_records"] and out["records_differing"] == 0
    assert out["python_cpu_s"] > 0 and out["duckdb_cpu_s"] > 0
