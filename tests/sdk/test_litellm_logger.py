"""The real litellm package, with mock_response, through our CustomLogger to the broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake.schemas import decode_event
from spendbrake.sdk import SpendProducer
from tests.kafka_helpers import read_topic
from tests.litellm_helpers import registered

litellm = pytest.importorskip("litellm")

from spendbrake.sdk.litellm_logger import SpendBrakeLogger  # noqa: E402


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_acompletion_puts_one_priced_event_on_the_broker(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = await asyncio.to_thread(make_topic, "litellm")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="search")
    try:
        with registered(litellm, logger):
            response = await litellm.acompletion(
                model="gpt-4o",
                messages=[{"role": "user", "content": "Summarise this ticket in one line."}],
                mock_response="The customer cannot log in after the password reset.",
                metadata={
                    "spend_logs_metadata": {"feature": "ticket-summary", "workload": "batch"}
                },
                user="customer-42",
            )
            assert response.choices[0].message.content.startswith("The customer")
            await wait_for(lambda: logger.events_emitted >= 1)
        assert await producer.aflush(30)
    finally:
        await producer.aclose()
    records = await read_topic(broker.bootstrap_servers, topic, 1)
    assert len(records) == 1 and logger.events_failed == 0
    event = decode_event(records[0][2])
    assert event.model == "gpt-4o" and event.provider == "openai" and event.team == "search"
    assert event.input_tokens > 0 and event.output_tokens > 0
    assert event.cost_usd is not None and event.cost_usd > 0
    assert event.feature == "ticket-summary" and event.workload == "batch"
    assert event.customer == "customer-42"
    assert event.trace_id
    assert records[0][1] == event.event_id.encode()
    # The price is LiteLLM's own: gpt-4o at $2.50 in / $10 out per 1M tokens.
    expected = (event.input_tokens * 2.5 + event.output_tokens * 10.0) / 1e6
    assert event.cost_usd == pytest.approx(expected, rel=1e-6)


def test_sync_completion_also_emits(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("litellm-sync")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    try:
        with registered(litellm, logger):
            litellm.completion(
                model="claude-sonnet-4-5",
                messages=[{"role": "user", "content": "hi"}],
                mock_response="hello",
            )
            deadline = time.monotonic() + 15
            while logger.events_emitted < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert producer.flush(30)
    finally:
        producer.close()
    records = asyncio.run(read_topic(broker.bootstrap_servers, topic, 1))
    assert len(records) == 1
    payload = orjson.loads(records[0][2])
    assert (
        payload["team"] == "support"
        and payload["provider"] == "anthropic"
        and payload["cost_usd"] > 0
    )


def test_client_attribution_the_contract_refuses_is_cut_short_and_the_spend_counted(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A request tagged workload:urgent, a workload "background", an over-long feature and
    more tags than the contract holds: the event was refused, and the call's spend lost."""
    from spendbrake.schemas._event import MAX_STR_LEN, MAX_TAGS

    topic = make_topic("litellm-attribution")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    calls = [
        {"tags": ["workload:urgent"]},
        {"spend_logs_metadata": {"workload": "background"}},
        {"tags": ["feature:" + "q" * (MAX_STR_LEN + 1)]},
        {"tags": [f"label-{i}" for i in range(MAX_TAGS + 1)]},
    ]
    try:
        with registered(litellm, logger):
            for metadata in calls:
                litellm.completion(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": "hi"}],
                    mock_response="hello",
                    metadata=metadata,
                )
            deadline = time.monotonic() + 15
            while logger.events_emitted + logger.events_failed < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert producer.flush(30)
    finally:
        producer.close()
    assert (logger.events_emitted, logger.events_failed) == (4, 0)
    records = asyncio.run(read_topic(broker.bootstrap_servers, topic, 4))
    events = sorted((decode_event(value) for _, _, value in records), key=lambda e: e.ts)
    assert len(events) == 4 and all(e.cost_usd and e.cost_usd > 0 for e in events)
    urgent, background, long_feature, many = events
    assert urgent.workload == "standard" and urgent.tags["workload_given"] == "urgent"
    assert background.workload == "standard"
    assert background.tags["workload_given"] == "background"
    assert long_feature.feature == "q" * MAX_STR_LEN
    assert len(many.tags) == MAX_TAGS and "label-0" in many.tags


