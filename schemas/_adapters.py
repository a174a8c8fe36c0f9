"""Adapters: build a contract-v1 event from what a producer already holds.

Each adapter only maps source fields onto wire names and hands the dict to
``validate_event``, so there is one validation path and every bad source value
surfaces as ``InvalidEvent`` naming the v1 field. None reads a clock, the
environment or the network; a caller whose source has no time passes ``ts``.

The token convention is the contract's (OTel's): ``input_tokens`` includes
cache reads and writes, ``output_tokens`` includes reasoning. Anthropic's own
``usage.input_tokens`` excludes both cache counts, so that adapter adds them:

>>> e = from_anthropic_usage(
...     {"input_tokens": 100, "cache_read_input_tokens": 2000,
...      "cache_creation_input_tokens": 500, "output_tokens": 40},
...     event_id="msg_1", ts=1795428000.0, model="claude-sonnet-4-5", team="search")
>>> (e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.output_tokens)
(2600, 2000, 500, 40)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from ._errors import InvalidEvent, show
from ._event import (
    MAX_EVENT_BYTES,
    MAX_STR_LEN,
    MAX_TAGS,
    WORKLOADS,
    UsageEvent,
    encode_event,
    fit_id,
    validate_event,
)

#: Fields a LiteLLM caller may set per request through metadata or request tags.
_LITELLM_OVERRIDES = ("feature", "customer", "environment", "workload", "outcome")
#: Optional contract fields the ``**attribution`` keyword arguments may set.
ATTRIBUTION_FIELDS = frozenset((*_LITELLM_OVERRIDES, "api_key", "trace_id", "tags", "cost_usd"))
#: ``request_tags`` prefixes (before the first ``:``) that set a field instead of a tag.
_TAG_FIELDS = {**{name: name for name in _LITELLM_OVERRIDES}, "env": "environment"}
#: Span attributes read for attribution (``spendbrake.team`` ...); they win over keywords.
OTEL_ATTRIBUTION = {
    f"spendbrake.{name}": name for name in ("team", *_LITELLM_OVERRIDES, "api_key", "cost_usd")
}


class SupportsModelDump(Protocol):
    """A pydantic model, such as the openai and anthropic SDKs' ``Usage``."""

    def model_dump(self) -> dict[str, Any]: ...


