"""Trace partials reach ``spend.traces`` in records Kafka takes, whatever the callers' ids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import OTHER, UsageEvent
from spendbrake.streamer._traces import (
    MAX_NAMES,
    TRACE_RECORD_BYTES,
    TracePartial,
    TraceState,
    trace_records,
)
from tests.kafka_helpers import read_topic
from tests.streamer.kafka_io import publish_raw
from tests.streamer.streams import T0
from tests.streamer.test_worker import start_worker, stop

LONG = 512  # the contract's longest id or name


def _partial(i: int, width: int) -> TracePartial:
    text = f"{i:0{width}d}"
    return TracePartial(text, 0, text, text, text, text, 1, 1, T0, T0, {"gpt-4o": 1}, {})


def test_records_stay_under_the_limit_and_carry_every_partial_once() -> None:
    partials = [_partial(i, LONG) for i in range(2_500)]
    records = list(trace_records(partials))
    assert all(len(value) <= TRACE_RECORD_BYTES for _, value in records)
    carried = [p["trace_id"] for _, value in records for p in orjson.loads(value)["traces"]]
    assert carried == [p.trace_id for p in partials]
    # Each record is keyed by its own first partial.
    assert [first.trace_id for first, _ in records] == [
        orjson.loads(value)["traces"][0]["trace_id"] for _, value in records
    ]
    # Usual ids: a thousand to a record, as before.
    assert len(list(trace_records([_partial(i, 32) for i in range(2_500)]))) == 3


def test_a_trace_of_many_models_names_at_most_max_names() -> None:
    traces = TraceState()
    for i in range(MAX_NAMES + 50):
        event = UsageEvent(
            event_id=f"e{i}",
            ts=T0 + i,
            provider="acme",
            model=f"model-{i}",
            input_tokens=1,
            output_tokens=1,
            team="search",
            trace_id="t",
            outcome=f"outcome-{i}",
        )
        traces.add(event, 10, T0 + i)  # the watermark, with the call counted
    (partial,) = traces.open.values()
    assert len(partial.models) == MAX_NAMES + 1 and partial.models[OTHER] == 50
    assert len(partial.outcomes) == MAX_NAMES + 1 and partial.outcomes[OTHER] == 50
    assert sum(partial.models.values()) == partial.calls == MAX_NAMES + 50


def test_the_ingest_sends_traces_of_long_ids_and_keeps_running(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """1,500 traces whose ids and names are 512 characters each: 2.7 MB of partials in one
    flush went out as records of up to 2.7 MB. The embedded broker takes them; Apache
    Kafka refuses a record over its default 1 MB, which stopped the ingest there. Now every
    record is under that, and every call arrives."""
    events, traces = make_topic("events", partitions=1), make_topic("traces", partitions=1)
    config = tmp_path / "spendbrake.yaml"
    config.write_text(
        "kafka:\n  group_id: long-traces\n  topics:\n"
        f"    events: {events}\n    traces: {traces}\n    rollups: {events}-rollups\n"
        f"    dlq: {events}-dlq\n    alerts: {events}-alerts\n    actions: {events}-actions\n"
    )
    calls = 1_500

    def event(i: int, ts: float, trace: bool = True) -> bytes:
        text = f"{i:0{LONG}d}"
        return orjson.dumps(
            {
                "event_id": text,
                "ts": ts,
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 10,
                "output_tokens": 5,
                "team": text,
                "feature": text,
                "customer": text,
                **({"trace_id": text} if trace else {}),
            }
        )

    records = [event(i, T0 + i / 100) for i in range(calls)]
    records.append(event(calls, T0 + 86_400, trace=False))  # every trace idle behind it
    asyncio.run(publish_raw(broker.bootstrap_servers, events, records))
    log = tmp_path / "worker.log"
    worker = start_worker(broker, config, tmp_path / "state", log)
    try:
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 90  # a guard against a hang, not a timing
        while sum(seen.values()) < calls and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-2000:]
            got = asyncio.run(read_topic(broker.bootstrap_servers, traces, 1, timeout_s=2))
            assert all(len(value) <= 1024 * 1024 for _, _, value in got)  # Kafka's default
            seen = {p["trace_id"]: p["calls"] for *_, v in got for p in orjson.loads(v)["traces"]}
        assert worker.poll() is None, log.read_text()[-2000:]
    finally:
        stop(worker)
    assert len(seen) == calls and sum(seen.values()) == calls