async def test_a_router_zero_is_left_for_the_engine_to_price(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A LiteLLM router (as in the proxy) reports response_cost 0.0, with no debug info, for
    a model missing from its price map: claude-3-haiku, which the engine's table prices, and
    a self-hosted model no table prices. Neither call was free: both go out without a cost
    (before: the first priced by the SDK's own table, the second recorded at $0)."""
    from spendbrake.schemas import PriceTable

    topic = await asyncio.to_thread(make_topic, "litellm-router")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    deployments = {"cheap": "anthropic/claude-3-haiku-20240307", "local": "hosted_vllm/acme-llm"}
    router = litellm.Router(
        model_list=[
            {
                "model_name": name,
                "litellm_params": {
                    "model": model,
                    "api_key": "not-used",
                    "api_base": "http://127.0.0.1:1/v1",
                    "mock_response": "Ticket routed to billing.",
                },
            }
            for name, model in deployments.items()
        ]
    )
    try:
        with registered(litellm, logger):
            for name in deployments:
                await router.acompletion(
                    model=name, messages=[{"role": "user", "content": "Route this ticket."}]
                )
            await wait_for(lambda: logger.events_emitted >= 2)
        assert await producer.aflush(30)
    finally:
        await producer.aclose()
    records = await read_topic(broker.bootstrap_servers, topic, 2)
    assert len(records) == 2 and logger.events_failed == 0
    events = {e.tags["model_group"]: e for e in (decode_event(r[2]) for r in records)}
    for event in events.values():
        assert event.input_tokens > 0 and event.cost_usd is None
        assert event.tags["gateway_cost_usd"] == "0"  # what the gateway said
    assert events["cheap"].model == "claude-3-haiku-20240307"
    # What the engine does with them: prices the first, reports the second unpriced.
    assert PriceTable.default().price(events["cheap"])
    assert PriceTable.default().price(events["local"]) is None


def test_logger_never_raises_into_litellm(tmp_path: Path) -> None:
    producer = SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer)
    try:
        logger.log_success_event(
            {"standard_logging_object": {"id": "x", "prompt_tokens": -3}}, None, None, None
        )
        logger.log_success_event({}, None, None, None)
    finally:
        producer.close(0)
    assert logger.events_failed == 1 and logger.events_emitted == 0


def run_calls(
    producer: SpendProducer, logger: SpendBrakeLogger, calls: list[dict[str, Any]]
) -> None:
    """Each call through litellm.completion (gpt-4o) with the logger registered; wait for
    every event to be emitted or failed, then for the producer to deliver."""
    try:
        with registered(litellm, logger):
            for extra in calls:
                litellm.completion(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], **extra
                )
            deadline = time.monotonic() + 15
            while (
                logger.events_emitted + logger.events_failed < len(calls)
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        assert producer.flush(30)
    finally:
        producer.close()


def test_an_over_long_call_id_becomes_a_stable_stand_in_and_the_spend_counts(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A call id over 512 characters (the response's id, from the upstream server, or a
    client's litellm_call_id when it has none) made the event invalid: the call's spend
    was lost. It becomes sha256 of the id: a retry of the call gets the same one."""
    from spendbrake.schemas import fit_id

    topic = make_topic("litellm-long-id")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    long_ids = ["resp-" + "7" * 600, "resp-" + "7" * 600, "resp-" + "7" * 601]  # one retried
    run_calls(
        producer,
        logger,
        [
            {
                "mock_response": {
                    "id": call_id,
                    "model": "gpt-4o",
                    "choices": [{"message": {"role": "assistant", "content": "hello"}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
                }
            }
            for call_id in long_ids
        ],
    )
    assert (logger.events_emitted, logger.events_failed) == (3, 0)
    records = asyncio.run(read_topic(broker.bootstrap_servers, topic, 3))
    events = [decode_event(value) for _, _, value in records]
    assert len(events) == 3 and all(e.cost_usd and e.cost_usd > 0 for e in events)
    ids = [e.event_id for e in events]
    assert ids.count(fit_id(long_ids[0])) == 2 and fit_id(long_ids[2]) in ids
    assert fit_id(long_ids[0]) != fit_id(long_ids[2]) and all(len(i) == 71 for i in ids)


def test_a_lone_surrogate_in_a_request_tag_becomes_a_replacement_character(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A lone surrogate ("\\ud800", which a client's JSON can carry) in a request tag made
    the event unwritable (orjson refuses it), and the call's spend was lost."""
    topic = make_topic("litellm-surrogate")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    tags = ["feature:search\ud800", "region\udcff:eu", "ok"]
    run_calls(producer, logger, [{"mock_response": "hello", "metadata": {"tags": tags}}])
    assert (logger.events_emitted, logger.events_failed) == (1, 0)
    (record,) = asyncio.run(read_topic(broker.bootstrap_servers, topic, 1))
    event = decode_event(record[2])
    assert event.cost_usd and event.cost_usd > 0
    assert event.feature == "search\ufffd"
    assert event.tags == {"region\ufffd": "eu", "ok": "true"}


def test_request_tags_redaction_lengthens_are_cut_to_fit_and_the_spend_counts(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Request tags were cut to fit 64 KiB before the SDK redacted them, and a stand-in
    (23 characters) is longer than a short key (11): tags full of keys made a record
    within the limit as built, over it as sent; ``emit()`` refused it and the call's
    spend was lost. The tags are cut to fit what is sent: the last first, as before."""
    from spendbrake.schemas import MAX_EVENT_BYTES, MAX_STR_LEN
    from spendbrake.schemas._event import MAX_TAGS

    topic = make_topic("litellm-redacted-tags")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    logger = SpendBrakeLogger(producer, default_team="support")
    keys = " ".join(f"sk-{j:08d}" for j in range(25))  # 300 characters, 600 redacted
    tags = [f"{i:02d}{'n' * (MAX_STR_LEN - 2)}:{keys}" for i in range(MAX_TAGS)]
    run_calls(producer, logger, [{"mock_response": "hello", "metadata": {"tags": tags}}])
    assert (logger.events_emitted, logger.events_failed) == (1, 0)
    (record,) = asyncio.run(read_topic(broker.bootstrap_servers, topic, 1))
    assert len(record[2]) <= MAX_EVENT_BYTES and b"sk-0" not in record[2]
    event = decode_event(record[2])
    assert event.cost_usd and event.cost_usd > 0
    kept = sorted(event.tags)
    assert (
        0 < len(kept) < MAX_TAGS and kept == sorted(t.partition(":")[0] for t in tags)[: len(kept)]
    )
    assert all(value.startswith("sha256:") for value in event.tags.values())


def test_a_producer_that_cannot_start_is_said_once_not_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A spill folder that cannot be made (a read-only home in a container) raised
    ``FileNotFoundError`` from the producer's start: every LLM call logged "SpendBrake
    logger failed" with a traceback. It is now one error naming the folder and the fix."""
    (tmp_path / "a-file").write_bytes(b"")
    monkeypatch.setenv("SPENDBRAKE_SPILL_DIR", str(tmp_path / "a-file" / "spill"))
    logger = SpendBrakeLogger(default_team="search")
    caplog.set_level(logging.DEBUG, logger="spendbrake.sdk")
    with registered(litellm, logger):
        for _ in range(2):
            litellm.completion(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="hello"
            )
        deadline = time.monotonic() + 15
        while logger.events_failed < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (logger.events_failed, logger.events_emitted) == (2, 0)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    said = errors[0].getMessage()
    assert said.startswith(
        "SpendBrake sends no usage events: its producer cannot start: spill_path"
    )
    assert "SPENDBRAKE_SPILL_DIR" in said and str(tmp_path / "a-file") in said
    assert errors[0].exc_info is None
