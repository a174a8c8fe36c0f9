"""A detector on the Numenta Anomaly Benchmark (NAB): 58 public real-world and artificial
series, scored as NAB scores them.

Why: our own scenarios are LLM spend; NAB says how the generic mode does on metrics that
are not dollars (CPU, latency, traffic, temperatures, tweet counts), against published
detectors (HTM 70.1, ARTime 74.9, Windowed Gaussian 39.6 on the standard profile).

Reads a local NAB checkout (``git clone https://github.com/numenta/NAB``, or an archive of
it; nothing is downloaded here): its ``data/`` and ``labels/combined_windows.json``. Runs
the detector over every file in order, one ``update`` a record (the record's own time,
its value), and writes NAB results files (``results/<name>/<category>/<name>_<file>.csv``:
timestamp, value, anomaly_score = the verdict's score, label) so NAB's own scorer can
score them:

    python -m bench nab --nab-dir PATH                      # write results, print our score
    cd PATH && python run.py -d spendbrake --optimize --score --normalize --skipConfirmation

NAB's scorer needs pandas 1.x and Python 3 (a throwaway venv: ``pip install 'pandas<2'
'numpy<2' simplejson``); it is no dependency of ours. The score printed here is a
replica of NAB's sweep (one threshold for the whole corpus, chosen as NAB's optimizer
does, each profile's costs, normalized between the null detector and a perfect one), so
the detector can be tuned without it; the figure to report is NAB's own.

    python -m bench nab --nab-dir PATH [--detector generic] [--param k=v ...]
        [--name spendbrake] [--no-write] [--json]
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from spendbrake.detectors import make_detector

#: NAB's default: the first 15 % of a file (at most 750 records) is not scored.
PROBATION = 0.15
#: NAB's application profiles: (true-positive, false-negative, false-positive) weights.
PROFILES = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}
#: NAB's values may be negative (one file): data, not invalid spend.
SIGNED: dict[str, Any] = {"signed": True}


@dataclass(frozen=True)
class DataFile:
    """One NAB series: its path under ``data/``, record times, values and label windows."""

    path: str
    stamps: tuple[str, ...]
    times: tuple[float, ...]
    values: tuple[float, ...]
    #: (first, last) record index of each labeled window.
    windows: tuple[tuple[int, int], ...]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def load_corpus(nab_dir: Path) -> list[DataFile]:
    """Every ``data/*/*.csv`` with its windows from ``labels/combined_windows.json``."""
    labels = orjson.loads((nab_dir / "labels" / "combined_windows.json").read_bytes())
    files = sorted((nab_dir / "data").glob("*/*.csv"))
    if not files:
        raise SystemExit(f"--nab-dir: no data/*/*.csv under {nab_dir} (a NAB checkout?)")
    out = []
    for f in files:
        rel = f"{f.parent.name}/{f.name}"
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        stamps = tuple(r["timestamp"] for r in rows)
        times = tuple(_epoch(s) for s in stamps)
        windows = []
        for start, end in labels.get(rel, []):
            i = bisect.bisect_left(times, _epoch(start))
            j = bisect.bisect_right(times, _epoch(end)) - 1
            windows.append((i, j))
        values = tuple(float(r["value"]) for r in rows)
        out.append(DataFile(rel, stamps, times, values, tuple(windows)))
    return out


def run_detector(
    corpus: Sequence[DataFile], kind: str, params: dict[str, Any]
) -> list[list[float]]:
    """Each file's verdict scores, one fresh detector a file, records in order."""
    out = []
    for f in corpus:
        detector = make_detector(kind, **params)
        out.append([detector.update(t, v).score for t, v in zip(f.times, f.values, strict=True)])
    return out


def _sigmoid_scaled(position: float) -> float:
    """NAB's scaled sigmoid: 0.987 at a window's left edge, 0 at its right, to -1 past it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def _sweep_rows(
    f: DataFile, scores: Sequence[float], profile: str
) -> list[tuple[float, float, int]]:
    """(score, weighted reward, window id or -1) of each scored record, as NAB's sweeper."""
    tp_w, _, fp_w = PROFILES[profile]
    n = len(scores)
    probation = min(math.floor(PROBATION * n), PROBATION * 5000)
    max_tp = _sigmoid_scaled(-1.0)
    rows = []
    window_of = [-1] * n
    for w, (i, j) in enumerate(f.windows):
        for k in range(i, j + 1):
            window_of[k] = w
    prev_right: int | None = None
    prev_width = 0.0
    for k in range(n):
        w = window_of[k]
        if w >= 0:
            i, j = f.windows[w]
            width = float(j - i + 1)
            reward = _sigmoid_scaled(-(j - k + 1) / width) * tp_w / max_tp
            if k == j:
                prev_right, prev_width = k, width
        elif prev_right is None:
            reward = -1.0 * fp_w
        else:
            reward = _sigmoid_scaled(abs(prev_right - k) / (prev_width - 1.0)) * fp_w
        if k >= probation:
            rows.append((scores[k], reward, w))
    return rows