def from_litellm(
    payload: Mapping[str, Any],
    *,
    default_team: str = "unassigned",
    sent_bytes: Callable[[UsageEvent], int] | None = None,
) -> UsageEvent:
    """One event from LiteLLM's ``StandardLoggingPayload``.

    That is ``kwargs["standard_logging_object"]`` in a ``CustomLogger`` hook
    (success and failure alike). LiteLLM has already priced the call and
    normalized usage to OpenAI's shape, so ``prompt_tokens`` includes cache
    reads and writes for every provider (its Anthropic and Bedrock transforms
    add them) and maps straight to ``input_tokens``. Cache and reasoning counts
    come from ``metadata.usage_object`` (the normalized ``Usage`` dump).

    Mapping decisions:

    * ``model`` is the deployment model that served the call, not the router's
      ``model_group`` alias (``"smart"`` says nothing about price); a non-empty
      group goes to ``tags["model_group"]``. A ``provider/`` prefix equal to
      the provider is dropped: LiteLLM adds it for router deployments and
      Bedrock but not for direct calls, which would split one model's series.
    * ``ts`` is ``endTime`` (spend is incurred when the call completes), else
      ``startTime``; both are epoch seconds.
    * ``team``: key's team alias, else team id, else ``default_team``.
      ``api_key``: the key hash LiteLLM logs (the token its ``/key/block`` takes, and
      stable when an alias is renamed), else the key alias; never a raw key. With
      both, the alias goes to ``tags["key_alias"]`` for people to read.
    * ``customer``: ``end_user`` (set by the proxy), else the OpenAI ``user``
      request parameter (the SDK leaves ``end_user`` empty and keeps ``user``
      only in ``model_parameters``).
    * feature, customer, environment, workload and outcome can be set per call
      by request tags such as ``"feature:search"``, ``"env:prod"``,
      ``"workload:batch"``; ``metadata.requester_metadata`` keys of the same
      names override tags, and ``metadata.spend_logs_metadata`` overrides both.
      Other tags go to ``tags``: ``"k:v"`` as ``{"k": "v"}``, ``"beta"`` as
      ``{"beta": "true"}``. Team never comes from tags: it is the key's, set by
      an admin, and clients must not move spend to another team.
    * What a client sets (those fields, ``trace_id``, ``user``/``end_user``, request
      tags) never makes the event invalid, or the call's spend would not be counted:
      text is cut to the contract's ``MAX_STR_LEN``, a value that is not text (an int
      becomes text) is dropped, an unknown workload (``"workload:urgent"``) is dropped
      (the event is ``standard``) and kept in ``tags["workload_given"]``, and request
      tags beyond ``MAX_TAGS``, or beyond what keeps the record within
      ``MAX_EVENT_BYTES`` as sent, are dropped, the last first (``sent_bytes``: the size
      of the record the event becomes where it is sent, default its encoding; the SDK's
      redaction can lengthen it, a key's stand-in being longer than a short key). An id
      over ``MAX_STR_LEN`` (the call's ``id``, which a client can set as
      ``litellm_call_id``; ``trace_id``; a key alias standing in for the key) becomes
      ``fit_id``'s stand-in, the same for every retry: cut short, two calls could share
      one id and one would be dropped as a duplicate (two traces or keys would be one).
      Names an admin sets (team alias and id, key alias, ``model_group``) are cut to the
      limit like text: a long one never costs the call's spend.
    * ``cost_usd`` is ``response_cost``, except a 0.0 LiteLLM could not price: one with
      ``response_cost_failure_debug_info`` or ``zero_cost_diagnostic`` set, or one for a
      call with tokens that is not a cache hit (a LiteLLM router reports 0.0, with no
      hint, for a model missing from its price map; seen with litellm 1.108). That
      becomes "absent", so the engine prices the call from its own table or reports
      the model as unpriced, rather than counting a free call; the gateway's figure is
      kept in ``tags["gateway_cost_usd"]``. A cache hit stays at 0.
    * A failed call (``status == "failure"``) is still an event: usually zero
      tokens and cost, but a call can fail after it was billed. It carries
      ``tags["status"] = "failure"`` (and ``tags["error_class"]`` when known);
      successes carry no status tag. A LiteLLM cache hit carries
      ``tags["cache_hit"] = "true"``. These tags and ``model_group`` replace
      request tags of the same name.
    """
    if not isinstance(payload, Mapping):
        raise InvalidEvent("payload", f"must be a StandardLoggingPayload, got {show(payload)}")
    meta = _sub(payload, "metadata")
    usage = _sub(meta, "usage_object") or _sub(_sub(payload, "hidden_params"), "usage_object")
    prompt_details = _sub(usage, "prompt_tokens_details")
    model_info = _sub(_sub(payload, "model_map_information"), "model_map_value")
    provider = _first(payload.get("custom_llm_provider"), model_info.get("litellm_provider"))
    cache_read = _first(prompt_details.get("cached_tokens"), usage.get("cache_read_input_tokens"))
    cache_write = _first(
        prompt_details.get("cache_write_tokens"),
        prompt_details.get("cache_creation_tokens"),
        usage.get("cache_creation_input_tokens"),
    )
    input_tokens = _inclusive_input(payload.get("prompt_tokens"), cache_read, cache_write)
    output_tokens = payload.get("completion_tokens")
    # Tags the adapter sets itself: they win over request tags of the same name.
    own: dict[str, str] = {}
    cost = payload.get("response_cost")
    if _is_zero(cost) and (
        payload.get("response_cost_failure_debug_info")
        or payload.get("zero_cost_diagnostic")
        or ((_positive(input_tokens) or _positive(output_tokens)) and not payload.get("cache_hit"))
    ):
        own["gateway_cost_usd"] = f"{cost:g}"
        cost = None
    attrs: dict[str, Any] = {
        "customer": _first(
            _clip(payload.get("end_user")), _clip(_sub(payload, "model_parameters").get("user"))
        )
    }
    request_tags = _litellm_tags(payload.get("request_tags"), attrs)
    for source in (_sub(meta, "requester_metadata"), _sub(meta, "spend_logs_metadata")):
        for name in _LITELLM_OVERRIDES:
            value = _clip(source.get(name))
            if value is not None:
                attrs[name] = value
    workload = attrs.get("workload")
    if workload is not None and workload.lower() not in WORKLOADS:
        own["workload_given"] = attrs.pop("workload")
    model = _strip_provider(payload.get("model"), provider)
    group = _clip(payload.get("model_group"))
    if group and group != model and group != payload.get("model"):
        own["model_group"] = group
    if payload.get("cache_hit") is True:
        own["cache_hit"] = "true"
    if payload.get("status") == "failure":
        own["status"] = "failure"
        error_class = _sub(payload, "error_information").get("error_class")
        if error_class:
            own["error_class"] = error_class
    if meta.get("user_api_key_hash") and meta.get("user_api_key_alias"):
        own["key_alias"] = str(meta["user_api_key_alias"])[:MAX_STR_LEN]
    # Request tags in request order, as many as fit beside the adapter's own.
    client_tags = [key for key in request_tags if key not in own][: MAX_TAGS - len(own)]
    tags = {key: request_tags[key] for key in client_tags}
    tags.update(own)
    call_id = _first(payload.get("id"), payload.get("litellm_call_id"))
    event = _build(
        event_id=fit_id(call_id) if type(call_id) is str else call_id,
        ts=_first(payload.get("endTime"), payload.get("startTime")),
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        team=_first(
            _clip(meta.get("user_api_key_team_alias")),
            _clip(meta.get("user_api_key_team_id")),
            default_team,
        ),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_sub(usage, "completion_tokens_details").get("reasoning_tokens"),
        cost_usd=cost,
        api_key=_id(_first(meta.get("user_api_key_hash"), meta.get("user_api_key_alias"))),
        trace_id=_id(payload.get("trace_id")),
        tags=tags,
        **attrs,
    )
    # Only request tags can take a record past the size limit (every text is cut short).
    size = sent_bytes or (lambda e: len(encode_event(e)))
    while client_tags and size(event) > MAX_EVENT_BYTES:
        del event.tags[client_tags.pop()]
    return event


