"""Adapters: realistic source payloads become v1 events with the contract's token
convention, and bad source values fail as InvalidEvent naming the v1 field."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from spendbrake.schemas import (
    InvalidEvent,
    UsageEvent,
    decode_event,
    encode_event,
    fit_id,
    from_anthropic_usage,
    from_litellm,
    from_openai_usage,
    from_otel_attributes,
)
from tests.litellm_helpers import registered

# LiteLLM reads this once, at import: without it, importing litellm tries to
# download its price map (and retries in a background thread).
_LITELLM_PRELOADED = "litellm" in sys.modules
if not _LITELLM_PRELOADED:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

TS = 1795428000.0  # 2026-11-23T10:00:00Z
IDS: dict[str, Any] = {"event_id": "evt-1", "ts": TS, "team": "search"}


def rejects(field: str, fragment: str, func: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        func(*args, **kwargs)
    assert info.value.field == field, str(info.value)
    assert fragment in info.value.reason, str(info.value)


# ------------------------------------------------------------------ LiteLLM, real library


async def test_litellm_real_standard_logging_payload_becomes_a_priced_event() -> None:
    litellm = pytest.importorskip("litellm")
    from litellm.integrations.custom_logger import CustomLogger

    if not _LITELLM_PRELOADED:
        from litellm.litellm_core_utils.get_model_cost_map import (
            get_model_cost_map_source_info,
        )

        assert get_model_cost_map_source_info()["is_env_forced"] is True

    captured: list[dict[str, Any]] = []

    class Capture(CustomLogger):
        async def async_log_success_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            captured.append(kwargs["standard_logging_object"])

    with registered(litellm, Capture()):
        response = await litellm.acompletion(
            model="gpt-4o",
            messages=[{"role": "user", "content": "say hi"}],
            mock_response="hi",
            user="cust-1",
            metadata={
                "tags": ["feature:search-summary", "workload:batch", "canary", "region:eu"],
                "spend_logs_metadata": {"environment": "prod"},
                "user_api_key_team_alias": "search-team",
                "user_api_key_alias": "search-prod-key",
            },
        )
        # The success callback may run after acompletion returns.
        for _ in range(100):
            if any(p["id"] == response.id for p in captured):
                break
            await asyncio.sleep(0.05)
    payload = next(p for p in captured if p["id"] == response.id)
    assert isinstance(payload["endTime"], float)  # epoch seconds, not a datetime

    event = from_litellm(payload)
    assert event.event_id == response.id
    assert (event.provider, event.model) == ("openai", "gpt-4o")
    assert event.input_tokens > 0 and event.output_tokens > 0
    assert event.cost_usd is not None and event.cost_usd > 0
    assert event.cost_usd == pytest.approx(payload["response_cost"])
    assert event.ts == payload["endTime"]
    assert event.team == "search-team" and event.api_key == "search-prod-key"
    assert event.customer == "cust-1"  # the SDK keeps `user` only in model_parameters
    assert (event.feature, event.workload, event.environment) == ("search-summary", "batch", "prod")
    assert event.tags == {"canary": "true", "region": "eu"}
    assert event.trace_id == payload["trace_id"]
    assert "status" not in event.tags


# ------------------------------------------------------------------ LiteLLM, proxy payloads


def proxy_payload(**changes: Any) -> dict[str, Any]:
    """Trimmed from a LiteLLM 1.106 proxy call routed to Anthropic with prompt caching."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-7f3a",
        "litellm_call_id": "2b0fa1fd-81ae-4644-8a3f-1f6f658d3cfc",
        "trace_id": "cd7d0370-53c6-4bef-9b4e-c68e458e3c4a",
        "call_type": "acompletion",
        "cache_hit": None,
        "status": "success",
        "custom_llm_provider": "anthropic",
        "startTime": TS - 2.5,
        "endTime": TS,
        "model": "anthropic/claude-sonnet-4-5",
        "model_group": "smart",
        "model_id": "b31b1ff8",
        "prompt_tokens": 2600,
        "completion_tokens": 50,
        "total_tokens": 2650,
        "response_cost": 0.003525,
        "cost_breakdown": {"total_cost": 0.003525, "cache_read_cost": 0.0006},
        "response_cost_failure_debug_info": None,
        "end_user": "acme-corp",
        "request_tags": ["feature:chat", "env:staging", "experiment:b", "User-Agent: curl"],
        "model_parameters": {"user": "someone-else"},
        "metadata": {
            "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
            "user_api_key_alias": None,
            "user_api_key_team_id": "team-123",
            "user_api_key_team_alias": "growth",
            "spend_logs_metadata": {"workload": "critical"},
            "requester_metadata": {"feature": "chat-v2", "environment": ""},
            "usage_object": {
                "prompt_tokens": 2600,
                "completion_tokens": 50,
                "total_tokens": 2650,
                "completion_tokens_details": {"reasoning_tokens": 10, "text_tokens": None},
                "prompt_tokens_details": {
                    "cached_tokens": 2000,
                    "cache_write_tokens": 500,
                    "cache_creation_tokens": 500,
                    "text_tokens": 100,
                },
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 500,
            },
        },
        "hidden_params": {"usage_object": None, "response_cost": 0.003525},
        "error_information": None,
    }
    payload.update(changes)
    return payload


