"""The worker's stages: Kafka in, state saved with its offsets, keyed outputs out.

``stage.py`` is the skeleton every stage runs through (lock, load, start, loop,
checkpoints in one order, stop) and states that order; ``ingest.py`` (events to rollups),
``detect.py`` (rollups to alerts), ``act.py`` (alerts to Slack, gateway calls and audit
records) and ``store.py`` (outputs to the DuckDB report store) hold what is particular to
each; ``worker.py`` runs the chosen ones together (``Worker``, ``run_worker``).

The act and store stages pull in heavy libraries (slack-sdk and aiohttp; DuckDB), so they
load on first use: a worker running ``--stages ingest,detect`` does not carry them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .stage import Stage, WorkerSettings
from .worker import STAGES, Worker, parse_stages, run_worker, tune_gc

if TYPE_CHECKING:
    from .act import ActionStage
    from .detect import DetectStage
    from .ingest import IngestStage, reset_partition
    from .store import StoreStage, store_path

#: name -> the module that defines it, imported on first access.
_LAZY = {
    "ActionStage": "act",
    "DetectStage": "detect",
    "IngestStage": "ingest",
    "reset_partition": "ingest",
    "StoreStage": "store",
    "store_path": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spendbrake.stages' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "STAGES",
    "ActionStage",
    "DetectStage",
    "IngestStage",
    "Stage",
    "StoreStage",
    "Worker",
    "WorkerSettings",
    "parse_stages",
    "reset_partition",
    "run_worker",
    "store_path",
    "tune_gc",
]