def from_openai_usage(
    usage: Mapping[str, Any] | SupportsModelDump,
    *,
    event_id: str,
    ts: float | datetime | str,
    model: str,
    team: str,
    provider: str = "openai",
    **attribution: Any,
) -> UsageEvent:
    """One event from an OpenAI ``usage`` object (a dict or the SDK's pydantic model).

    Both shapes count cached input inside the input total and reasoning inside
    the output total, as the contract does, so they map one to one. Chat
    Completions: ``prompt_tokens``, ``completion_tokens``,
    ``prompt_tokens_details.cached_tokens``,
    ``completion_tokens_details.reasoning_tokens``. The Responses API (told
    apart by ``input_tokens`` without ``prompt_tokens``): ``input_tokens``,
    ``output_tokens``, ``input_tokens_details.cached_tokens``,
    ``output_tokens_details.reasoning_tokens``. ``cache_write_tokens`` in the
    input details (newer openai SDKs model it in both shapes) is read too and,
    like ``cached_tokens``, taken as part of the input total; so is DeepSeek's
    ``prompt_cache_hit_tokens``.
    """
    extra = _attribution("from_openai_usage", attribution)
    u = _as_dict(usage)
    if "prompt_tokens" not in u and "input_tokens" in u:
        inp, out = u.get("input_tokens"), u.get("output_tokens")
        details = _sub(u, "input_tokens_details")
        out_details = _sub(u, "output_tokens_details")
    else:
        inp, out = u.get("prompt_tokens"), u.get("completion_tokens")
        details = _sub(u, "prompt_tokens_details")
        out_details = _sub(u, "completion_tokens_details")
    return _build(
        event_id=event_id,
        ts=_epoch(ts),
        provider=provider,
        model=model,
        input_tokens=inp,
        output_tokens=out,
        team=team,
        cache_read_tokens=_first(details.get("cached_tokens"), u.get("prompt_cache_hit_tokens")),
        cache_write_tokens=details.get("cache_write_tokens"),
        reasoning_tokens=out_details.get("reasoning_tokens"),
        **extra,
    )