def test_litellm_proxy_payload_maps_every_field() -> None:
    payload = proxy_payload()
    before = copy.deepcopy(payload)
    event = from_litellm(payload)
    assert event == UsageEvent(
        event_id="chatcmpl-7f3a",
        ts=TS,
        provider="anthropic",
        model="claude-sonnet-4-5",  # the deployment, without its provider prefix
        input_tokens=2600,  # LiteLLM's prompt_tokens already include both cache counts
        output_tokens=50,
        team="growth",
        cache_read_tokens=2000,
        cache_write_tokens=500,
        reasoning_tokens=10,
        cost_usd=0.003525,
        feature="chat-v2",  # requester_metadata beats the request tag
        api_key=before["metadata"]["user_api_key_hash"],
        customer="acme-corp",  # end_user beats the `user` parameter
        environment="staging",  # the empty requester_metadata value does not override
        workload="critical",  # spend_logs_metadata
        trace_id="cd7d0370-53c6-4bef-9b4e-c68e458e3c4a",
        tags={"experiment": "b", "User-Agent": "curl", "model_group": "smart"},
    )
    assert payload == before


def test_litellm_team_and_key_fallbacks() -> None:
    meta = proxy_payload()["metadata"]
    by_id = from_litellm(proxy_payload(metadata={**meta, "user_api_key_team_alias": None}))
    assert by_id.team == "team-123"
    no_team = {**meta, "user_api_key_team_alias": "", "user_api_key_team_id": None}
    assert from_litellm(proxy_payload(metadata=no_team)).team == "unassigned"
    # An alias of spaces is no alias (the contract refuses a blank team: the call's spend
    # would be dropped by the callback).
    blank = from_litellm(proxy_payload(metadata={**meta, "user_api_key_team_alias": " \t"}))
    assert blank.team == "team-123"
    no_team = {**no_team, "user_api_key_team_alias": "  "}
    assert from_litellm(proxy_payload(metadata=no_team)).team == "unassigned"
    assert from_litellm(proxy_payload(metadata=no_team), default_team="platform").team == "platform"
    aliased = from_litellm(proxy_payload(metadata={**meta, "user_api_key_alias": "growth-key"}))
    # The hash is what LiteLLM's /key/block takes; the alias stays readable in tags.
    assert aliased.api_key == meta["user_api_key_hash"]
    assert aliased.tags["key_alias"] == "growth-key"
    no_hash = {**meta, "user_api_key_hash": None, "user_api_key_alias": "growth-key"}
    assert from_litellm(proxy_payload(metadata=no_hash)).api_key == "growth-key"
    assert from_litellm(proxy_payload(metadata=None)).api_key is None


def test_litellm_model_kept_when_prefix_is_another_provider() -> None:
    event = from_litellm(
        proxy_payload(custom_llm_provider="openrouter", model="anthropic/claude-3")
    )
    assert (event.provider, event.model) == ("openrouter", "anthropic/claude-3")
    direct = from_litellm(proxy_payload(model="claude-sonnet-4-5", model_group=""))
    assert direct.model == "claude-sonnet-4-5" and "model_group" not in direct.tags


def test_litellm_unpriced_model_leaves_cost_to_the_engine() -> None:
    debug = {"error_str": "This model isn't mapped yet.", "traceback_str": "..."}
    event = from_litellm(proxy_payload(response_cost=0.0, response_cost_failure_debug_info=debug))
    assert event.cost_usd is None


