"""The msgspec fast path and the checked path agree on every record: same event, or same error."""

from __future__ import annotations

import random

import orjson
import pytest

from spendbrake._simulate import simulate
from spendbrake.schemas import InvalidEvent, decode_event
from spendbrake.schemas._event import decode_event_checked

POOL: list[object] = [
    0,
    1,
    -1,
    -5,
    7,
    10**9,
    10**9 + 1,
    2**63,
    1.5,
    100.0,
    -0.0,
    1e308,
    True,
    False,
    None,
    "",
    "x",
    "5",
    "Batch",
    "critical",
    "CRITICAL",
    "urgent",
    "2026-11-23T10:00:00Z",
    "2026-11-23T10:00:00",
    "2026-11-23t10:00:00z",
    "2026-11-23 10:00:00+14:00",
    "2026-11-23T10:00:00.123456789Z",
    "2026-11-23",
    "20261123T100000Z",
    1_795_428_000,
    1_795_428_000.5,
    1_795_428_000_000,
    [],
    [1],
    {},
    {"a": "b"},
    {"a": 1},
    "x" * 513,
    "é\u2028",
    " \u00a0\u2028",
    " " * 513,
]
FIELDS = [
    "event_id",
    "ts",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "team",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "feature",
    "api_key",
    "customer",
    "environment",
    "workload",
    "trace_id",
    "outcome",
    "tags",
    "extra_field",
]


def outcome(raw: bytes, decode: object) -> object:
    try:
        return decode(raw)  # type: ignore[operator]
    except InvalidEvent as exc:
        return ("error", str(exc))


