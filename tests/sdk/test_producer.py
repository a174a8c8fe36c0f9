"""SpendProducer against the real embedded broker over TCP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from spendbrake._broker import EmbeddedBroker, ensure_topics, free_port
from spendbrake.schemas import ConfigError, InvalidEvent, decode_event
from spendbrake.sdk import SpendProducer
from tests.kafka_helpers import read_topic_sync
from tests.tcp_proxy import SilentServer, TcpProxy

T0 = 1_795_428_000.0


def event(i: int, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e-{i}",
        "ts": T0 + i * 0.5,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "input_tokens": 1000 + i,
        "output_tokens": i % 300,
        "cache_read_tokens": i % 1000,
        "team": f"team-{i % 7}",
        "feature": "agent",
        "workload": ("critical", "standard", "batch")[i % 3],
        "cost_usd": round(i * 0.0001, 6),
        **extra,
    }


def test_ten_thousand_events_arrive_exactly_as_sent(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("sdk")
    sent = {}
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for i in range(10_000):
            payload = event(i)
            producer.emit(payload)
            sent[payload["event_id"]] = decode_event(orjson.dumps(payload))
        assert producer.flush(60)
    assert producer.stats.delivered == 10_000 and producer.stats.spilled == 0
    records = read_topic_sync(broker.bootstrap_servers, topic, 10_000)
    assert len(records) == 10_000
    received = {decode_event(value).event_id: decode_event(value) for _, _, value in records}
    assert received == sent
    assert all(
        key == value_id.encode()
        for (_, key, _), value_id in zip(
            records, (orjson.loads(v)["event_id"] for _, _, v in records), strict=True
        )
    )


def test_duplicates_of_one_event_share_a_partition(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("dup", partitions=8)
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for i in range(200):
            producer.emit(event(i))
            producer.emit(event(i))  # a retrying caller
    records = read_topic_sync(broker.bootstrap_servers, topic, 400)
    partitions: dict[bytes | None, set[int]] = {}
    for partition, key, _ in records:
        partitions.setdefault(key, set()).add(partition)
    assert len(partitions) == 200
    assert all(len(p) == 1 for p in partitions.values())
    assert len({next(iter(p)) for p in partitions.values()}) > 1  # keys do spread


def test_raw_secrets_never_leave_the_process(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("secret")
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        producer.emit(event(1, api_key="sk-proj-AbCdEf0123456789xyz"))
        producer.emit(event(2, api_key="sk-ant-api03-AbCdEf0123456789"))
        producer.emit(event(3, api_key="search-agent-prod"))
    records = read_topic_sync(broker.bootstrap_servers, topic, 3)
    keys = {orjson.loads(v)["event_id"]: orjson.loads(v)["api_key"] for _, _, v in records}
    assert keys["e-3"] == "search-agent-prod"
    assert all(keys[k].startswith("sha256:") and len(keys[k]) == 23 for k in ("e-1", "e-2"))
    assert not any(b"AbCdEf0123456789" in v for _, _, v in records)


#: Secret shapes callers paste, each in its raw form; none may reach the topic.
SECRETS = {
    "bearer": "bearer sk-proj-Zq9aaaaBBBBccccDDDD1234",
    "spaces": "   sk-ant-api03-Zq9eeeeFFFFgggg5678  ",
    "hf": "hf_Zq9hhhhIIIIjjjjKKKKllll0000",
    "aws": "AKIAZQ9MMMMNNNNOOOO1",
    "slack_bot": "xoxb-1234567890-Zq9ppppQQQQ",
    "slack_user": "xoxp-1234567890-1234567890-Zq9rrrr",
    "hex32": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "azure_hex": "ABCDEF0123456789ABCDEF0123456789AB",
    "github": "ghp_Zq9ssssTTTTuuuuVVVVwwwwXXXX1234",
    "google": "AIzaSyZq9yyyyZZZZaaaabbbbccccdddd123",
}


def test_secret_shapes_are_redacted_in_every_string_field(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("secret-shapes")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"  # W3C: 32 hex digits, an id
    token = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"  # LiteLLM's
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for i, secret in enumerate(SECRETS.values()):
            producer.emit(
                event(
                    i,
                    api_key=secret,
                    customer=secret.strip(),
                    feature=f"retry with {secret}",
                    tags={"auth": f"Authorization: {secret}", secret.strip(): "1"},
                    debug={"header": secret, "list": [secret]},
                    trace_id=trace_id,
                )
            )
        producer.emit(event(100, api_key=token, customer="acme-corp", trace_id=trace_id))
        producer.emit(event(101, api_key="search-agent-prod", feature="sk-batch-1"))
    records = read_topic_sync(broker.bootstrap_servers, topic, len(SECRETS) + 2)
    raw = b"".join(v for _, _, v in records)
    for name, secret in SECRETS.items():
        core = secret.split()[-1]
        assert core.encode() not in raw and core[6:20].encode() not in raw, name
    sent = {e["event_id"]: e for e in (orjson.loads(v) for _, _, v in records)}
    # One key is one series whichever way it was written.
    assert sent["e-0"]["api_key"] == sent["e-0"]["customer"] != "sha256:"
    assert all(sent[f"e-{i}"]["api_key"].startswith("sha256:") for i in range(len(SECRETS)))
    assert sent["e-100"]["api_key"] == token and sent["e-100"]["trace_id"] == trace_id
    assert sent["e-0"]["trace_id"] == trace_id
    assert (sent["e-101"]["api_key"], sent["e-101"]["feature"]) == (
        "search-agent-prod",
        "sk-batch-1",
    )


def test_redaction_keeps_the_event_within_the_contracts_limits(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A stand-in (23 characters) replaces a token of 11 or more after validation: a team,
    tag or key of up to 512 characters grew past the limit, and the engine refused the
    event. Text is cut at the limit (the secret already gone), an id hashed whole so that
    two ids differing only in their secrets stay two."""
    from spendbrake.schemas import MAX_STR_LEN, fit_id

    topic = make_topic("redact-limits")
    secrets = ("sk-Zq9abcdefg1", "sk-Zq9abcdefg2")  # 14 characters each, stand-ins 23
    near = "x" * (MAX_STR_LEN - len(secrets[0]) - 1) + " "  # with a secret: 512 characters
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for i, secret in enumerate(secrets):
            text = near + secret
            assert len(text) == MAX_STR_LEN
            producer.emit(
                event(i, event_id=text, team=text, api_key=text, trace_id=text, tags={text: text})
            )
        assert producer.flush(30)
    records = read_topic_sync(broker.bootstrap_servers, topic, 2)
    assert not any(s[3:].encode() in v for _, _, v in records for s in secrets)
    sent = [decode_event(value) for _, _, value in records]  # the engine's own check
    assert sorted(e.event_id for e in sent) == sorted(
        fit_id(near + "sha256:" + hashlib.sha256(s.encode()).hexdigest()[:16]) for s in secrets
    )
    for e in sent:
        assert e.team == e.api_key and e.team.startswith(near + "sha256:")
        assert len(e.team) == MAX_STR_LEN
        assert e.trace_id is not None and len(e.trace_id) == 71
        ((key, value),) = e.tags.items()
        assert key == value == e.team