def test_litellm_zero_for_a_call_with_tokens_is_left_to_the_engine() -> None:
    """The router's 0.0 with no debug info (litellm 1.108, a model missing from its map)
    is LiteLLM not pricing the call, not a free call: the engine prices it from its own
    table or reports the model unpriced (before: recorded at $0 when our table did not
    price the model, and priced with the shipped table, not the engine's, when it did)."""
    for model, provider in (("claude-sonnet-4-5", "anthropic"), ("acme-llm", "hosted_vllm")):
        event = from_litellm(
            proxy_payload(
                response_cost=0.0, model=f"{provider}/{model}", custom_llm_provider=provider
            )
        )
        assert event.cost_usd is None and event.tags["gateway_cost_usd"] == "0", model
    # A cache hit costs nothing; so does a call without tokens; a priced call keeps its price.
    hit = from_litellm(proxy_payload(response_cost=0.0, cache_hit=True))
    assert hit.cost_usd == 0.0 and "gateway_cost_usd" not in hit.tags
    empty = proxy_payload(response_cost=0, prompt_tokens=0, completion_tokens=0)
    empty["metadata"] = {**empty["metadata"], "usage_object": {}}
    assert from_litellm(empty).cost_usd == 0.0
    assert from_litellm(proxy_payload(response_cost=0.0123)).cost_usd == 0.0123
    # The adapter's own tag wins a place over the request's.
    full = from_litellm(proxy_payload(response_cost=0.0, request_tags=[f"t{i}" for i in range(80)]))
    assert full.tags["gateway_cost_usd"] == "0" and full.cost_usd is None


def test_litellm_failure_is_an_event_tagged_failure() -> None:
    payload = proxy_payload(
        id="55751ec6-74d9-4126-a532-cf144446815f",
        status="failure",
        prompt_tokens=0,
        completion_tokens=0,
        response_cost=0.0,
        cost_breakdown=None,
        request_tags=["status:ok"],
        error_information={"error_class": "RateLimitError", "error_code": "429"},
    )
    payload["metadata"] = {**payload["metadata"], "usage_object": {}}
    event = from_litellm(payload)
    assert event.input_tokens == 0 and event.cost_usd == 0.0
    assert event.tags["status"] == "failure" and event.tags["error_class"] == "RateLimitError"


def test_litellm_cache_hit_and_exclusive_counts() -> None:
    assert from_litellm(proxy_payload(cache_hit=True)).tags["cache_hit"] == "true"
    # A payload that kept Anthropic's exclusive count (100 uncached) is made inclusive.
    event = from_litellm(proxy_payload(prompt_tokens=100))
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        2600,
        2000,
        500,
    )


def test_litellm_client_attribution_never_makes_the_event_invalid() -> None:
    """What a client sets in its request is cut short or dropped: the call's spend is
    still counted (before, each of these refused the whole event)."""
    from spendbrake.schemas._event import MAX_EVENT_BYTES, MAX_STR_LEN, MAX_TAGS

    meta = proxy_payload()["metadata"]
    no_overrides = {**meta, "spend_logs_metadata": None, "requester_metadata": None}
    urgent = from_litellm(proxy_payload(request_tags=["workload:urgent"], metadata=no_overrides))
    assert urgent.workload == "standard" and urgent.tags["workload_given"] == "urgent"
    background = from_litellm(
        proxy_payload(metadata={**meta, "spend_logs_metadata": {"workload": "background"}})
    )
    assert background.workload == "standard"
    assert background.tags["workload_given"] == "background"
    assert from_litellm(proxy_payload(request_tags=["workload:Batch"])).workload == "critical"
    cased = from_litellm(proxy_payload(request_tags=["workload:Batch"], metadata=no_overrides))
    assert cased.workload == "batch" and "workload_given" not in cased.tags

    long = "x" * (MAX_STR_LEN + 300)
    event = from_litellm(
        proxy_payload(
            request_tags=[f"feature:{long}", f"{long}:{long}", f"bare-{long}"],
            end_user=long,
            trace_id=long,
            metadata={**no_overrides, "spend_logs_metadata": {"outcome": long, "workload": long}},
        )
    )
    assert event.feature == event.customer == event.outcome == long[:MAX_STR_LEN]
    # An id is hashed whole, not cut: two long trace ids sharing a start stay two traces.
    assert event.trace_id == fit_id(long) != fit_id(long + "y")
    assert event.tags[long[:MAX_STR_LEN]] == long[:MAX_STR_LEN]
    assert event.tags[f"bare-{long}"[:MAX_STR_LEN]] == "true"
    assert event.tags["workload_given"] == long[:MAX_STR_LEN] and event.workload == "standard"

    many = [f"t{i}:v" for i in range(MAX_TAGS + 20)]
    event = from_litellm(proxy_payload(request_tags=many))
    assert len(event.tags) == MAX_TAGS and event.tags["model_group"] == "smart"
    assert [k for k in event.tags if k != "model_group"] == [f"t{i}" for i in range(MAX_TAGS - 1)]

    # Tags of the longest text each would take the record past the size limit.
    value = "é" * MAX_STR_LEN  # two bytes a character
    wide = [f"{i:03}{'k' * (MAX_STR_LEN - 3)}:{value}" for i in range(MAX_TAGS)]
    event = from_litellm(proxy_payload(request_tags=wide))
    assert len(encode_event(event)) <= MAX_EVENT_BYTES
    assert 0 < len(event.tags) < MAX_TAGS and event.tags["model_group"] == "smart"
    assert decode_event(encode_event(event)) == event

    # Not text: an int becomes text, anything else is dropped.
    odd = from_litellm(
        proxy_payload(
            request_tags=["ok", 7, None, "feature:f"],
            metadata={**no_overrides, "spend_logs_metadata": {"customer": 42, "feature": {}}},
        )
    )
    assert (odd.customer, odd.feature, odd.tags["ok"]) == ("42", "f", "true")
    assert from_litellm(proxy_payload(request_tags="not-a-list")).tags == {"model_group": "smart"}


