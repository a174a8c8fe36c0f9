"""The ingest stage's partition ownership against rebalances that come mid-step: aiokafka runs
the rebalance callbacks in a task of its own, beside the stage's loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.stages.ingest_fakes import ingest_stage, records, saved_offset, tp, until


async def test_a_partition_revoked_during_a_slow_checkpoint_is_left_to_the_revoke(
    tmp_path: Path,
) -> None:
    """The checkpoint waits on its sends while a rebalance revokes a partition (the revoke
    checkpoints and releases it): the checkpoint then saves the partitions it still owns,
    instead of failing with KeyError (which ended the worker process)."""
    stage, producer, _ = ingest_stage(tmp_path)
    await stage.adopt([tp(0), tp(1)])
    await until(lambda: {0, 1} <= stage.processors.keys())
    stage.processors[0].process_batch(records(0, 30))
    stage.processors[1].process_batch(records(1, 20))
    producer.hold = True  # the checkpoint's first batch waits, as behind a slow one
    checkpoint = asyncio.ensure_future(stage.checkpoint())
    await producer.waiting.wait()
    await stage.revoke([tp(1)])  # sends what is unsent, saves partition 1, releases it
    assert 1 not in stage.processors and saved_offset(tmp_path, 1) == 20
    producer.gate.set()
    await checkpoint
    assert saved_offset(tmp_path, 0) == 30
    assert saved_offset(tmp_path, 1) == 20  # the revoke's save stands
    assert list(stage.processors) == [0]
