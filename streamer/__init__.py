"""The pure rollup engine: usage events in, exact event-time rollups out, no Kafka here.

``PartitionProcessor`` validates, dedupes, prices and rolls up one input partition's
records (the same code live in the ingest stage, in ``spendbrake replay`` and in the
tests); ``PartitionStore`` keeps its snapshot with its offset; ``encode_traces`` writes
trace partials (the rollup, mark, alert and action records live in ``spendbrake.schemas``);
the DuckDB report store (``apply_batch``) keeps rows and offsets in one transaction. The
Kafka loops around all of this are the stages (``spendbrake.stages``).

The store loads DuckDB on first use, so the ingest and detect stages do not carry it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._columnar import Cells, StepFold
from ._dedupe import Deduper
from ._packed import PackedColumns
from ._processor import FIRST_DEAD, DeadLetter, Outputs, PartitionProcessor, ProcessorStats
from ._rollup import WINDOWS_S, RollupState, RollupTotals, SeriesTable
from ._state import PartitionStore, write_atomic
from ._traces import TracePartial, TraceState, TraceTotals, encode_traces, trace_records

if TYPE_CHECKING:
    from ._store import (
        STORED_WINDOWS_S,
        StoreBatch,
        StoreBusy,
        apply_batch,
        budget_hours,
        connect_store,
        drop_trace_weeks,
        load_offsets,
        opened,
        table_type,
        traces_from,
    )

#: name -> the submodule that defines it, imported on first access.
_LAZY = dict.fromkeys(
    (
        "STORED_WINDOWS_S",
        "StoreBatch",
        "StoreBusy",
        "apply_batch",
        "budget_hours",
        "connect_store",
        "drop_trace_weeks",
        "load_offsets",
        "opened",
        "table_type",
        "traces_from",
    ),
    "_store",
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spendbrake.streamer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FIRST_DEAD",
    "STORED_WINDOWS_S",
    "WINDOWS_S",
    "Cells",
    "DeadLetter",
    "Deduper",
    "Outputs",
    "PackedColumns",
    "PartitionProcessor",
    "PartitionStore",
    "ProcessorStats",
    "RollupState",
    "RollupTotals",
    "SeriesTable",
    "StepFold",
    "StoreBatch",
    "StoreBusy",
    "TracePartial",
    "TraceState",
    "TraceTotals",
    "apply_batch",
    "budget_hours",
    "connect_store",
    "drop_trace_weeks",
    "encode_traces",
    "load_offsets",
    "opened",
    "table_type",
    "trace_records",
    "traces_from",
    "write_atomic",
]