def test_litellm_long_admin_names_never_make_the_event_invalid() -> None:
    """A team alias, key alias or model group past the contract's limit (set by an admin,
    not checked by LiteLLM) made the event invalid: the callback dropped the call's spend."""
    from spendbrake.schemas._event import MAX_STR_LEN

    long = "n" * (MAX_STR_LEN + 40)
    meta = proxy_payload()["metadata"]
    named = {**meta, "user_api_key_team_alias": long, "user_api_key_alias": long}
    event = from_litellm(proxy_payload(metadata=named, model_group=long))
    assert event.team == event.tags["key_alias"] == event.tags["model_group"] == long[:MAX_STR_LEN]
    assert event.api_key == meta["user_api_key_hash"]
    by_id = {**meta, "user_api_key_team_alias": None, "user_api_key_team_id": long}
    assert from_litellm(proxy_payload(metadata=by_id)).team == long[:MAX_STR_LEN]
    # A key known by its alias alone: the alias is the key, hashed whole when too long.
    alias_only = {**meta, "user_api_key_hash": None, "user_api_key_alias": long}
    keyed = [
        from_litellm(proxy_payload(metadata={**alias_only, "user_api_key_alias": a}))
        for a in (long, long + "2")
    ]
    assert keyed[0].api_key == fit_id(long) != keyed[1].api_key == fit_id(long + "2")


def test_litellm_bad_values_name_the_field() -> None:
    rejects("input_tokens", ">= 0", from_litellm, proxy_payload(prompt_tokens=-5))
    rejects("model", "required", from_litellm, proxy_payload(model=None))
    rejects("provider", "required", from_litellm, proxy_payload(custom_llm_provider=None))
    rejects("ts", "required", from_litellm, proxy_payload(endTime=None, startTime=None))
    meta = proxy_payload()["metadata"]
    rejects("cost_usd", "number", from_litellm, proxy_payload(response_cost="0.1"))
    rejects("cost_usd", ">= 0", from_litellm, proxy_payload(response_cost=-0.5))
    rejects("output_tokens", ">= 0", from_litellm, proxy_payload(completion_tokens=-1))
    rejects("payload", "StandardLoggingPayload", from_litellm, ["not", "a", "mapping"])
    bad_usage = {**meta["usage_object"], "completion_tokens_details": {"reasoning_tokens": 99}}
    rejects(
        "reasoning_tokens",
        "<= output_tokens",
        from_litellm,
        proxy_payload(metadata={**meta, "usage_object": bad_usage}),
    )


# ------------------------------------------------------------------ OpenAI