def from_anthropic_usage(
    usage: Mapping[str, Any] | SupportsModelDump,
    *,
    event_id: str,
    ts: float | datetime | str,
    model: str,
    team: str,
    provider: str = "anthropic",
    **attribution: Any,
) -> UsageEvent:
    """One event from an Anthropic Messages ``usage`` object (dict or SDK model).

    Anthropic's ``input_tokens`` excludes ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens``; the contract's includes them, so
    ``input_tokens = input + cache_read + cache_creation``. Null counts are
    zero. With server-side compaction the response lists ``usage.iterations``
    and the top-level counts cover only the final iteration while every
    iteration is billed, so then the iterations are summed (as LiteLLM does).
    Thinking tokens are part of ``output_tokens``; when the API itemizes them
    (``output_tokens_details.thinking_tokens``) they become ``reasoning_tokens``.
    """
    extra = _attribution("from_anthropic_usage", attribution)
    u = _as_dict(usage)
    iterations = u.get("iterations")
    if (
        isinstance(iterations, Sequence)
        and not isinstance(iterations, str)
        and iterations
        and all(isinstance(it, Mapping) for it in iterations)
    ):
        names = ("input_tokens", "output_tokens", "cache_read_input_tokens")
        inp, out, cache_read = (_total([it.get(n) for it in iterations]) for n in names)
        cache_write = _total([it.get("cache_creation_input_tokens") for it in iterations])
    else:
        inp, out = u.get("input_tokens"), u.get("output_tokens")
        cache_read = u.get("cache_read_input_tokens")
        cache_write = u.get("cache_creation_input_tokens")
    if inp is not None and _ok(inp) and _ok(cache_read) and _ok(cache_write):
        inp += (cache_read or 0) + (cache_write or 0)
    return _build(
        event_id=event_id,
        ts=_epoch(ts),
        provider=provider,
        model=model,
        input_tokens=inp,
        output_tokens=out,
        team=team,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_sub(u, "output_tokens_details").get("thinking_tokens"),
        **extra,
    )


