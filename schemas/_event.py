"""Usage event contract v1: one LLM call, as producers publish it.

The wire form is one JSON object per Kafka record value (or per .jsonl line), and
``UsageEvent`` is both that record and the event in memory. ``decode_event`` has two
paths to it:

- the fast path (``fast_decode``): msgspec decodes the bytes straight into a
  ``UsageEvent``, type- and range-checked in C; then ``ts`` text becomes epoch seconds
  in place, and two cross-field rules and the ``NOT_BLANK`` fields are checked. It
  only ever says "valid, here is the event" or "not sure".
- the checked path (``decode_event_checked``: orjson, then ``validate_event``), taken
  only when the fast one is not sure. Its job is to say why a record is refused: it
  holds the contract's rules and writes every error message, so the two paths cannot
  disagree about one. It also accepts the few valid records the struct cannot decode
  (see ``UsageEvent``), and builds the event the fast path would have built.
  ``tests/schemas/test_fast_path.py`` holds the two to the same answers.

``bench/bench_contract.py`` measures both paths and a pydantic model.

>>> e = decode_event(b'{"event_id":"e1","ts":"2026-11-23T10:00:00Z","provider":"openai",'
...                  b'"model":"gpt-4o","input_tokens":1200,"output_tokens":80,"team":"search"}')
>>> (e.team, e.input_tokens, e.workload, e.ts)
('search', 1200, 'standard', 1795428000.0)
>>> encode_event(e).split(b",")[1]
b'"ts":"2026-11-23T10:00:00.000000Z"'
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import orjson

from ._errors import InvalidEvent, show
from ._time import MAX_TS, MIN_TS, format_ts, parse_ts, wire_ts

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_STR_LEN",
    "WORKLOADS",
    "Extras",
    "UsageEvent",
    "check_event_size",
    "decode_event",
    "encode_event",
    "fast_decode",
    "fit_id",
    "replace_surrogates",
    "validate_event",
]

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

WORKLOADS = ("critical", "standard", "batch")

REQUIRED_FIELDS = ("event_id", "ts", "provider", "model", "input_tokens", "output_tokens", "team")
#: Required attribution that must hold more than whitespace: who pays, and for what. (An
#: optional attribution string that is only whitespace is kept as it came.)
NOT_BLANK = ("team", "provider", "model")
_not_blank = [operator.attrgetter(name) for name in NOT_BLANK]
_TOKEN_FIELDS = ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_OPTIONAL_STR_FIELDS = ("feature", "api_key", "customer", "environment", "trace_id", "outcome")
KNOWN_FIELDS = frozenset(
    REQUIRED_FIELDS + _TOKEN_FIELDS + _OPTIONAL_STR_FIELDS + ("cost_usd", "workload", "tags")
)


class Extras(dict[str, Any]):
    """Unknown top-level wire fields of an event, kept as they came.

    A type of its own so that msgspec can never decode one (it has no hook for it): a
    wire field named ``extras`` is an unknown field like any other, and only the
    checked path, which keeps unknown fields, sets one.
    """

    __slots__ = ()


_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STR_LEN)]
_TagText = Annotated[str, msgspec.Meta(max_length=MAX_STR_LEN)]
_Tags = Annotated[dict[_TagText, _TagText], msgspec.Meta(max_length=MAX_TAGS)]
#: Epoch seconds, or the RFC 3339 text ``fast_decode`` turns into them.
_WireTs = Annotated[float, msgspec.Meta(ge=MIN_TS, lt=MAX_TS)] | str
_Cost = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_COST_USD)]


class UsageEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One LLM call: the v1 wire record, and the event in memory.

    ``ts`` is event time in epoch seconds (UTC), a float. On the wire it is RFC 3339
    text (or epoch seconds): msgspec reads either, and ``fast_decode`` replaces text by
    its seconds with the contract's own parser before anyone sees the event (type
    checkers see the float); ``encode_event`` writes it back as text.
    ``input_tokens`` includes cache-read and cache-write tokens and
    ``output_tokens`` includes reasoning tokens (the OTel gen_ai convention).
    ``cost_usd`` is None when the producer did not price the call.

    msgspec checks every field's type and range as it decodes; ``fast_decode`` adds the
    two cross-field rules and refuses a ``NOT_BLANK`` field that is only whitespace.
    Valid records the struct cannot decode reach it through the checked path
    (``validate_event``), which builds the event the fast path would:

    - unknown top-level fields: kept in ``extras`` (an ``Extras``, which msgspec never
      decodes, so a wire field named ``extras`` is unknown too; None when there are
      none, as for almost every event, so the hot path builds no dict for them);
    - an empty optional attribution string (``"feature": ""``): None;
    - ``workload`` in another case (``"Batch"``), empty or null: lower case, ``standard``;
    - null for ``tags`` or a token count: ``{}``, 0.

    ``gc=False``: the collector need not track one object per event; an event holds
    strings, numbers and dicts of decoded JSON, never itself.
    """

    event_id: _Text
    if TYPE_CHECKING:  # what an event holds; msgspec reads the wire's types, below
        ts: float
    else:
        ts: _WireTs
    provider: _Text
    model: _Text
    input_tokens: _Tokens
    output_tokens: _Tokens
    team: _Text
    cache_read_tokens: _Tokens = 0
    cache_write_tokens: _Tokens = 0
    reasoning_tokens: _Tokens = 0
    cost_usd: _Cost | None = None
    feature: _Text | None = None
    api_key: _Text | None = None
    customer: _Text | None = None
    environment: _Text | None = None
    workload: Literal["critical", "standard", "batch"] = "standard"
    trace_id: _Text | None = None
    outcome: _Text | None = None
    tags: _Tags = {}
    if TYPE_CHECKING:
        extras: Extras | None = None
    else:
        extras: Extras = None  # not Optional for msgspec: a wire "extras": null is unknown too

    def to_wire(self) -> dict[str, Any]:
        """The v1 wire object: defaults and empty values left out, ``ts`` as RFC 3339 UTC."""
        out: dict[str, Any] = {} if self.extras is None else dict(self.extras)
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
        return encode_event(self)