def test_openai_chat_usage_dict_and_sdk_model() -> None:
    usage = {
        "prompt_tokens": 1900,
        "completion_tokens": 420,
        "total_tokens": 2320,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    event = from_openai_usage(usage, model="o4-mini", feature="triage", workload="batch", **IDS)
    assert (event.input_tokens, event.cache_read_tokens) == (1900, 1536)
    assert (event.output_tokens, event.reasoning_tokens) == (420, 256)
    assert (event.provider, event.feature, event.workload) == ("openai", "triage", "batch")

    openai_types = pytest.importorskip("openai.types")
    sdk_usage = openai_types.CompletionUsage.model_validate(usage)
    assert (
        from_openai_usage(sdk_usage, model="o4-mini", feature="triage", workload="batch", **IDS)
        == event
    )


def test_openai_responses_usage_shape() -> None:
    usage = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 512},
        "output_tokens": 900,
        "output_tokens_details": {"reasoning_tokens": 700},
        "total_tokens": 5900,
    }
    event = from_openai_usage(usage, model="gpt-5", provider="azure", **IDS)
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        5000,
        4096,
        512,
    )
    assert (event.output_tokens, event.reasoning_tokens, event.provider) == (900, 700, "azure")

    responses = pytest.importorskip("openai.types.responses")
    sdk_usage = responses.ResponseUsage.model_validate(usage)
    assert from_openai_usage(sdk_usage, model="gpt-5", provider="azure", **IDS) == event


def test_openai_bad_values_name_the_field() -> None:
    rejects(
        "input_tokens",
        ">= 0",
        from_openai_usage,
        {"prompt_tokens": -1, "completion_tokens": 3},
        model="m",
        **IDS,
    )
    rejects("output_tokens", "required", from_openai_usage, {"prompt_tokens": 1}, model="m", **IDS)
    rejects(
        "model",
        "required",
        from_openai_usage,
        {"prompt_tokens": 1, "completion_tokens": 1},
        model=None,
        **IDS,
    )
    over = {
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 11},
    }
    rejects("cache_read_tokens", "<= input_tokens", from_openai_usage, over, model="m", **IDS)
    rejects("payload", "pydantic", from_openai_usage, 42, model="m", **IDS)


# ------------------------------------------------------------------ Anthropic


def test_anthropic_cache_counts_are_added_to_input() -> None:
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "output_tokens": 300,
        "service_tier": "standard",
    }
    event = from_anthropic_usage(usage, model="claude-sonnet-4-5", customer="acme", **IDS)
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        2600,
        2000,
        500,
    )
    assert (event.output_tokens, event.provider, event.customer) == (300, "anthropic", "acme")


def test_anthropic_null_cache_counts_are_zero() -> None:
    usage = {
        "input_tokens": 12,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "output_tokens": 5,
    }
    event = from_anthropic_usage(usage, model="claude-haiku-4-5", provider="bedrock", **IDS)
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (12, 0, 0)
    assert event.provider == "bedrock"


def test_anthropic_compaction_iterations_are_summed() -> None:
    usage = {
        "input_tokens": 23000,
        "output_tokens": 1000,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "iterations": [
            {"type": "compaction", "input_tokens": 180000, "output_tokens": 3500},
            {
                "type": "message",
                "input_tokens": 23000,
                "output_tokens": 1000,
                "cache_read_input_tokens": 1000,
            },
        ],
    }
    event = from_anthropic_usage(usage, model="claude-opus-4-5", **IDS)
    assert (event.input_tokens, event.output_tokens, event.cache_read_tokens) == (
        204000,
        4500,
        1000,
    )


def test_anthropic_thinking_tokens_become_reasoning() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 900,
        "output_tokens_details": {"thinking_tokens": 600},
    }
    assert from_anthropic_usage(usage, model="claude-opus-4-5", **IDS).reasoning_tokens == 600