def from_otel_attributes(
    attributes: Mapping[str, Any],
    *,
    event_id: str,
    ts: float | datetime | str,
    team: str | None = None,
    **attribution: Any,
) -> UsageEvent:
    """One event from a span's OTel gen_ai attributes.

    Reads ``gen_ai.usage.input_tokens`` (includes cached input, per the
    semantic conventions), ``gen_ai.usage.output_tokens``,
    ``gen_ai.usage.cache_read.input_tokens``,
    ``gen_ai.usage.cache_creation.input_tokens``,
    ``gen_ai.usage.reasoning.output_tokens``; model from
    ``gen_ai.response.model``, else ``gen_ai.request.model``; provider from
    ``gen_ai.provider.name``, else the older ``gen_ai.system``. The older
    ``gen_ai.usage.prompt_tokens``/``completion_tokens`` names are fallbacks.
    An instrumentation that copies Anthropic's exclusive input count is caught
    when the cache counts exceed it, and the cache counts are then added.

    Attribution: the span attributes in ``OTEL_ATTRIBUTION``
    (``spendbrake.team``, ``spendbrake.feature``, ``spendbrake.customer``,
    ``spendbrake.environment``, ``spendbrake.workload``, ``spendbrake.api_key``,
    ``spendbrake.outcome``, ``spendbrake.cost_usd``) win over the keyword
    arguments, which act as the collector's defaults. The span's trace id is
    not an attribute; pass it as ``trace_id``.
    """
    extra = _attribution("from_otel_attributes", attribution)
    if not isinstance(attributes, Mapping):
        raise InvalidEvent("payload", f"attributes must be a mapping, got {show(attributes)}")
    a = attributes.get
    extra["team"] = team
    for attr, name in OTEL_ATTRIBUTION.items():
        if _first(a(attr)) is not None:
            extra[name] = a(attr)
    cache_read = _first(a("gen_ai.usage.cache_read.input_tokens"))
    cache_write = _first(a("gen_ai.usage.cache_creation.input_tokens"))
    return _build(
        event_id=event_id,
        ts=_epoch(ts),
        provider=_first(a("gen_ai.provider.name"), a("gen_ai.system")),
        model=_first(a("gen_ai.response.model"), a("gen_ai.request.model")),
        input_tokens=_inclusive_input(
            _first(a("gen_ai.usage.input_tokens"), a("gen_ai.usage.prompt_tokens")),
            cache_read,
            cache_write,
        ),
        output_tokens=_first(a("gen_ai.usage.output_tokens"), a("gen_ai.usage.completion_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_first(a("gen_ai.usage.reasoning.output_tokens")),
        **extra,
    )


def _build(**fields: Any) -> UsageEvent:
    """Drop unset fields and validate: the one way an adapter makes an event."""
    return validate_event({k: v for k, v in fields.items() if v is not None})


def _attribution(func: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check ``**attribution`` names as Python checks a signature, and copy ``tags``."""
    for name in kwargs:
        if name not in ATTRIBUTION_FIELDS:
            raise TypeError(f"{func}() got an unexpected keyword argument {name!r}")
    out = dict(kwargs)
    if isinstance(out.get("tags"), Mapping):
        out["tags"] = dict(out["tags"])  # the event must not share the caller's dict
    return out


def _litellm_tags(request_tags: Any, attrs: dict[str, Any]) -> dict[str, str]:
    """Split LiteLLM ``request_tags`` into field settings (into ``attrs``) and tags.

    The client sets them: anything but a list of strings is ignored, text is cut to
    ``MAX_STR_LEN`` (``from_litellm`` caps their number).
    """
    if not isinstance(request_tags, list):
        return {}
    tags: dict[str, str] = {}
    for raw in request_tags:
        if type(raw) is not str:
            continue
        key, sep, value = raw.partition(":")
        key, value = key.strip()[:MAX_STR_LEN], value.strip()[:MAX_STR_LEN]
        if not sep or not key:
            tags[raw.strip()[:MAX_STR_LEN]] = "true"
        elif key.lower() in _TAG_FIELDS and value:
            attrs[_TAG_FIELDS[key.lower()]] = value
        else:
            # The proxy adds "User-Agent: curl" and "User-Agent: curl/8.5.0";
            # the later, fuller one wins.
            tags[key] = value
    return tags


def _clip(value: Any) -> str | None:
    """A client-set attribution value as contract text: cut to ``MAX_STR_LEN``; an int
    as text; None for empty or any other value."""
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value:
        return None
    return value[:MAX_STR_LEN]


def _id(value: Any) -> str | None:
    """A client-set id as contract text: an int as text, one over ``MAX_STR_LEN`` as
    ``fit_id``'s stand-in (cut short, two ids sharing a start would be one); None for an
    empty or any other value."""
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not value:
        return None
    return fit_id(value)


def _is_zero(cost: Any) -> bool:
    return type(cost) in (int, float) and cost == 0


def _positive(count: Any) -> bool:
    return type(count) is int and count > 0


def _as_dict(usage: Any) -> dict[str, Any]:
    if isinstance(usage, Mapping):
        return dict(usage)
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dict(dumped)
    raise InvalidEvent("payload", f"usage must be a mapping or a pydantic model, got {show(usage)}")


def _sub(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested mapping, or empty when absent or null (LiteLLM often sends None)."""
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}


def _first(*values: Any) -> Any:
    """The first value that is set: not None, not ``""`` and not only whitespace (a team
    alias of spaces falls back to the team id, as an empty one does, rather than making an
    event the contract refuses)."""
    for value in values:
        if value is not None and not (type(value) is str and (not value or value.isspace())):
            return value
    return None


def _ok(count: Any) -> bool:
    """A usable token count: null (zero) or an int >= 0; anything else is left to validation."""
    return count is None or (type(count) is int and count >= 0)


def _total(counts: list[Any]) -> Any:
    """Sum of token counts, nulls as zero; or the first bad count, for validation to name."""
    bad = [count for count in counts if not _ok(count)]
    return bad[0] if bad else sum(count for count in counts if count is not None)


def _inclusive_input(inp: Any, cache_read: Any, cache_write: Any) -> Any:
    """``inp`` as is, unless the cache counts exceed it: then it was exclusive, so add them.

    Cache reads and writes are part of the input, so a sum above the input
    total can only mean a source that counts them apart, as Anthropic does.
    """
    if inp is None or not (_ok(inp) and _ok(cache_read) and _ok(cache_write)):
        return inp
    cached = (cache_read or 0) + (cache_write or 0)
    return inp + cached if cached > inp else inp


def _strip_provider(model: Any, provider: Any) -> Any:
    if type(model) is str and type(provider) is str and model.startswith(provider + "/"):
        return model[len(provider) + 1 :]
    return model


def _epoch(ts: Any) -> Any:
    """An aware ``datetime`` to epoch seconds; numbers and strings go on to validation."""
    if isinstance(ts, datetime):
        if ts.utcoffset() is None:
            raise InvalidEvent("ts", f"datetime must be timezone-aware, got naive {ts.isoformat()}")
        return ts.timestamp()
    return ts
