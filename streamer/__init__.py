"""Consume usage events and roll spend up into exact event-time windows."""

from ._action_stage import ActionStage
from ._dedupe import Deduper
from ._detect_stage import DetectStage
from ._processor import DeadLetter, Outputs, PartitionProcessor, ProcessorStats
from ._rollup import METRICS, WINDOWS_S, RollupRecord, RollupState, RollupTotals, to_nusd
from ._store import STORED_WINDOWS_S, StoreBatch, StoreBusy, apply_batch, connect_store
from ._store_stage import StoreStage, store_path
from ._traces import TracePartial, TraceState, TraceTotals
from ._worker import IngestWorker, WorkerSettings, tune_gc

__all__ = [
    "METRICS",
    "STORED_WINDOWS_S",
    "WINDOWS_S",
    "ActionStage",
    "DeadLetter",
    "Deduper",
    "DetectStage",
    "IngestWorker",
    "Outputs",
    "PartitionProcessor",
    "ProcessorStats",
    "RollupRecord",
    "RollupState",
    "RollupTotals",
    "StoreBatch",
    "StoreBusy",
    "StoreStage",
    "TracePartial",
    "TraceState",
    "TraceTotals",
    "WorkerSettings",
    "apply_batch",
    "connect_store",
    "store_path",
    "to_nusd",
    "tune_gc",
]
