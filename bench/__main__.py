"""Run one benchmark: ``python -m bench NAME [OPTIONS]`` (``python -m bench NAME --help``).

Each prints its figures and ratios against a baseline measured in the same run. The
benchmarks live beside the package, not in the wheel: run them from a clone with the
``bench`` extra installed (``pip install -e '.[test]'`` has it).
"""

from __future__ import annotations

import importlib
import sys

#: name -> (module, what it measures)
BENCHMARKS = {
    "ingest": ("bench_ingest", "worker events/s vs a bare aiokafka loop and naive Faust"),
    "crash": ("bench_crash", "rollups exact after SIGKILLs mid-stream; exit 1 if not"),
    "memory": ("bench_memory", "state memory per series: rollups, the watch, detectors"),
    "latency": ("bench_latency", "runaway event to Slack message and gateway block, p50/p99"),
    "replay": ("bench_replay", "spendbrake replay events/s vs a bare read-and-parse loop"),
    "report": ("bench_report", "report queries vs a full-table count(*) over the store"),
    "detect": ("bench_detect", "the detection evaluation: default vs cloud-style baselines"),
    "trend": ("bench_trend", "wow's creep test: days to find a creep vs false trend items"),
    "nab": ("bench_nab", "the generic detector on a local NAB checkout, scored as NAB does"),
    "contract": ("bench_contract", "per-event validation vs an equivalent pydantic model"),
    "sdk": ("bench_sdk", "SpendProducer.emit cost and spill behaviour"),
    "columnar": ("bench_columnar", "replay's rollup half in DuckDB vs Python: same records, CPU"),
}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    rows = "\n".join(f"  {name:<{width}}  {about}" for name, (_, about) in BENCHMARKS.items())
    return f"usage: python -m bench NAME [OPTIONS]\n\nbenchmarks:\n{rows}\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    entry = BENCHMARKS.get(argv[0])
    if entry is None:
        print(f"unknown benchmark {argv[0]!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{entry[0]}")
    sys.argv[0] = f"python -m bench {argv[0]}"
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