def encode_event(event: UsageEvent) -> bytes:
    """The event as the SDK publishes it: ``to_wire()`` in orjson (bytes pinned by
    ``tests/schemas/test_event.py``).

    Text UTF-8 cannot hold (a lone surrogate such as ``"\\ud800"``, which orjson
    refuses) is first replaced in the event itself by ``replace_surrogates``: the call's
    spend goes out, not an error. Raises ``InvalidEvent`` for an unknown field whose
    value is not JSON (a set, an int over 64 bits).
    """
    try:
        return orjson.dumps(event.to_wire())
    except orjson.JSONEncodeError as exc:
        error = exc
    if replace_surrogates(event):
        try:
            return orjson.dumps(event.to_wire())
        except orjson.JSONEncodeError as exc:
            error = exc
    raise InvalidEvent("payload", f"cannot be written as JSON: {error}") from error


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _encodable_value(value: Any) -> Any:
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, dict):
        return type(value)({_encodable_value(k): _encodable_value(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_encodable_value(v) for v in value]
    return value


def replace_surrogates(event: UsageEvent) -> bool:
    """Make every string of ``event`` writable as UTF-8, in place; True if one changed.

    A lone surrogate (``"\\ud800"``: from a client's JSON escape or a file name decoded
    with ``surrogateescape``) becomes U+FFFD, the replacement character; a high and a
    low surrogate in a row become the one character they encode. Text never grows, so
    the contract's lengths still hold. Tag keys that become equal merge (the last
    wins). Tags and extras are rebuilt, never changed in the caller's dict.

    >>> e = decode_event(b'{"event_id":"e1","ts":1795428000,"provider":"openai",'
    ...                  b'"model":"gpt-4o","input_tokens":1,"output_tokens":1,"team":"t"}')
    >>> e.team, e.tags = "search\\ud800", {"emoji": "\\ud83d\\ude00"}
    >>> replace_surrogates(e), e.team == "search\\ufffd", e.tags == {"emoji": "\\U0001f600"}
    (True, True, True)
    """
    changed = False
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if not value or not isinstance(value, (str, dict)):
            continue
        clean = _encodable_value(value)
        if clean != value:
            setattr(event, name, clean)
            changed = True
    return changed


def fit_id(value: str) -> str:
    """An id the contract holds: ``value`` itself when it has at most ``MAX_STR_LEN``
    characters, else ``sha256:`` and the 64 hex digits of its SHA-256 (71 characters).

    The same long id always gives the same stand-in, so a retried call still dedupes;
    cutting it short instead would make every id sharing its first 512 characters one
    call, and all but one of those calls would be dropped as duplicates.

    >>> fit_id("call-1")
    'call-1'
    >>> fit_id("x" * 600) == fit_id("x" * 600) != fit_id("x" * 601)
    True
    >>> len(fit_id("x" * 600))
    71
    """
    if len(value) <= MAX_STR_LEN:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


_decode = msgspec.json.Decoder(UsageEvent).decode


def fast_decode(raw: bytes | bytearray | memoryview | str) -> UsageEvent | None:
    """The event if msgspec, the cross-field rules and ``NOT_BLANK`` accept it, else None
    (the checked path decides): the worker's per-record call, no exception raised for a
    bad record."""
    try:
        event = _decode(raw)
    except (msgspec.MsgspecError, ValueError):  # bad UTF-8: UnicodeDecodeError
        return None
    ts = event.ts
    if type(ts) is str:
        try:
            event.ts = wire_ts(ts)
        except InvalidEvent:
            return None
    if (
        event.cache_read_tokens + event.cache_write_tokens > event.input_tokens
        or event.reasoning_tokens > event.output_tokens
        or event.team.isspace()  # NOT_BLANK, inline: about 15 ns each
        or event.provider.isspace()
        or event.model.isspace()
    ):
        return None
    return event


def check_event_size(raw: bytes | bytearray | memoryview | str) -> None:
    """Raise ``InvalidEvent`` for a record over ``MAX_EVENT_BYTES``: the engine refuses it,
    and a producer must not send it (``SpendProducer.emit`` checks with this)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("payload", f"{len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")


def decode_event(raw: bytes | bytearray | memoryview | str) -> UsageEvent:
    """Parse and validate one wire record; raise ``InvalidEvent`` naming the field."""
    check_event_size(raw)
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
        ts = parse_ts(ts)
    provider = get("provider")
    if type(provider) is not str or not 0 < len(provider) <= MAX_STR_LEN or provider.isspace():
        _bad_str("provider", provider, required=True)
    model = get("model")
    if type(model) is not str or not 0 < len(model) <= MAX_STR_LEN or model.isspace():
        _bad_str("model", model, required=True)
    input_tokens = get("input_tokens")
    if type(input_tokens) is not int or not 0 <= input_tokens <= MAX_TOKENS:
        _bad_tokens("input_tokens", input_tokens, required=True)
    output_tokens = get("output_tokens")
    if type(output_tokens) is not int or not 0 <= output_tokens <= MAX_TOKENS:
        _bad_tokens("output_tokens", output_tokens, required=True)
    team = get("team")
    if type(team) is not str or not 0 < len(team) <= MAX_STR_LEN or team.isspace():
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
    event = UsageEvent(
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
    )
    # All seven required fields are present by now, so only a larger object can
    # hold unknown fields; counting known keys avoids a scan in the common case.
    if len(obj) > 7 and not KNOWN_FIELDS.issuperset(obj):
        event.extras = Extras({k: v for k, v in obj.items() if k not in KNOWN_FIELDS})
    return event


def _bad_str(name: str, value: Any, required: bool = False) -> None:
    if value is None:
        raise InvalidEvent(name, "is required")
    if type(value) is not str:
        raise InvalidEvent(name, f"must be a string, got {show(value)}")
    if not value:
        raise InvalidEvent(name, "must not be empty")
    if len(value) > MAX_STR_LEN:
        raise InvalidEvent(name, f"must be at most {MAX_STR_LEN} characters, got {len(value)}")
    # The one check left that a caller makes (``NOT_BLANK``).
    raise InvalidEvent(name, f"must not be only whitespace, got {show(value)}")


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
