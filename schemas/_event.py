"""Usage event contract v1: one LLM call, as producers publish it.

The wire form is one JSON object per Kafka record value (or per .jsonl line).
``validate_event`` states the rules and writes every rejection; ``decode_event``
first tries the msgspec fast path in ``_fast.py`` (the per-event hot path) and
falls back to these rules for anything it cannot vouch for.
``bench/bench_contract.py`` measures both paths and a pydantic model.

>>> e = decode_event(b'{"event_id":"e1","ts":"2026-11-23T10:00:00Z","provider":"openai",'
...                  b'"model":"gpt-4o","input_tokens":1200,"output_tokens":80,"team":"search"}')
>>> (e.team, e.input_tokens, e.workload, e.ts)
('search', 1200, 'standard', 1795428000.0)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ._errors import InvalidEvent, show

#: Records larger than this are rejected before parsing. Apache Kafka's default
#: record limit is about 1 MB, and a real usage event is well under 2 KB.
MAX_EVENT_BYTES = 64 * 1024
#: Longest accepted string for ids and attribution values.
MAX_STR_LEN = 512
MAX_TAGS = 64
#: No single LLM call comes near this; a larger count is a producer bug.
MAX_TOKENS = 1_000_000_000
#: Nor does any call cost a million dollars. The bound also keeps sums exact: an
#: unbounded cost became an infinite float in nano-dollars (a crash on the record, at
#: every restart), and window totals stay within int64 below about 9,000 such calls.
MAX_COST_USD = 1_000_000.0
#: Accepted event-time range; epoch milliseconds fall far outside it.
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TS = 4_102_444_800.0  # 2100-01-01T00:00:00Z

WORKLOADS = ("critical", "standard", "batch")

REQUIRED_FIELDS = ("event_id", "ts", "provider", "model", "input_tokens", "output_tokens", "team")
_TOKEN_FIELDS = ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_OPTIONAL_STR_FIELDS = ("feature", "api_key", "customer", "environment", "trace_id", "outcome")
KNOWN_FIELDS = frozenset(
    REQUIRED_FIELDS + _TOKEN_FIELDS + _OPTIONAL_STR_FIELDS + ("cost_usd", "workload", "tags")
)


@dataclass(slots=True)
class UsageEvent:
    """One validated LLM call. ``ts`` is event time in epoch seconds (UTC).

    ``input_tokens`` includes cache-read and cache-write tokens and
    ``output_tokens`` includes reasoning tokens (the OTel gen_ai convention).
    ``cost_usd`` is None when the producer did not price the call.
    ``extras`` keeps unknown top-level wire fields as they came.
    """

    event_id: str
    ts: float
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    team: str
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    feature: str | None = None
    api_key: str | None = None
    customer: str | None = None
    environment: str | None = None
    workload: str = "standard"
    trace_id: str | None = None
    outcome: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The v1 wire object: defaults and empty values left out, ``ts`` as RFC 3339 UTC."""
        out: dict[str, Any] = dict(self.extras)
        out.update(
            event_id=self.event_id,
            ts=format_ts(self.ts),
            provider=self.provider,
            model=self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            team=self.team,
        )
        for name in _TOKEN_FIELDS:
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
        for name in _OPTIONAL_STR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.workload != "standard":
            out["workload"] = self.workload
        if self.tags:
            out["tags"] = self.tags
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_wire())


def format_ts(ts: float) -> str:
    """Epoch seconds to RFC 3339 UTC with microseconds, e.g. ``2026-11-23T10:00:00.000000Z``.

    Output records format two timestamps per trace, so this runs often: the
    text up to the second is cached and only the microseconds are formatted
    here, rounded exactly as ``datetime.fromtimestamp`` rounds them (half to
    even, carrying into the second); ``tests/schemas/test_event.py`` holds the
    two to the same text.
    """
    if not 0.0 <= ts < MAX_TS:
        return _format_ts_slow(ts)
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1_000_000)
    if micros >= 1_000_000:
        return f"{_second_text(int(whole) + 1)}{micros - 1_000_000:06d}Z"
    return f"{_second_text(int(whole))}{micros:06d}Z"


def _format_ts_slow(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=8192)
def _second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a whole second since the epoch."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def decode_event(raw: bytes | bytearray | memoryview | str) -> UsageEvent:
    """Parse and validate one wire record; raise ``InvalidEvent`` naming the field."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("payload", f"{len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    event = fast_decode(raw)
    if event is not None:
        return event
    return decode_event_checked(raw)


def decode_event_checked(raw: bytes | bytearray | memoryview | str) -> UsageEvent:
    """``decode_event`` without the fast path: orjson, then ``validate_event``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("payload", f"not valid JSON: {exc}") from exc
    return validate_event(obj)


