"""Consume usage events and roll spend up into exact event-time windows.

The stages that pull in heavy libraries (the action stage: slack-sdk and aiohttp; the
store: duckdb) load on first use, so a worker running ``--stages ingest,detect`` does
not carry them (about 40 MB of RSS).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._dedupe import Deduper
from ._processor import DeadLetter, Outputs, PartitionProcessor, ProcessorStats
from ._rollup import METRICS, WINDOWS_S, RollupRecord, RollupState, RollupTotals, to_nusd
from ._state import PartitionStore
from ._traces import TracePartial, TraceState, TraceTotals

if TYPE_CHECKING:
    from ._action_stage import ActionStage
    from ._detect_stage import DetectStage
    from ._store import STORED_WINDOWS_S, StoreBatch, StoreBusy, apply_batch, connect_store
    from ._store_stage import StoreStage, store_path
    from ._worker import IngestWorker, WorkerSettings, tune_gc

#: name -> the submodule that defines it, imported on first access.
_LAZY = {
    "ActionStage": "_action_stage",
    "DetectStage": "_detect_stage",
    "STORED_WINDOWS_S": "_store",
    "StoreBatch": "_store",
    "StoreBusy": "_store",
    "apply_batch": "_store",
    "connect_store": "_store",
    "StoreStage": "_store_stage",
    "store_path": "_store_stage",
    "IngestWorker": "_worker",
    "WorkerSettings": "_worker",
    "tune_gc": "_worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spendbrake.streamer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
    "PartitionStore",
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