def nab_score(
    corpus: Sequence[DataFile], scores: Sequence[Sequence[float]], profile: str = "standard"
) -> tuple[float, float, float]:
    """(normalized score, raw score, threshold): the best single threshold over the corpus,
    swept as NAB's ``Sweeper.calcScoreByThreshold`` does, normalized against the null
    detector (every window missed) and a perfect one (every window caught at its start)."""
    _, fn_w, _ = PROFILES[profile]
    rows: list[tuple[float, float, int, int]] = []
    windows = 0
    for n, (f, s) in enumerate(zip(corpus, scores, strict=True)):
        windows += len(f.windows)
        rows.extend((sc, reward, w, n) for sc, reward, w in _sweep_rows(f, s, profile))
    rows.sort(key=lambda r: r[0], reverse=True)
    scored_windows = {(n, w) for _, _, w, n in rows if w >= 0}
    best_window: dict[tuple[int, int], float] = {key: -fn_w for key in scored_windows}
    window_sum = -fn_w * len(scored_windows)
    fp_sum = 0.0
    best = (window_sum, 1.1)
    current = 1.1
    for sc, reward, w, n in rows:
        if sc != current:
            total = window_sum + fp_sum
            if total > best[0]:
                best = (total, current)
            current = sc
        if w < 0:
            fp_sum += reward
        else:
            key = (n, w)
            if reward > best_window[key]:
                window_sum += reward - best_window[key]
                best_window[key] = reward
    total = window_sum + fp_sum
    if total > best[0]:
        best = (total, current)
    null = -fn_w * len(scored_windows)
    perfect = float(windows)
    return 100.0 * (best[0] - null) / (perfect - null), best[0], best[1]


def write_results(
    nab_dir: Path, name: str, corpus: Sequence[DataFile], scores: Sequence[Sequence[float]]
) -> Path:
    """NAB results files for ``name`` (NAB's scorer reads ``anomaly_score``)."""
    root = nab_dir / "results" / name
    for f, s in zip(corpus, scores, strict=True):
        category, file = f.path.split("/")
        target = root / category / f"{name}_{file}"
        target.parent.mkdir(parents=True, exist_ok=True)
        inside = [0] * len(s)
        for i, j in f.windows:
            for k in range(i, j + 1):
                inside[k] = 1
        with open(target, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["timestamp", "value", "anomaly_score", "label"])
            for stamp, value, score, label in zip(f.stamps, f.values, s, inside, strict=True):
                out.writerow([stamp, repr(value), f"{score:.6f}", label])
    return root


def _param(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        parsed: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = value
    return key, parsed


def main(argv: Iterable[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nab-dir", type=Path, required=True, help="a local NAB checkout")
    parser.add_argument("--detector", default="generic")
    parser.add_argument(
        "--param", action="append", default=[], type=_param, help="k=v (JSON value), repeatable"
    )
    parser.add_argument("--name", default="spendbrake", help="results/<name>/ in the checkout")
    parser.add_argument("--no-write", action="store_true", help="score only, write no files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(list(argv) if argv is not None else None)
    params = dict(SIGNED) if args.detector == "generic" else {}
    params.update(dict(args.param))
    corpus = load_corpus(args.nab_dir)
    started = time.perf_counter()
    scores = run_detector(corpus, args.detector, params)
    seconds = time.perf_counter() - started
    records = sum(len(f.values) for f in corpus)
    result: dict[str, Any] = {
        "detector": args.detector,
        "params": params,
        "files": len(corpus),
        "records": records,
        "seconds": round(seconds, 1),
        "profiles": {},
    }
    for profile in PROFILES:
        normalized, raw, threshold = nab_score(corpus, scores, profile)
        result["profiles"][profile] = {
            "score": round(normalized, 1),
            "raw": round(raw, 2),
            "threshold": threshold,
        }
    if not args.no_write:
        result["results_dir"] = str(write_results(args.nab_dir, args.name, corpus, scores))
    if args.json:
        print(orjson.dumps(result).decode())
        return result
    print(
        f"{args.detector} {params} on NAB: {len(corpus)} files, {records:,} records in "
        f"{seconds:.1f} s"
    )
    for profile, r in result["profiles"].items():
        print(f"  {profile}: {r['score']:.1f} (raw {r['raw']:.2f}, threshold {r['threshold']})")
    if "results_dir" in result:
        print(
            f"results written to {result['results_dir']}; NAB's own scorer:\n"
            f"  cd {args.nab_dir} && python run.py -d {args.name} --optimize --score "
            "--normalize --skipConfirmation"
        )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