def test_text_utf8_cannot_hold_is_replaced_and_the_event_sent(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A lone surrogate anywhere (orjson refuses to write one) made emit() raise a TypeError
    (the call's spend lost): it becomes U+FFFD, a split surrogate pair its character."""
    topic = make_topic("surrogates")
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        producer.emit(
            event(
                1,
                event_id="e-1\ud800",
                team="search\udcff",
                tags={"k\ud800": "v", "emoji": "\ud83d\ude00"},
                note=["x\udfff"],
            )
        )
        producer.emit(decode_event(orjson.dumps(event(2))))
        with pytest.raises(InvalidEvent, match="payload: cannot be written as JSON"):
            producer.emit(event(3, note={1, 2}))  # an unknown field that is not JSON
        assert producer.flush(30)
    records = read_topic_sync(broker.bootstrap_servers, topic, 2)
    sent = {decode_event(v).event_id: (k, decode_event(v)) for _, k, v in records}
    key, first = sent["e-1\ufffd"]
    assert key == "e-1\ufffd".encode()
    assert first.team == "search\ufffd" and first.cost_usd == event(1)["cost_usd"]
    assert first.tags == {"k\ufffd": "v", "emoji": "\U0001f600"}
    assert first.extras == {"note": ["x\ufffd"]}
    assert "e-2" in sent


def test_invalid_event_is_the_callers_error(tmp_path: Path) -> None:
    with (
        SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl") as producer,
        pytest.raises(InvalidEvent, match="input_tokens: must be >= 0, got -1"),
    ):
        producer.emit(event(1, input_tokens=-1))


def test_an_invalid_usage_event_object_is_the_callers_error_too(tmp_path: Path) -> None:
    """A ``UsageEvent`` built in code is not checked by its constructor: it went out as it
    was and reached the engine's DLQ, where a dict was refused at ``emit``."""
    from spendbrake.schemas import UsageEvent

    built = UsageEvent(
        event_id="e1",
        ts=1.79e9,
        provider="openai",
        model="gpt-4o",
        input_tokens=-1,
        output_tokens=5,
        team="search",
    )
    with (
        SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl") as producer,
        pytest.raises(InvalidEvent, match="input_tokens: must be >= 0, got -1"),
    ):
        producer.emit(built)


def test_an_event_over_the_size_limit_is_the_callers_error(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """emit() took any size: 64 KiB to 1 MB reached the engine's DLQ, over 1 MB the broker
    refused it, and the spill replay failed on it for ever."""
    from spendbrake.schemas import MAX_EVENT_BYTES

    topic = make_topic("size")
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for size in (MAX_EVENT_BYTES, 2_000_000):
            with pytest.raises(
                InvalidEvent, match=f"^debug: the record is .* exceeds the {MAX_EVENT_BYTES}-byte"
            ):
                producer.emit(event(1, debug="x" * size))
        producer.emit(event(2))
        assert producer.flush(30)
    assert (producer.stats.emitted, producer.stats.delivered, producer.stats.spilled) == (1, 1, 0)
    assert [
        orjson.loads(v)["event_id"]
        for _, _, v in read_topic_sync(broker.bootstrap_servers, topic, 1)
    ] == ["e-2"]


def test_a_record_redaction_pushes_over_the_limit_names_the_field_and_both_sizes(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """60 KB as given, but each 11-character key in ``debug`` becomes a 23-character
    stand-in: 120 KB as it would be sent. The error used to be ``payload: 120146 bytes
    exceeds ...``: a size the caller never sent, and no field to look at."""
    from spendbrake.schemas import MAX_EVENT_BYTES, encode_event, validate_event

    given = event(1, debug="sk-abcdefgh " * 5_000)
    given_bytes = len(encode_event(validate_event(dict(given))))
    assert given_bytes < MAX_EVENT_BYTES
    with (
        SpendProducer(
            broker.bootstrap_servers, topic=make_topic("grown"), spill_path=tmp_path / "s.jsonl"
        ) as producer,
        pytest.raises(InvalidEvent) as refused,
    ):
        producer.emit(given)
    assert refused.value.field == "debug"
    assert re.fullmatch(
        rf"the record is (\d+) bytes and exceeds the {MAX_EVENT_BYTES}-byte limit; this field "
        rf"is \d+ bytes of it; redacting secrets lengthened it from {given_bytes} bytes as given",
        refused.value.reason,
    ), refused.value.reason
    assert producer.stats.emitted == 0


def test_a_record_redaction_brings_under_the_limit_is_sent(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The size is checked on what is sent: a ``UsageEvent`` over the limit as given only
    for the long tokens redaction replaces (a JWT becomes 23 characters) goes out. It was
    refused by a check of the record before redaction (a dict of the same event was not)."""
    from spendbrake.schemas import MAX_EVENT_BYTES, encode_event, validate_event

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ" + "a" * 960 + ".c2lnbmF0dXJl"
    built = validate_event(event(1, debug=" ".join([jwt] * 70)))
    assert len(encode_event(built)) > MAX_EVENT_BYTES
    topic = make_topic("shrunk")
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        producer.emit(built)
        assert producer.flush(30)
    [(_, _, value)] = read_topic_sync(broker.bootstrap_servers, topic, 1)
    assert len(value) <= MAX_EVENT_BYTES
    sent = decode_event(value)
    assert sent.event_id == "e-1" and sent.extras is not None
    assert sent.extras["debug"].split() == [sent.extras["debug"].split()[0]] * 70
    assert sent.extras["debug"].startswith("sha256:") and jwt not in value.decode()


def test_a_spilled_record_the_broker_refuses_as_too_large_is_set_aside(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spill (from an SDK that queued any size) holding a record over the broker's limit:
    the replay failed on it every time and, the spill going first, nothing was delivered
    again, by this producer or any later one using that spill file."""
    topic = make_topic("too-large")
    spill = tmp_path / "s.jsonl"
    huge = orjson.dumps(event(2, debug="x" * 2_000_000))
    spill.write_bytes(b"\n".join([orjson.dumps(event(1)), huge, orjson.dumps(event(3))]) + b"\n")
    with (
        caplog.at_level("WARNING", logger="spendbrake.sdk._producer"),
        SpendProducer(
            broker.bootstrap_servers, topic=topic, spill_path=spill, retry_backoff_s=0.1
        ) as producer,
    ):
        producer.emit(event(4))
        assert producer.flush(30)
    records = read_topic_sync(broker.bootstrap_servers, topic, 3)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["e-1", "e-3", "e-4"]
    assert (producer.stats.rejected, producer.stats.replayed, producer.stats.delivered) == (1, 2, 3)
    assert producer._spill.rejected_path == tmp_path / "s.jsonl.rejected"
    assert producer._spill.rejected_path.read_bytes() == huge + b"\n"
    assert not spill.exists() or not spill.read_bytes()
    assert not (tmp_path / "s.jsonl.replaying").exists()
    warnings = [r.getMessage() for r in caplog.records if "too large" in r.getMessage()]
    assert len(warnings) == 1 and "s.jsonl.rejected" in warnings[0]


def test_a_replay_that_keeps_failing_backs_off(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Each failed replay reconnected and tried again at once: a loop of warnings and
    connections that never waited, whatever the backoff settings."""
    attempts = 0

    class FailingReplay(SpendProducer):
        async def _replay(self, producer: Any) -> bool:
            nonlocal attempts
            attempts += 1
            return False

    spill = tmp_path / "s.jsonl"
    spill.write_bytes(orjson.dumps(event(0)) + b"\n")
    producer = FailingReplay(
        broker.bootstrap_servers,
        topic=make_topic("failing"),
        spill_path=spill,
        retry_backoff_s=0.2,
        max_backoff_s=0.4,
    )
    try:
        emitted = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # a busy caller does not cut the waits short
            producer.emit(event(emitted + 1))
            emitted += 1
            time.sleep(0.005)
        time.sleep(0.1)
        assert 2 <= attempts <= 12
        assert producer.stats.spilled == emitted  # kept on disk while the broker refuses
    finally:
        producer.close(0)


def test_broker_down_at_start_spills_then_delivers_once_it_is_up(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    producer = SpendProducer(
        bootstrap,
        spill_path=tmp_path / "s.jsonl",
        max_queue=500,
        retry_backoff_s=0.1,
        max_backoff_s=0.5,
    )
    for i in range(3_000):
        producer.emit(event(i))  # never raises, never waits for the absent broker
    assert not producer.flush(timeout_s=1.0)
    assert producer.stats.spilled > 0 and producer.stats.delivered == 0
    assert (
        producer.spill_path.exists()
        or producer.spill_path.with_name(producer.spill_path.name + ".replaying").exists()
    )
    with EmbeddedBroker(port=port) as late_broker:
        asyncio.run(ensure_topics(bootstrap, ["spend.events"]))
        assert producer.flush(timeout_s=60)
        assert producer.close()
        records = read_topic_sync(late_broker.bootstrap_servers, "spend.events", 3_000)
    ids = [orjson.loads(v)["event_id"] for _, _, v in records]
    assert sorted(ids) == sorted(f"e-{i}" for i in range(3_000))
    assert producer.stats.replayed == producer.stats.spilled


def test_a_new_producer_delivers_what_a_closed_one_spilled(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    spill = tmp_path / "shared.jsonl"
    first = SpendProducer(bootstrap, spill_path=spill, retry_backoff_s=0.1)
    for i in range(1_000):
        first.emit(event(i))
    assert not first.close(timeout_s=0.5)  # broker absent: everything stays on disk
    assert first.stats.spilled == 1_000
    with EmbeddedBroker(port=port):
        asyncio.run(ensure_topics(bootstrap, ["spend.events"]))
        second = SpendProducer(bootstrap, spill_path=spill, retry_backoff_s=0.1)
        assert second.close(timeout_s=60)
        records = read_topic_sync(bootstrap, "spend.events", 1_000)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == sorted(
        f"e-{i}" for i in range(1_000)
    )


def test_close_with_the_broker_down_returns_once_everything_is_spilled(tmp_path: Path) -> None:
    """The context manager waited its whole 30 s close timeout for a spill file that only
    the broker's return can empty; every event was already safe on disk."""
    spill = tmp_path / "s.jsonl"
    start = time.monotonic()
    with SpendProducer(f"127.0.0.1:{free_port()}", spill_path=spill) as producer:
        for i in range(500):
            producer.emit(event(i))
    assert time.monotonic() - start < 5
    assert producer.stats.spilled == 500 and producer.stats.lost == 0
    ids = sorted(orjson.loads(line)["event_id"] for line in spill.read_bytes().splitlines())
    assert ids == sorted(f"e-{i}" for i in range(500))
    # Closed in the middle of a long wait between retries, with events emitted during it.
    producer = SpendProducer(
        f"127.0.0.1:{free_port()}", spill_path=spill, retry_backoff_s=20.0, max_backoff_s=20.0
    )
    producer.emit(event(500))
    time.sleep(0.5)
    producer.emit(event(501))
    start = time.monotonic()
    assert not producer.close()
    assert time.monotonic() - start < 5
    assert producer.stats.spilled == 2
    assert spill.read_bytes().count(b"\n") == 502


def test_two_live_producers_never_share_a_spill_file(tmp_path: Path) -> None:
    """A third producer on one path shared the second's ``-<pid>`` file, unlocked."""
    producers = [SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl") for _ in range(3)]
    try:
        assert len({p.spill_path for p in producers}) == 3
    finally:
        for producer in producers:
            producer.close(0)


async def test_emit_from_async_code(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = await asyncio.to_thread(make_topic, "async")
    async with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl"
    ) as producer:
        for i in range(100):
            producer.emit(event(i))
        assert await producer.aflush(30)
    records = await asyncio.to_thread(read_topic_sync, broker.bootstrap_servers, topic, 100)
    assert len(records) == 100


def test_a_line_torn_by_a_kill_does_not_take_the_next_event_with_it(tmp_path: Path) -> None:
    """A producer killed mid-write leaves half a line; the next one appends after it. Glued
    to the torn half, the first new event went to the DLQ with it: lost."""
    from spendbrake.sdk._spill import SpillFile

    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"event_id": "a"}\n{"event_id": "b", "ts": "2026-1')  # killed here
    spill = SpillFile(path)
    spill.append([b'{"event_id": "c"}', b'{"event_id": "d"}'])
    spill.close()
    spill = SpillFile(path)
    spill.append([b'{"event_id": "e"}'])  # a file that ends a line gains no blank line
    assert spill.start_replay() is not None
    lines = [line for chunk in spill.read_replay() for line in chunk]
    assert lines == [
        b'{"event_id": "a"}',
        b'{"event_id": "b", "ts": "2026-1',  # its own bad record: the DLQ says so
        b'{"event_id": "c"}',
        b'{"event_id": "d"}',
        b'{"event_id": "e"}',
    ]
    assert b"\n\n" not in spill.replay_path.read_bytes()


def test_a_replay_resumes_at_the_chunk_that_failed(tmp_path: Path) -> None:
    """Chunks marked sent are not read again (their events not resent, their too-large
    lines not set aside twice); a new spill file is read from its start."""
    from spendbrake.sdk._spill import SpillFile

    spill = SpillFile(tmp_path / "s.jsonl")
    spill.append([b"1", b"2", b"3", b"4", b"5"])
    assert spill.start_replay() is not None
    chunks = spill.read_replay(2)
    assert next(chunks) == [b"1", b"2"]
    spill.chunk_sent()
    assert next(chunks) == [b"3", b"4"]
    chunks.close()  # the send of [3, 4] failed
    assert spill.start_replay() == spill.replay_path
    assert list(spill.read_replay(2)) == [[b"3", b"4"], [b"5"]]
    spill.chunk_sent()
    spill.finish_replay()
    spill.append([b"6"])
    assert spill.start_replay() is not None
    assert list(spill.read_replay(2)) == [[b"6"]]
    spill.reject([b"7", b"8"])
    spill.reject([b"9"])
    assert spill.rejected_path.read_bytes() == b"7\n8\n9\n"
    spill.close()


#: The contract's bytes for two events, as the SDK has always written them: unknown fields
#: first, then the known ones in a fixed order, defaults and empty values left out.
FULL = {
    "gateway": "litellm",
    "event_id": "evt-1",
    "ts": "2026-11-23T11:00:00.25+01:00",
    "provider": "anthropic",
    "model": "claude-sonnet-4-5",
    "input_tokens": 1200,
    "output_tokens": 80,
    "team": "search",
    "cache_read_tokens": 1000,
    "cache_write_tokens": 100,
    "reasoning_tokens": 40,
    "cost_usd": 0.0123,
    "feature": "agent",
    "api_key": "search-agent-prod",
    "customer": "acme",
    "environment": "prod",
    "workload": "batch",
    "trace_id": "tr-9",
    "outcome": "ticket_resolved",
    "tags": {"region": "eu"},
    "latency_ms": 812,
    "nested": {"a": [1, 2.5, None]},
}
FULL_BYTES = (
    b'{"gateway":"litellm","latency_ms":812,"nested":{"a":[1,2.5,null]},"event_id":"evt-1",'
    b'"ts":"2026-11-23T10:00:00.250000Z","provider":"anthropic","model":"claude-sonnet-4-5",'
    b'"input_tokens":1200,"output_tokens":80,"team":"search","cache_read_tokens":1000,'
    b'"cache_write_tokens":100,"reasoning_tokens":40,"cost_usd":0.0123,"feature":"agent",'
    b'"api_key":"search-agent-prod","customer":"acme","environment":"prod","trace_id":"tr-9",'
    b'"outcome":"ticket_resolved","workload":"batch","tags":{"region":"eu"}}'
)
MINIMAL = (
    b'{"event_id":"e1","ts":1795428000,"provider":"openai","model":"gpt-4o","input_tokens":0,'
    b'"output_tokens":0,"team":"t","feature":"","workload":"Standard","cache_read_tokens":0}'
)
MINIMAL_BYTES = (
    b'{"event_id":"e1","ts":"2026-11-23T10:00:00.000000Z","provider":"openai","model":"gpt-4o",'
    b'"input_tokens":0,"output_tokens":0,"team":"t"}'
)


def test_the_bytes_the_sdk_emits_are_pinned(tmp_path: Path) -> None:
    """What reaches the topic is what the spill holds: both pinned, a dict and an event."""
    from spendbrake.schemas import encode_event

    producer = SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl", max_queue=0)
    producer.emit(FULL)
    producer.emit(decode_event(MINIMAL))
    producer.close(timeout_s=0.5)
    assert producer.spill_path.read_bytes() == FULL_BYTES + b"\n" + MINIMAL_BYTES + b"\n"
    assert encode_event(decode_event(FULL_BYTES)) == FULL_BYTES
    assert encode_event(decode_event(MINIMAL)) == MINIMAL_BYTES


def test_a_bootstrap_list_that_is_not_host_port_is_the_callers_error(tmp_path: Path) -> None:
    """A port that is not a number stopped the sender thread at its first connection (a
    ``ValueError`` from inside the Kafka client); every later ``emit()`` then raised
    ``RuntimeError: Event loop is closed`` in the caller's code."""
    for bootstrap, reason in [
        ("127.0.0.1:abc", "the port must be a number from 1 to 65535, got 'abc'"),
        ("127.0.0.1:99999", "the port must be a number from 1 to 65535, got '99999'"),
        ("tcp://127.0.0.1:9092", "no scheme, write HOST:PORT"),
        ("a:1,,b:2", "has an empty entry"),
    ]:
        with pytest.raises(ConfigError, match=f"^bootstrap_servers: .*{reason}"):
            SpendProducer(bootstrap, spill_path=tmp_path / "s.jsonl")
    for good in ("127.0.0.1:1", "[::1]:1", "kafka-0:9092, kafka-1:9092", "localhost"):
        SpendProducer(good, spill_path=tmp_path / "s.jsonl").close(0)


def test_the_bootstrap_argument_wins_over_an_unusable_environment_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad ``SPENDBRAKE_BOOTSTRAP`` raised pydantic's ``ValidationError`` even when the
    caller named the brokers; alone, it now raises ``ConfigError`` naming the variable."""
    monkeypatch.setenv("SPENDBRAKE_BOOTSTRAP", "tcp://x:1")
    producer = SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl")
    producer.close(0)
    assert producer.bootstrap_servers == "127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"^SPENDBRAKE_BOOTSTRAP: 'tcp://x:1': no scheme"):
        SpendProducer(spill_path=tmp_path / "s.jsonl")


def test_a_spill_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """It raised ``FileNotFoundError`` or ``NotADirectoryError`` from deep in the start."""
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^spill_path: cannot write a spill file in .*a-file"):
        SpendProducer("127.0.0.1:1", spill_path=tmp_path / "a-file" / "spill" / "s.jsonl")


def test_an_event_the_engine_would_dead_letter_for_its_time_is_the_callers_error(
    tmp_path: Path,
) -> None:
    """An event time years ahead was taken and sent, and the worker dead-lettered it ("is
    94608000s after the record was written"); a list raised ``ValueError`` from ``dict``."""
    producer = SpendProducer("127.0.0.1:1", spill_path=tmp_path / "s.jsonl")
    try:
        with pytest.raises(InvalidEvent, match=r"^ts: is 7\d{3}s in the future \(limit 3600s\)"):
            producer.emit(event(0, ts=time.time() + 7300))
        producer.emit(event(1, ts=time.time() + 3000))  # clock skew within the limit
        with pytest.raises(
            InvalidEvent, match=r"^payload: must be a UsageEvent or a mapping, got list"
        ):
            producer.emit(["x"])  # type: ignore[arg-type]
        assert producer.stats.emitted == 1
    finally:
        producer.close(0)


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records the producer's module logged (not aiokafka's, not another thread's)."""
    return [r for r in caplog.records if r.name == "spendbrake.sdk._producer"]


def test_a_sender_error_neither_stops_the_producer_nor_reaches_the_caller(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spill file the sender could not read (here its replay file is a directory; a disk
    error or another user's file alike) killed the sender thread: later events stayed in
    memory, and the next ``emit()`` raised ``RuntimeError`` in the caller's code. The
    sender logs it, keeps events on disk meanwhile, and sends everything once it can."""
    topic = make_topic("sender-error")
    spill = tmp_path / "s.jsonl"
    spill.write_bytes(orjson.dumps(event(0)) + b"\n")
    blocker = tmp_path / "s.jsonl.replaying"
    blocker.mkdir()
    (blocker / "x").write_bytes(b"x")
    with caplog.at_level(logging.ERROR, logger="spendbrake.sdk._producer"):
        producer = SpendProducer(
            broker.bootstrap_servers,
            topic=topic,
            spill_path=spill,
            retry_backoff_s=0.1,
            max_backoff_s=0.2,
        )
        try:
            deadline = time.monotonic() + 30
            # Only the producer's own lines: an earlier test's sender, let go by its
            # close(0), may still log aiokafka's connection errors.
            while not ours(caplog) and producer._thread.is_alive():
                assert time.monotonic() < deadline, "the sender never tried the replay"
                time.sleep(0.05)
            for i in range(1, 51):
                producer.emit(event(i))  # never raises
            shutil.rmtree(blocker)  # the disk is fixed
            assert producer.flush(30)
        finally:
            producer.close(0)
    assert "s.jsonl" in ours(caplog)[0].getMessage()
    records = read_topic_sync(broker.bootstrap_servers, topic, 51)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == sorted(
        f"e-{i}" for i in range(51)
    )


def test_close_spills_a_batch_the_broker_stopped_answering_for(tmp_path: Path) -> None:
    """The network to the broker cut mid-send: the sender waits up to ``request_timeout_s``
    for an answer, close() returned after its join with the batch still in the sender's
    hands, and the interpreter's exit then lost it (not in the spill file, not sent)."""
    with (
        EmbeddedBroker(advertised_port=free_port()) as late,
        TcpProxy(late.port, port=late.advertised_port) as proxy,
    ):
        bootstrap = f"127.0.0.1:{proxy.port}"
        asyncio.run(ensure_topics(bootstrap, ["spend.events"]))
        spill = tmp_path / "s.jsonl"
        producer = SpendProducer(bootstrap, spill_path=spill, request_timeout_s=30)
        producer.emit(event(0))
        assert producer.flush(30)
        proxy.cut()
        for i in range(1, 51):
            producer.emit(event(i))
        assert not producer.flush(timeout_s=1.0)  # the sender holds them, waiting
        assert not producer.close(timeout_s=0)
        spilled = [orjson.loads(line)["event_id"] for line in spill.read_bytes().splitlines()]
        assert sorted(spilled) == sorted(f"e-{i}" for i in range(1, 51))
        proxy.restore()  # the stuck send ends; a copy that arrives is dropped by event_id
        producer._thread.join(60)  # before the broker goes: no retries left behind


def _emit_in_child(producer: SpendProducer) -> None:
    for i in range(50):
        producer.emit(event(i, event_id=f"child-{i}"))
    sys.exit(0 if producer.flush(30) else 1)  # multiprocessing ends with os._exit: no atexit


def test_a_forked_child_sends_its_own_events_and_not_the_parents(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The sender thread does not survive a fork: a child's events (a gunicorn ``--preload``
    worker, a ``multiprocessing`` fork) waited in a queue nothing sent, lost when the child
    ended with ``os._exit``. The parent's queue, copied into the child, is the parent's to
    send: once."""
    topic = make_topic("fork")
    producer = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "s.jsonl")
    try:
        for i in range(50):
            producer.emit(event(i))
        child = multiprocessing.get_context("fork").Process(target=_emit_in_child, args=(producer,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        for i in range(50, 100):
            producer.emit(event(i))
        assert producer.flush(30)
    finally:
        producer.close()
    records = read_topic_sync(broker.bootstrap_servers, topic, 150)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == sorted(
        [f"e-{i}" for i in range(100)] + [f"child-{i}" for i in range(50)]
    )


def test_a_broker_away_logs_each_of_the_senders_lines_once_not_twenty_a_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aiokafka logs the same connection error at every retry, into the embedding app's logs;
    the sender's repeats are held back (``RepeatFilter``), the app's own clients untouched."""
    caplog.set_level(logging.INFO)
    with SpendProducer(f"127.0.0.1:{free_port()}", spill_path=tmp_path / "s.jsonl") as producer:
        for i in range(20):
            producer.emit(event(i))
        time.sleep(3)  # a few seconds of retries
    sender = [
        (r.name, r.levelno, r.getMessage())
        for r in caplog.records
        if r.name.startswith("aiokafka") and r.threadName == "spendbrake-producer"
    ]
    assert sender, "the sender logged nothing: the test shows nothing"
    repeated = {line: sender.count(line) for line in sender if sender.count(line) > 1}
    assert repeated == {}
    assert producer.stats.spilled == 20


def test_an_event_emitted_after_close_is_spilled_under_a_lock_and_delivered(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``emit()`` after ``close()`` (an exit hook of the application that runs after the
    producer's own) appended to the spill file through a handle kept open with its lock
    let go. Another producer took the path over and replayed the file (renamed, sent,
    deleted); the closed producer's next event went into the deleted file: lost, silently.
    Each such event is now written under the lock, taken again for it, logged and counted;
    the path's next producer sends it."""
    topic = make_topic("after-close")
    spill = tmp_path / "s.jsonl"
    closed = SpendProducer(broker.bootstrap_servers, topic=topic, spill_path=spill)
    assert closed.close(30)
    caplog.set_level(logging.WARNING, logger="spendbrake.sdk")
    closed.emit(event(0))  # spilled: nothing sends it in this producer
    assert not closed.flush(1)  # it said True, the event on disk alone
    live = SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=spill, claim_interval_s=0.2
    )
    try:
        assert live.flush(30)
        assert [
            orjson.loads(v)["event_id"]
            for _, _, v in read_topic_sync(broker.bootstrap_servers, topic, 1)
        ] == ["e-0"]
        closed.emit(event(1))  # the path is the live producer's now
        records = read_topic_sync(broker.bootstrap_servers, topic, 2, timeout_s=30)
    finally:
        live.close(30)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["e-0", "e-1"]
    assert (closed.stats.after_close, closed.stats.spilled, closed.stats.lost) == (2, 2, 0)
    said = [r.getMessage() for r in caplog.records if "after close()" in r.getMessage()]
    assert len(said) == 1 and str(spill) in said[0], said  # once per producer


#: A process that emits events, prints the time, and exits without closing its producer
#: (the interpreter's exit hook closes it).
EXIT_WITHOUT_CLOSE = """
import sys, time
import orjson
from spendbrake.sdk import SpendProducer
bootstrap, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
topic = sys.argv[5] if len(sys.argv) > 5 else "spend.events"
producer = SpendProducer(bootstrap, topic=topic, spill_path=path, request_timeout_s=60)
for i in range(count):
    producer.emit(orjson.loads(sys.argv[4].replace("ID", str(i))))
print(time.monotonic(), flush=True)
"""


def test_a_process_that_emits_and_exits_at_once_delivers_its_events(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The exit hook gave a producer not connected yet 0 s to deliver, as if its broker
    were down: a script that emitted and exited at once (a cron job, a one-call LiteLLM
    script) spilled every event on every run, the broker up, and nothing was sent until a
    later run of it sent the pile. A broker not tried yet now gets the hook's 5 s."""
    topic = make_topic("exit-at-once")
    spill = tmp_path / "s.jsonl"
    template = orjson.dumps(event(0, event_id="e-ID")).decode()
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            EXIT_WITHOUT_CLOSE,
            broker.bootstrap_servers,
            str(spill),
            "3",
            template,
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    records = read_topic_sync(broker.bootstrap_servers, topic, 3, timeout_s=30)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["e-0", "e-1", "e-2"]
    assert not spill.exists() or not spill.read_bytes()


def test_exit_with_a_hung_broker_is_not_held_up_and_spills_what_is_unsent(tmp_path: Path) -> None:
    """A broker that accepts connections and never answers: the exit hook's close (0 s to
    deliver for a broker whose last try failed, 5 s otherwise) joined the sender for at
    least 5 s more, so the process's exit waited 5-10 s. It now waits no longer than the
    close's own timeout (measured by hand: 5.1 s before, 0.5 s after; no timing is
    asserted here), and what was not sent is in the spill file."""
    spill = tmp_path / "s.jsonl"
    template = orjson.dumps(event(0, event_id="e-ID")).decode()
    with SilentServer() as silent:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                EXIT_WITHOUT_CLOSE,
                f"127.0.0.1:{silent.port}",
                str(spill),
                "20",
                template,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline()  # all emitted: the process exits now
        assert child.wait(60) == 0
        child.stdout.close()
    spilled = sorted(orjson.loads(line)["event_id"] for line in spill.read_bytes().splitlines())
    assert spilled == sorted(f"e-{i}" for i in range(20))
