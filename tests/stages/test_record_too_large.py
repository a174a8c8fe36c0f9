"""An output record refused as too large (aiokafka's ``MessageSizeTooLargeError``, from the
producer's own check or the broker's) stops the stage once, naming the record: sent again it
would be refused again, and a stage that retried it forever sent nothing else meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from spendbrake.schemas import Config, SpendBrakeError, encode_alert
from spendbrake.stages.detect import DetectStage
from spendbrake.stages.stage import RecordTooLarge, WorkerSettings
from tests.schemas.test_alert import alert
from tests.stages.ingest_fakes import ingest_stage, records, saved_offset, tp, until


async def test_the_ingest_stops_on_a_record_refused_as_too_large(tmp_path: Path) -> None:
    stage, producer, _ = ingest_stage(tmp_path)
    await stage.adopt([tp(0)])
    await until(lambda: 0 in stage.processors)
    stage.processors[0].process_batch(records(0, 10))
    producer.fail_with = MessageSizeTooLargeError()
    with pytest.raises(SpendBrakeError) as raised:
        await stage.checkpoint()
    # Not a KafkaError, which the stage's loop retries (``Stage.retrying``): it stops.
    assert isinstance(raised.value, RecordTooLarge) and not isinstance(raised.value, KafkaError)
    too_large = raised.value
    sizes = {len(key) + len(value) for key, (value, _, _) in _queued(stage).items()}
    assert too_large.topic == "spend.rollups" and too_large.size == max(sizes)
    assert str(too_large).startswith(f"spend.rollups: record {too_large.key.decode()!r} of ")
    assert saved_offset(tmp_path, 0) is None  # nothing saved past what was not sent


def _queued(stage: Any) -> dict[bytes, tuple[bytes, int, int]]:
    return {key: v for (topic, key), v in stage._unsent.items() if topic == "spend.rollups"}


class _RefusingProducer:
    """aiokafka's own check: a record over ``max_request_size`` (1 MB) is refused."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, partition: int) -> None:
        if len(value) > 1024 * 1024:
            raise MessageSizeTooLargeError()


async def test_the_detect_stage_stops_on_an_alert_refused_as_too_large(tmp_path: Path) -> None:
    """Targets are split across records; a record large for another reason (here: 16,000
    critical keys named) is still refused, and stops the stage."""
    stage = DetectStage(Config(), WorkerSettings(state_dir=tmp_path))
    stage.producer = _RefusingProducer()  # type: ignore[assignment]
    big = alert(seq=3, targets=[], critical_keys=[f"{i:064x}" for i in range(16_000)])
    stage._send(big)
    await asyncio.sleep(0)
    with pytest.raises(SpendBrakeError) as raised:
        await stage.checkpoint()
    assert isinstance(raised.value, RecordTooLarge) and not isinstance(raised.value, KafkaError)
    assert (raised.value.key, raised.value.size) == (big.ref().encode(), len(encode_alert(big)))
    assert str(raised.value).startswith(f"spend.alerts: record '{big.ref()}' of 1,")
    assert not (stage.dir / "snapshot.json").exists()