def test_anthropic_bad_values_name_the_field() -> None:
    good = {"input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 1}
    rejects(
        "input_tokens",
        ">= 0",
        from_anthropic_usage,
        {**good, "input_tokens": -200},
        model="m",
        **IDS,
    )
    rejects(
        "input_tokens", "required", from_anthropic_usage, {"output_tokens": 1}, model="m", **IDS
    )
    rejects(
        "cache_read_tokens",
        "integer",
        from_anthropic_usage,
        {**good, "cache_read_input_tokens": "2k"},
        model="m",
        **IDS,
    )
    rejects(
        "cache_write_tokens",
        ">= 0",
        from_anthropic_usage,
        {**good, "cache_creation_input_tokens": -1},
        model="m",
        **IDS,
    )
    rejects("model", "empty", from_anthropic_usage, good, model="", **IDS)


# ------------------------------------------------------------------ OTel


def otel_span(**changes: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 2600,
        "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 20,
        "spendbrake.team": "support",
        "spendbrake.feature": "ticket-reply",
        "spendbrake.workload": "critical",
    }
    attributes.update(changes)
    return {k: v for k, v in attributes.items() if v is not None}


def test_otel_attributes_map_usage_and_attribution() -> None:
    event = from_otel_attributes(
        otel_span(),
        event_id="span-1",
        ts=TS,
        team="fallback",
        environment="prod",
        trace_id="4bf92f35",
    )
    assert (event.provider, event.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert (event.input_tokens, event.cache_read_tokens, event.cache_write_tokens) == (
        2600,
        2000,
        500,
    )
    assert (event.output_tokens, event.reasoning_tokens) == (80, 20)
    assert (event.team, event.feature, event.workload) == ("support", "ticket-reply", "critical")
    assert (event.environment, event.trace_id) == ("prod", "4bf92f35")


def test_otel_fallbacks() -> None:
    span = otel_span(
        **{
            "gen_ai.provider.name": None,
            "gen_ai.system": "openai",
            "gen_ai.response.model": None,
            "gen_ai.request.model": "gpt-4o",
            "spendbrake.team": None,
            "gen_ai.usage.cache_creation.input_tokens": None,
            "gen_ai.usage.reasoning.output_tokens": None,
        }
    )
    event = from_otel_attributes(span, event_id="span-2", ts=TS, team="search")
    assert (event.provider, event.model, event.team) == ("openai", "gpt-4o", "search")
    # An exclusive input count (Anthropic's habit) below the cache reads is made inclusive.
    exclusive = otel_span(**{"gen_ai.usage.input_tokens": 100})
    assert from_otel_attributes(exclusive, event_id="span-3", ts=TS).input_tokens == 2600


def test_otel_bad_values_name_the_field() -> None:
    no_model = otel_span(**{"gen_ai.request.model": None, "gen_ai.response.model": None})
    rejects("model", "required", from_otel_attributes, no_model, event_id="s", ts=TS)
    rejects(
        "team",
        "required",
        from_otel_attributes,
        otel_span(**{"spendbrake.team": None}),
        event_id="s",
        ts=TS,
    )
    negative = otel_span(**{"gen_ai.usage.output_tokens": -1})
    rejects("output_tokens", ">= 0", from_otel_attributes, negative, event_id="s", ts=TS)
    rejects("payload", "mapping", from_otel_attributes, [("a", 1)], event_id="s", ts=TS)


# ------------------------------------------------------------------ shared arguments


def test_timestamps_accept_aware_datetimes_and_reject_naive_ones() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1}
    aware = datetime(2026, 11, 23, 11, tzinfo=timezone(timedelta(hours=1)))
    event = from_openai_usage(usage, event_id="e", ts=aware, model="m", team="t")
    assert event.ts == TS
    as_text = from_openai_usage(usage, event_id="e", ts="2026-11-23T10:00:00Z", model="m", team="t")
    assert as_text.ts == TS
    naive = datetime(2026, 11, 23, 10)
    rejects(
        "ts",
        "timezone-aware",
        from_openai_usage,
        usage,
        event_id="e",
        ts=naive,
        model="m",
        team="t",
    )
    rejects(
        "ts",
        "epoch milliseconds",
        from_openai_usage,
        usage,
        event_id="e",
        ts=TS * 1000,
        model="m",
        team="t",
    )
    assert datetime.fromtimestamp(event.ts, UTC).hour == 10


def test_unknown_attribution_is_a_type_error_and_tags_are_copied() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'teem'"):
        from_openai_usage(usage, model="m", teem="x", **IDS)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="from_otel_attributes"):
        from_otel_attributes(otel_span(), event_id="s", ts=TS, region="eu")
    tags = {"exp": "a"}
    event = from_openai_usage(usage, model="m", tags=tags, cost_usd=0.25, **IDS)
    tags["exp"] = "b"
    assert event.tags == {"exp": "a"} and event.cost_usd == 0.25
    rejects("tags", "object", from_openai_usage, usage, model="m", tags=["x"], **IDS)