def validate_event(obj: Any) -> UsageEvent:
    """Validate an already-parsed wire object (a dict from JSON) into a ``UsageEvent``.

    Written flat for speed: each common case is one inline check, and the
    helpers that build messages run only when a check fails.
    """
    if type(obj) is not dict:
        raise InvalidEvent("payload", f"must be a JSON object, got {_json_type(obj)}")
    get = obj.get
    event_id = get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_STR_LEN:
        _bad_str("event_id", event_id, required=True)
    ts = get("ts")
    ts = float(ts) if type(ts) is int or type(ts) is float else ts
    if type(ts) is not float or not MIN_TS <= ts < MAX_TS:
        ts = _parse_ts(ts)
    provider = get("provider")
    if type(provider) is not str or not 0 < len(provider) <= MAX_STR_LEN:
        _bad_str("provider", provider, required=True)
    model = get("model")
    if type(model) is not str or not 0 < len(model) <= MAX_STR_LEN:
        _bad_str("model", model, required=True)
    input_tokens = get("input_tokens")
    if type(input_tokens) is not int or not 0 <= input_tokens <= MAX_TOKENS:
        _bad_tokens("input_tokens", input_tokens, required=True)
    output_tokens = get("output_tokens")
    if type(output_tokens) is not int or not 0 <= output_tokens <= MAX_TOKENS:
        _bad_tokens("output_tokens", output_tokens, required=True)
    team = get("team")
    if type(team) is not str or not 0 < len(team) <= MAX_STR_LEN:
        _bad_str("team", team, required=True)
    cache_read = get("cache_read_tokens", 0)
    if type(cache_read) is not int or not 0 <= cache_read <= MAX_TOKENS:
        cache_read = _bad_tokens("cache_read_tokens", cache_read)
    cache_write = get("cache_write_tokens", 0)
    if type(cache_write) is not int or not 0 <= cache_write <= MAX_TOKENS:
        cache_write = _bad_tokens("cache_write_tokens", cache_write)
    if cache_read + cache_write > input_tokens:
        raise InvalidEvent(
            "cache_read_tokens" if cache_read else "cache_write_tokens",
            f"cache_read_tokens + cache_write_tokens ({cache_read + cache_write}) "
            f"must be <= input_tokens ({input_tokens})",
        )
    reasoning = get("reasoning_tokens", 0)
    if type(reasoning) is not int or not 0 <= reasoning <= MAX_TOKENS:
        reasoning = _bad_tokens("reasoning_tokens", reasoning)
    if reasoning > output_tokens:
        raise InvalidEvent(
            "reasoning_tokens",
            f"must be <= output_tokens ({output_tokens}) because output includes reasoning, "
            f"got {reasoning}",
        )
    cost = get("cost_usd")
    if cost is not None:
        if type(cost) is int:
            cost = float(cost)
        if type(cost) is not float or not 0.0 <= cost <= MAX_COST_USD:
            _bad_cost(cost)
    workload = get("workload", "standard")
    if workload not in WORKLOADS:
        workload = _workload(workload)
    tags = get("tags")
    tags = {} if tags is None else _tags(tags)
    feature = get("feature")
    if feature is not None and (type(feature) is not str or not 0 < len(feature) <= MAX_STR_LEN):
        feature = _optional_str("feature", feature)
    api_key = get("api_key")
    if api_key is not None and (type(api_key) is not str or not 0 < len(api_key) <= MAX_STR_LEN):
        api_key = _optional_str("api_key", api_key)
    customer = get("customer")
    if customer is not None and (type(customer) is not str or not 0 < len(customer) <= MAX_STR_LEN):
        customer = _optional_str("customer", customer)
    environment = get("environment")
    if environment is not None and (
        type(environment) is not str or not 0 < len(environment) <= MAX_STR_LEN
    ):
        environment = _optional_str("environment", environment)
    trace_id = get("trace_id")
    if trace_id is not None and (type(trace_id) is not str or not 0 < len(trace_id) <= MAX_STR_LEN):
        trace_id = _optional_str("trace_id", trace_id)
    outcome = get("outcome")
    if outcome is not None and (type(outcome) is not str or not 0 < len(outcome) <= MAX_STR_LEN):
        outcome = _optional_str("outcome", outcome)
    # All seven required fields are present by now, so only a larger object can
    # hold unknown fields; counting known keys avoids a scan in the common case.
    extras = {}
    if len(obj) > 7 and not KNOWN_FIELDS.issuperset(obj):
        extras = {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
    return UsageEvent(
        event_id,
        ts,
        provider,
        model,
        input_tokens,
        output_tokens,
        team,
        cache_read,
        cache_write,
        reasoning,
        cost,
        feature,
        api_key,
        customer,
        environment,
        workload,
        trace_id,
        outcome,
        tags,
        extras,
    )


def parse_ts(value: Any) -> float:
    """Event time to epoch seconds: an RFC 3339 string with an offset, or a number."""
    return _parse_ts(value)


def _parse_ts(value: Any) -> float:
    kind = type(value)
    if kind is str:
        text = value
        # datetime.fromisoformat also takes ISO 8601 forms RFC 3339 does not
        # (dates alone, basic format), so check the shape first.
        if (
            len(text) < 19
            or text[4] != "-"
            or text[7] != "-"
            or text[10] not in "Tt "
            or text[13] != ":"
        ):
            raise InvalidEvent(
                "ts", f"must be an RFC 3339 timestamp or epoch seconds, got {show(value)}"
            )
        if text[-1] == "z":
            text = text[:-1] + "Z"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent("ts", f"must be an RFC 3339 timestamp, got {show(value)}") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts", f"must carry a UTC offset (Z or +HH:MM), got {show(value)}")
        ts = parsed.timestamp()
    elif kind is int or kind is float:
        ts = float(value)
        if not math.isfinite(ts):
            raise InvalidEvent("ts", f"must be finite, got {show(value)}")
    elif value is None:
        raise InvalidEvent("ts", "is required")
    else:
        raise InvalidEvent("ts", f"must be an RFC 3339 string or epoch seconds, got {show(value)}")
    if not MIN_TS <= ts < MAX_TS:
        hint = " (epoch milliseconds? send seconds)" if ts > MAX_TS * 100 else ""
        raise InvalidEvent("ts", f"must fall between 2000 and 2100, got {show(value)}{hint}")
    return ts


def _bad_str(name: str, value: Any, required: bool = False) -> None:
    if value is None:
        raise InvalidEvent(name, "is required")
    if type(value) is not str:
        raise InvalidEvent(name, f"must be a string, got {show(value)}")
    if not value:
        raise InvalidEvent(name, "must not be empty")
    raise InvalidEvent(name, f"must be at most {MAX_STR_LEN} characters, got {len(value)}")


def _optional_str(name: str, value: Any) -> str | None:
    """Empty optional attribution means unset, as many gateways send ``""``."""
    if value == "":
        return None
    _bad_str(name, value)
    return None  # unreachable: _bad_str always raises


def _bad_tokens(name: str, value: Any, required: bool = False) -> int:
    if value is None and not required:
        return 0
    if value is None:
        raise InvalidEvent(name, "is required")
    if type(value) is not int:
        raise InvalidEvent(name, f"must be an integer, got {show(value)}")
    if value < 0:
        raise InvalidEvent(name, f"must be >= 0, got {value}")
    raise InvalidEvent(name, f"must be <= {MAX_TOKENS}, got {value}")


def _bad_cost(value: Any) -> None:
    if type(value) is not float:
        raise InvalidEvent("cost_usd", f"must be a number, got {show(value)}")
    if 0.0 <= value < math.inf:
        raise InvalidEvent("cost_usd", f"must be <= {MAX_COST_USD:.0f}, got {show(value)}")
    raise InvalidEvent("cost_usd", f"must be a finite number >= 0, got {show(value)}")


def _workload(value: Any) -> str:
    if value is None or value == "":
        return "standard"
    if type(value) is str and value.lower() in WORKLOADS:
        return value.lower()
    raise InvalidEvent("workload", f"must be one of critical, standard, batch; got {show(value)}")


def _tags(value: Any) -> dict[str, str]:
    if type(value) is not dict:
        raise InvalidEvent(
            "tags", f"must be an object of string to string, got {_json_type(value)}"
        )
    if len(value) > MAX_TAGS:
        raise InvalidEvent("tags", f"must have at most {MAX_TAGS} entries, got {len(value)}")
    for key, item in value.items():
        if type(item) is not str:
            raise InvalidEvent(f"tags.{key}", f"must be a string, got {show(item)}")
        if len(item) > MAX_STR_LEN or len(key) > MAX_STR_LEN:
            raise InvalidEvent(f"tags.{key}", f"must be at most {MAX_STR_LEN} characters")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


from ._fast import fast_decode  # noqa: E402 - _fast imports this module's constants
