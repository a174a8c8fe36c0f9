"""The ingest stage's partition ownership against rebalances that come mid-step: aiokafka runs
the rebalance callbacks in a task of its own, beside the stage's loop."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from spendbrake.streamer import PartitionStore
from tests.stages.ingest_fakes import (
    TOPIC,
    FastClock,
    ingest_stage,
    records,
    saved_offset,
    tp,
    until,
)


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


async def test_a_partition_whose_lock_is_held_long_waits_for_it_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its previous owner keeps the state locked far past the 60 s after which the wait
    once gave up (the partition then stayed assigned and was never counted, silently): it
    stays paused, the wait is logged with the lock file and its holder, the other
    partitions do not wait for it, and it is adopted once the lock is let go."""
    caplog.set_level(logging.WARNING)
    previous_owner = PartitionStore(tmp_path, TOPIC, 1)
    await previous_owner.acquire()
    stage, _, consumer = ingest_stage(tmp_path)
    clock = FastClock(asyncio.get_running_loop())
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    await stage.adopt([tp(1), tp(0)])
    await until(lambda: 0 in stage.processors)
    await until(lambda: clock.ahead > 600 and "waiting for its lock" in caplog.text)
    assert 1 not in stage.processors and consumer.paused == {tp(1)}
    lock = tmp_path / TOPIC / "p1" / "lock"
    assert f"waiting for its lock {lock}" in caplog.text
    assert f"held by pid {os.getpid()} on " in caplog.text
    previous_owner.release()
    await until(lambda: 1 in stage.processors)
    assert consumer.paused == set() and consumer.positions[tp(1)] == 0
    assert f"pid {os.getpid()} on " in lock.read_text()  # the new holder says so in turn
    await stage.revoke([tp(0), tp(1)])


async def test_a_partition_revoked_while_it_waits_for_its_lock_holds_nothing(
    tmp_path: Path,
) -> None:
    previous_owner = PartitionStore(tmp_path, TOPIC, 0)
    await previous_owner.acquire()
    stage, _, _ = ingest_stage(tmp_path)
    await stage.adopt([tp(0)])
    await stage.revoke([tp(0)])
    previous_owner.release()
    assert not stage.processors and not stage._adopting
    other = PartitionStore(tmp_path, TOPIC, 0)
    await other.acquire(timeout_s=0.0)  # free: the cancelled wait left nothing held
    other.release()