def corpus(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    base = [e.to_wire() for e in simulate(1_791_158_400.0 + 36_000, 600, rate_per_s=5, seed=seed)]
    out = [orjson.dumps(w) for w in base[:200]]
    for _ in range(n):
        wire = dict(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(FIELDS)
            if rng.random() < 0.15:
                wire.pop(name, None)
            else:
                wire[name] = rng.choice(POOL)
        out.append(orjson.dumps(wire, option=orjson.OPT_PASSTHROUGH_DATACLASS))
    out += [b"", b"[1]", b"{", b"\xff\xfe", b'{"event_id": "a", "event_id": "b"}', b"null", b'"s"']
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_paths_agree(seed: int) -> None:
    accepted = 0
    for raw in corpus(seed, 3000):
        fast, checked = outcome(raw, decode_event), outcome(raw, decode_event_checked)
        assert fast == checked, raw
        accepted += not isinstance(fast, tuple)
    assert accepted > 200  # the corpus holds plenty of valid events too


def test_valid_events_take_the_fast_path() -> None:
    from spendbrake.schemas._event import fast_decode

    events = list(simulate(1_791_158_400.0 + 36_000, 300, rate_per_s=5, seed=9))
    assert events and all(fast_decode(e.to_json()) == e for e in events)
    # What the fast path declines, the checked path decides: extras, naive ts, bad cache sums.
    assert (
        fast_decode(
            b'{"event_id":"e","ts":1795428000,"provider":"p","model":"m","input_tokens":1,"output_tokens":1,"team":"t","x":1}'
        )
        is None
    )


def test_cached_timestamps_equal_parse_ts() -> None:
    """wire_ts takes a shortcut for common shapes; every answer must equal parse_ts's."""
    from spendbrake.schemas import parse_ts
    from spendbrake.schemas._time import wire_ts

    rng = random.Random(8)
    tails = ["Z", ".123Z", ".123456Z", ".1Z", ".12Z", ".1234567Z", "z", "+00:00", ".123+01:00"]
    tails += [".1 3Z", ".12aZ", ".١٢٣Z", ".123456z", ".12345 Z", ".+12345Z", ".1_2345Z", "Z "]
    stems = ["2026-10-05T10:00:0", "2026-10-05t10:00:5", "2026-10-05 23:59:5", "2026-02-29T10:00:0"]
    stems += [
        "2099-12-31T23:59:5",
        "1999-12-31T23:59:5",
        "2026-10-05T10:00:6",
        "2026-13-05T10:00:0",
    ]
    texts = []
    for _ in range(20_000):
        stem = rng.choice(stems) + str(rng.randint(0, 9))
        tail = rng.choice(tails)
        if rng.random() < 0.5 and tail[:1] == ".":
            digits = "".join(str(rng.randint(0, 9)) for _ in range(len(tail) - 2))
            tail = "." + digits + tail[-1]
        texts.append(stem + tail)
    # Odd characters in the minutes and seconds (digits of other scripts, signs, spaces,
    # separators), in hours the stems above do not cover.
    chars = "0123456789" * 4 + "6٣a +_.:Z"
    for _ in range(20_000):
        hour = rng.choice(["2026-10-05T10:", "2099-12-31T23:", "2026-02-28T00:"])
        mm = rng.choice(chars) + rng.choice(chars)
        ss = rng.choice(chars) + rng.choice(chars)
        texts.append(hour + mm + rng.choice("::.") + ss + rng.choice(tails))
    for text in texts:
        assert outcome(text, wire_ts) == outcome(text, parse_ts), text


def test_the_fast_path_decodes_straight_into_the_event() -> None:
    """One event type: msgspec builds the ``UsageEvent`` itself, ``ts`` already in seconds."""
    import msgspec

    from spendbrake.schemas import UsageEvent, fast_decode

    raw = (
        b'{"event_id":"e","ts":"2026-11-23T10:00:00.5Z","provider":"p","model":"m",'
        b'"input_tokens":1,"output_tokens":1,"team":"t"}'
    )
    event = fast_decode(raw)
    assert issubclass(UsageEvent, msgspec.Struct) and type(event) is UsageEvent
    assert event.ts == 1_795_428_000.5 and event.tags == {} and event.extras is None


def test_what_only_the_checked_path_accepts_is_what_the_fast_path_builds() -> None:
    """Every event the checked path builds is one the fast path builds from its own bytes,
    extras aside (the struct cannot decode them; they round-trip through the checked path)."""
    import msgspec

    from spendbrake.schemas import encode_event, fast_decode

    checked_only = 0
    for raw in corpus(4, 3000):
        try:
            event = decode_event_checked(raw)
        except InvalidEvent:
            continue
        checked_only += fast_decode(raw) is None
        assert decode_event(encode_event(event)) == event
        plain = msgspec.structs.replace(event, extras=None)
        assert fast_decode(encode_event(plain)) == plain, raw
    assert checked_only > 100  # extras, "", "Batch", null tags and counts: all covered


BASE_EVENT = {
    "event_id": "e",
    "ts": "2026-11-23T10:00:00Z",
    "provider": "p",
    "model": "m",
    "input_tokens": 1,
    "output_tokens": 1,
    "team": "t",
}


@pytest.mark.parametrize("value", [{}, {"a": 1}, None, [], "x"])
def test_a_wire_field_named_extras_is_an_unknown_field(value: object) -> None:
    raw = orjson.dumps({**BASE_EVENT, "extras": value})
    assert decode_event(raw) == decode_event_checked(raw)
    assert decode_event(raw).extras == {"extras": value}


@pytest.mark.parametrize("name", ["team", "provider", "model"])
@pytest.mark.parametrize("blank", [" ", "\t \n", "\u00a0\u3000"])
def test_required_attribution_of_only_whitespace_is_refused(name: str, blank: str) -> None:
    """Who pays and for what: a blank team was counted as a team of its own."""
    from spendbrake.schemas import fast_decode

    raw = orjson.dumps({**BASE_EVENT, name: blank})
    assert fast_decode(raw) is None
    want = ("error", f"{name}: must not be only whitespace, got {orjson.dumps(blank).decode()}")
    assert outcome(raw, decode_event) == outcome(raw, decode_event_checked) == want
    # Optional attribution of only whitespace is kept as it came, by both paths.
    raw = orjson.dumps({**BASE_EVENT, "feature": blank})
    assert decode_event(raw) == decode_event_checked(raw) and decode_event(raw).feature == blank
