"""Usage event contract v1: every rejection reason names its field; valid lines
that careless readers break still pass."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from spendbrake.schemas import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    UsageEvent,
    decode_event,
    parse_ts,
    validate_event,
)

BASE = {
    "event_id": "evt-1",
    "ts": "2026-11-23T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1200,
    "output_tokens": 80,
    "team": "search",
}


def wire(**changes: object) -> dict[str, object]:
    out = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def rejects(obj: object, field: str, fragment: str) -> None:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert info.value.field == field, str(info.value)
    assert fragment in info.value.reason, str(info.value)
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "\n" not in message


def test_minimal_event_gets_defaults() -> None:
    event = decode_event(orjson.dumps(BASE))
    assert event == UsageEvent(
        event_id="evt-1",
        ts=datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp(),
        provider="openai",
        model="gpt-4o",
        input_tokens=1200,
        output_tokens=80,
        team="search",
    )
    assert event.workload == "standard" and event.cost_usd is None and event.tags == {}


def test_full_event_round_trips_through_wire() -> None:
    full = wire(
        cache_read_tokens=1000,
        cache_write_tokens=100,
        reasoning_tokens=40,
        cost_usd=0.0123,
        feature="agent",
        api_key="search-agent-prod",
        customer="acme",
        environment="prod",
        workload="batch",
        trace_id="tr-9",
        outcome="ticket_resolved",
        tags={"region": "eu"},
    )
    event = decode_event(orjson.dumps(full))
    again = decode_event(event.to_json())
    assert again == event
    assert (event.cache_read_tokens, event.cache_write_tokens, event.reasoning_tokens) == (
        1000,
        100,
        40,
    )
    assert event.workload == "batch" and event.tags == {"region": "eu"}


def test_message_format_from_the_contract() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(orjson.dumps(wire(input_tokens=-5)))
    assert str(info.value) == "input_tokens: must be >= 0, got -5"


@pytest.mark.parametrize(
    "name", ["event_id", "ts", "provider", "model", "input_tokens", "output_tokens", "team"]
)
def test_missing_required_field(name: str) -> None:
    rejects(wire(**{name: ...}), name, "is required")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("input_tokens", True, "must be an integer, got true"),
        ("output_tokens", 12.5, "must be an integer, got 12.5"),
        ("input_tokens", 100.0, "must be an integer"),
        ("input_tokens", "100", 'must be an integer, got "100"'),
        ("cache_read_tokens", False, "must be an integer"),
        ("reasoning_tokens", "3", "must be an integer"),
        ("output_tokens", -1, "must be >= 0, got -1"),
        ("cache_write_tokens", -3, "must be >= 0"),
        ("input_tokens", 10**12, "must be <= 1000000000"),
        ("cost_usd", "0.1", "must be a number"),
        ("cost_usd", True, "must be a number"),
        ("cost_usd", -0.01, "must be a finite number >= 0"),
        ("team", 7, "must be a string, got 7"),
        ("team", "", "must not be empty"),
        ("event_id", "x" * 600, "at most 512 characters"),
        ("feature", ["a"], "must be a string"),
        ("workload", "urgent", "must be one of critical, standard, batch"),
        ("tags", ["a"], "must be an object"),
    ],
)
def test_wrong_types_and_ranges(name: str, value: object, fragment: str) -> None:
    rejects(wire(**{name: value}), name, fragment)


def test_tag_values_must_be_strings() -> None:
    rejects(wire(tags={"n": 1}), "tags.n", "must be a string")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2026-11-23T10:00:00", "must carry a UTC offset"),
        ("2026-11-23 10:00:00", "must carry a UTC offset"),
        ("2026-11-23", "RFC 3339"),
        ("20261123T100000Z", "RFC 3339"),
        ("yesterday", "RFC 3339"),
        ("2026-13-45T10:00:00Z", "RFC 3339"),
        (True, "RFC 3339 string or epoch seconds"),
        (1_795_428_000_000, "epoch milliseconds?"),
        (1_795_428_000_000_000, "epoch microseconds?"),
        (1_795_428_000_000_000_000, "epoch nanoseconds?"),
        (12, "must fall between 2000 and 2100"),
    ],
)
def test_bad_timestamps(value: object, fragment: str) -> None:
    rejects(wire(ts=value), "ts", fragment)


def test_a_python_caller_may_give_an_aware_datetime() -> None:
    """The SDK's callers hold datetimes: an aware one was refused with a message that
    showed it as the valid-looking text it prints as."""
    from datetime import UTC, datetime, timedelta, timezone

    aware = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert parse_ts(aware) == parse_ts("2026-11-23T10:00:00Z")
    assert parse_ts(aware.astimezone(timezone(timedelta(hours=-11)))) == parse_ts(aware)
    with pytest.raises(InvalidEvent, match=r"^ts: a datetime must carry a timezone"):
        parse_ts(datetime(2026, 11, 23, 10, 0))


def test_nan_and_infinity_are_rejected() -> None:
    rejects(b'{"event_id":"e","ts":NaN}', "payload", "not valid JSON")
    rejects(
        orjson.dumps(wire()).replace(b'"input_tokens":1200', b'"input_tokens":1e999'),
        "payload",
        "infinity",
    )
    # Python callers (the SDK) can hand over real NaN and inf floats.
    for name, value in [
        ("cost_usd", float("nan")),
        ("cost_usd", float("inf")),
        ("ts", float("nan")),
    ]:
        with pytest.raises(InvalidEvent) as info:
            validate_event(wire(**{name: value}))
        assert info.value.field == name


def test_cache_tokens_cannot_exceed_input() -> None:
    rejects(
        wire(input_tokens=1000, cache_read_tokens=900, cache_write_tokens=200),
        "cache_read_tokens",
        "must be <= input_tokens (1000)",
    )
    rejects(
        wire(input_tokens=10, cache_write_tokens=11),
        "cache_write_tokens",
        "(11) must be <= input_tokens (10)",
    )


def test_reasoning_tokens_are_part_of_output() -> None:
    rejects(
        wire(output_tokens=10, reasoning_tokens=11),
        "reasoning_tokens",
        "must be <= output_tokens (10)",
    )


def test_malformed_json_and_non_objects() -> None:
    rejects(b'{"event_id": "e1", ', "payload", "not valid JSON")
    rejects(b"", "payload", "not valid JSON")
    rejects(b"[1, 2]", "payload", "must be a JSON object, got array")
    rejects(b'"just a string"', "payload", "got string")


def test_ten_megabyte_payload_is_refused_before_parsing() -> None:
    huge = orjson.dumps(wire(tags={"blob": "x" * (10 * 1024 * 1024)}))
    rejects(huge, "payload", f"exceeds the {MAX_EVENT_BYTES}-byte limit")


def test_non_utf8_bytes() -> None:
    raw = orjson.dumps(wire()).replace(b"search", b"se\xffrch")
    rejects(raw, "payload", "UTF-8")


def test_line_separator_inside_a_string_is_valid() -> None:
    raw = orjson.dumps(wire(feature="line\u2028break\u2029para"))
    assert "\u2028".encode() in raw  # orjson writes it raw, as JSON allows
    assert decode_event(raw).feature == "line\u2028break\u2029para"


def test_crlf_line_ending_is_valid() -> None:
    assert decode_event(orjson.dumps(wire()) + b"\r\n").team == "search"


@pytest.mark.parametrize(
    ("ts", "utc_day"),
    [
        ("2026-11-23T20:30:00-11:00", "2026-11-24"),
        ("2026-11-24T06:00:00+14:00", "2026-11-23"),
        ("2026-11-23T23:59:59.999999+00:00", "2026-11-23"),
        ("2026-11-23t10:00:00z", "2026-11-23"),
        (1795428000, "2026-11-23"),
        (1795428000.25, "2026-11-23"),
    ],
)
def test_offsets_move_the_utc_day(ts: object, utc_day: str) -> None:
    event = decode_event(orjson.dumps(wire(ts=ts)))
    assert datetime.fromtimestamp(event.ts, UTC).date().isoformat() == utc_day


def test_zero_token_call_is_valid() -> None:
    event = decode_event(orjson.dumps(wire(input_tokens=0, output_tokens=0)))
    assert (event.input_tokens, event.output_tokens) == (0, 0)


def test_unknown_fields_are_kept_as_extras() -> None:
    event = decode_event(orjson.dumps(wire(gateway="litellm", latency_ms=812)))
    assert event.extras == {"gateway": "litellm", "latency_ms": 812}
    assert decode_event(event.to_json()).extras == event.extras


def test_empty_optional_attribution_means_unset() -> None:
    event = decode_event(orjson.dumps(wire(feature="", customer=None, workload="")))
    assert (event.feature, event.customer, event.workload) == (None, None, "standard")


def test_workload_is_case_insensitive() -> None:
    assert decode_event(orjson.dumps(wire(workload="Batch"))).workload == "batch"


def test_format_ts_matches_datetime_exactly() -> None:
    """The cached formatter rounds like datetime.fromtimestamp, carries included."""
    import math
    import random

    from spendbrake.schemas._time import MAX_TS, _format_ts_slow, format_ts

    rng = random.Random(5)
    cases = [0.0, 0.9999995, 0.99999949, 1795428059.9999996, 4102444799.9999995, 2.5e-6, -1.5]
    for _ in range(20_000):
        cases.append(rng.uniform(0, MAX_TS))
        cases.append(round(rng.uniform(9e8, 2e9), rng.randint(0, 7)))
        cases.append(math.floor(rng.uniform(9e8, 2e9)) + (rng.randint(0, 2_000_000) + 0.5) / 1e6)
    assert [format_ts(c) for c in cases] == [_format_ts_slow(c) for c in cases]
