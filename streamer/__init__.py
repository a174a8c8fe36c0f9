"""Consume usage events and roll spend up into exact event-time windows."""

from ._dedupe import Deduper
from ._processor import DeadLetter, PartitionProcessor, ProcessorStats
from ._rollup import METRICS, WINDOWS_S, RollupRecord, RollupState, RollupTotals, to_nusd
from ._worker import IngestWorker, WorkerSettings

__all__ = [
    "METRICS",
    "WINDOWS_S",
    "DeadLetter",
    "Deduper",
    "IngestWorker",
    "PartitionProcessor",
    "ProcessorStats",
    "RollupRecord",
    "RollupState",
    "RollupTotals",
    "WorkerSettings",
    "to_nusd",
]
