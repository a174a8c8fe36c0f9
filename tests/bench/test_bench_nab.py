"""The NAB bench on a tiny NAB-shaped checkout: the replica scorer's bounds, the results
files NAB's own scorer reads, the command end to end. (The figures on the real corpus
were checked against NAB's scorer: see docs/evaluation.md and docs/benchmarks.md.)"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import bench_nab as nab


def _checkout(root: Path) -> Path:
    """Two series of 400 five-minute records, one window each, a spike in each window."""
    labels: dict[str, list[list[str]]] = {}
    for category, name, spike in (("realA", "a.csv", 300), ("realB", "b.csv", 250)):
        folder = root / "data" / category
        folder.mkdir(parents=True)
        with open(folder / name, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["timestamp", "value"])
            for i in range(400):
                value = 10.0 + (i % 5) * 0.2 + (40.0 if i == spike else 0.0)
                out.writerow([_stamp(i), value])
        labels[f"{category}/{name}"] = [
            [_stamp(spike - 20) + ".000000", _stamp(spike + 20) + ".000000"]
        ]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_bytes(orjson.dumps(labels))
    return root


def _stamp(i: int) -> str:
    minutes = i * 5
    return f"2015-03-{1 + minutes // 1440:02d} {minutes % 1440 // 60:02d}:{minutes % 60:02d}:00"


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[nab.DataFile]]:
    root = _checkout(tmp_path / "NAB")
    return root, nab.load_corpus(root)


def test_windows_map_to_record_indices(corpus: tuple[Path, list[nab.DataFile]]) -> None:
    _, files = corpus
    assert [f.path for f in files] == ["realA/a.csv", "realB/b.csv"]
    assert files[0].windows == ((280, 320),) and files[1].windows == ((230, 270),)


def test_null_scores_zero_and_a_perfect_detector_one_hundred(
    corpus: tuple[Path, list[nab.DataFile]],
) -> None:
    _, files = corpus
    null = [[0.0] * len(f.values) for f in files]
    assert nab.nab_score(files, null)[0] == pytest.approx(0.0)
    perfect = [[1.0 if k == f.windows[0][0] else 0.0 for k in range(len(f.values))] for f in files]
    assert nab.nab_score(files, perfect)[0] == pytest.approx(100.0)
    # The same detection at the labeled point (mid-window) earns less; one false positive
    # far from any window costs the profile's weight.
    late = [
        [1.0 if k in (f.windows[0][0] + 20, 100) else 0.0 for k in range(len(f.values))]
        for f in files
    ]
    normalized, raw, _ = nab.nab_score(files, late)
    mid = nab._sigmoid_scaled(-21 / 41) / nab._sigmoid_scaled(-1.0)  # 21 records from the end
    assert raw == pytest.approx(2 * mid - 2 * 0.11)
    assert normalized < 100.0


def test_the_generic_detector_catches_both_spikes_once(
    corpus: tuple[Path, list[nab.DataFile]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = corpus
    out: dict[str, Any] = nab.main(["--nab-dir", str(root), "--json"])
    assert out["detector"] == "generic" and out["params"] == {"signed": True}
    assert out["profiles"]["standard"]["score"] > 90.0
    written = root / "results" / "spendbrake" / "realA" / "spendbrake_a.csv"
    with open(written, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == 400 and sum(int(r["label"]) for r in rows) == 41
    high = [i for i, r in enumerate(rows) if float(r["anomaly_score"]) >= 0.5]
    assert high == [300]
    assert orjson.loads(capsys.readouterr().out)["files"] == 2


def test_a_directory_that_is_no_nab_checkout_is_named(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_bytes(b"{}")
    with pytest.raises(SystemExit, match=r"no data/\*/\*.csv under"):
        nab.load_corpus(tmp_path)
