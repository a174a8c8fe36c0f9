"""Pricing: exact dollars per call, the row in effect at event time, operator
overrides, name normalization, and one-line errors that name the bad entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from spendbrake.schemas import ConfigError, ModelPrice, PriceEntryModel, PriceTable, UsageEvent

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()
TIGHT = 1e-12


def day(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def event(provider: str, model: str, ts: float = NOW, **tokens: int) -> UsageEvent:
    return UsageEvent(
        event_id="e1",
        ts=ts,
        provider=provider,
        model=model,
        input_tokens=tokens.pop("input_tokens", 0),
        output_tokens=tokens.pop("output_tokens", 0),
        team="search",
        **tokens,
    )


def entry(model: str = "m", provider: str = "p", **row: Any) -> dict[str, Any]:
    prices = {"effective_from": "2025-01-01", "input": 1.0, "output": 2.0}
    prices.update(row)
    return {"model": model, "provider": provider, "prices": [prices]}


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


# -- exact costs -------------------------------------------------------------


def test_openai_call_with_cached_input_and_reasoning(table: PriceTable) -> None:
    # gpt-5: $1.25 in, $0.125 cached, $10 out; reasoning bills as output.
    e = event(
        "openai",
        "gpt-5",
        input_tokens=10_000,
        cache_read_tokens=6_000,
        output_tokens=2_000,
        reasoning_tokens=1_500,
    )
    expected = (4_000 * 1.25 + 6_000 * 0.125 + 500 * 10 + 1_500 * 10) / 1e6
    assert table.price(e) == pytest.approx(expected, rel=TIGHT)
    assert table.price(e) == pytest.approx(0.02575, rel=TIGHT)


def test_anthropic_call_with_cache_read_and_write(table: PriceTable) -> None:
    # claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write (5 min), $15 out.
    e = event(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input_tokens=50_000,
        cache_read_tokens=30_000,
        cache_write_tokens=15_000,
        output_tokens=1_000,
    )
    expected = (5_000 * 3 + 30_000 * 0.30 + 15_000 * 3.75 + 1_000 * 15) / 1e6
    assert table.price(e) == pytest.approx(expected, rel=TIGHT)
    assert table.price(e) == pytest.approx(0.09525, rel=TIGHT)


def test_gemini_call_with_thinking(table: PriceTable) -> None:
    # gemini-2.5-flash: $0.30 in, $0.03 cached, $2.50 out (thinking included).
    e = event(
        "google",
        "gemini-2.5-flash",
        input_tokens=8_000,
        cache_read_tokens=2_000,
        output_tokens=3_000,
        reasoning_tokens=2_500,
    )
    assert table.price(e) == pytest.approx(0.00936, rel=TIGHT)


def test_reasoning_price_when_set_apart_from_output() -> None:
    t = PriceTable.from_entries([entry("thinker", input=1.0, output=4.0, reasoning=8.0)])
    e = event("p", "thinker", input_tokens=1_000, output_tokens=3_000, reasoning_tokens=2_000)
    assert t.price(e) == pytest.approx((1_000 * 1 + 1_000 * 4 + 2_000 * 8) / 1e6, rel=TIGHT)


def test_cache_prices_default_to_input() -> None:
    t = PriceTable.from_entries([entry("plain", input=2.0, output=3.0)])
    p = t.lookup("p", "plain", NOW)
    assert p is not None
    assert (p.cache_read, p.cache_write, p.reasoning) == (2.0, 2.0, None)


def test_cost_never_goes_negative_when_counts_break_the_contract() -> None:
    p = ModelPrice(0.0, input=3.0, cache_read=0.3, cache_write=3.75, output=15.0)
    # Anthropic's raw API reports input without cache tokens; a producer passing
    # it through unchanged must not produce a negative cost.
    assert p.cost(input_tokens=10, output_tokens=5, cache_read_tokens=1_000) == pytest.approx(
        (1_000 * 0.3 + 5 * 15) / 1e6, rel=TIGHT
    )
    assert p.cost(0, 10, reasoning_tokens=20) == pytest.approx(20 * 15 / 1e6, rel=TIGHT)


# -- date selection ------------------------------------------------------------


def test_row_in_effect_at_event_time() -> None:
    t = PriceTable.from_entries(
        [
            {
                "model": "m",
                "provider": "p",
                "prices": [
                    {"effective_from": "2025-01-01", "input": 10.0, "output": 40.0},
                    {"effective_from": "2025-06-10", "input": 2.0, "output": 8.0},
                ],
            }
        ]
    )
    assert t.lookup("p", "m", day("2025-03-01")).input == 10.0
    assert t.lookup("p", "m", day("2025-06-10") - 1).input == 10.0
    assert t.lookup("p", "m", day("2025-06-10")).input == 2.0
    assert t.lookup("p", "m", NOW).input == 2.0
    # Before the first row: the first row applies.
    assert t.lookup("p", "m", day("2024-01-01")).input == 10.0
    old = event("p", "m", ts=day("2025-02-01"), input_tokens=1_000_000)
    new = event("p", "m", ts=day("2025-07-01"), input_tokens=1_000_000)
    assert (t.price(old), t.price(new)) == (pytest.approx(10.0), pytest.approx(2.0))


def test_shipped_price_change_o3(table: PriceTable) -> None:
    before = table.lookup("openai", "o3", day("2025-05-01"))
    after = table.lookup("openai", "o3-2025-04-16", day("2025-07-01"))
    assert (before.input, before.output) == (10.0, 40.0)
    assert (after.input, after.output) == (2.0, 8.0)


def test_yaml_dates_may_be_quoted_or_not() -> None:
    entries = yaml.safe_load(
        """
        - model: m
          provider: p
          prices:
            - {effective_from: 2025-01-01, input: 1, output: 2}
            - {effective_from: "2025-02-01", input: 3, output: 4}
        """
    )
    t = PriceTable.from_entries(entries)
    assert t.lookup("p", "m", day("2025-01-15")).input == 1.0
    assert t.lookup("p", "m", day("2025-02-15")).input == 3.0


# -- overrides -------------------------------------------------------------------


def test_override_adds_a_model_and_replaces_one(table: PriceTable) -> None:
    ours = table.with_overrides(
        [
            entry("llama-3.3-70b-internal", "vllm", input=0.2, output=0.2),
            {
                "model": "gpt-4o",
                "provider": "openai",
                "prices": [{"effective_from": "2024-01-01", "input": 2.0, "output": 8.0}],
            },
        ]
    )
    assert len(ours) == len(table) + 1
    assert ("vllm", "llama-3.3-70b-internal") in ours.models()
    assert ours.lookup("vllm", "llama-3.3-70b-internal", NOW).input == 0.2
    # Replaced rows: one row now, and the shipped aliases still resolve to it.
    assert ours.lookup("openai", "gpt-4o", day("2024-06-01")).input == 2.0
    assert ours.lookup("openai", "gpt-4o-2024-08-06", NOW).output == 8.0
    # The shipped table is unchanged.
    assert table.lookup("openai", "gpt-4o", NOW).input == 2.5
    assert table.lookup("vllm", "llama-3.3-70b-internal", NOW) is None


def test_override_for_another_provider_makes_provider_decide(table: PriceTable) -> None:
    ours = table.with_overrides([entry("gpt-4o", "azure", input=2.75, output=11.0)])
    assert ours.lookup("azure", "gpt-4o", NOW).input == 2.75
    assert ours.lookup("az.ai.openai", "gpt-4o", NOW).input == 2.75
    assert ours.lookup("openai", "gpt-4o", NOW).input == 2.5
    assert ours.lookup("litellm", "azure/gpt-4o", NOW).input == 2.75
    # Two sellers and no hint which: unpriced rather than a guess.
    assert ours.lookup("openrouter", "gpt-4o", NOW) is None


def test_override_accepts_validated_entry_models(table: PriceTable) -> None:
    class PricingSection(BaseModel):
        models: list[PriceEntryModel] = []

    section = PricingSection.model_validate({"models": [entry("My-Model", "Vllm", input=0.5)]})
    assert section.models[0].model == "my-model"
    ours = table.with_overrides(section.models)
    assert ours.lookup("vllm", "my-model", NOW).input == 0.5


def test_entry_model_is_frozen_and_forbids_extra_keys() -> None:
    spec = PriceEntryModel.model_validate(entry())
    with pytest.raises(ValidationError):
        spec.model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PriceEntryModel.model_validate({**entry(), "note": "x"})


# -- normalization ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "canonical"),
    [
        ("openai", "gpt-4o", "gpt-4o"),
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("OpenAI", " GPT-4o ", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("azure", "azure/gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("anthropic", "anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("bedrock", "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
        ("aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
        ("vertex_ai", "vertex_ai/claude-opus-4-5@20251101", "claude-opus-4-5"),
        ("vertex_ai", "claude-opus-4-6@default", "claude-opus-4-6"),
        ("openrouter", "anthropic/claude-haiku-4.5", "claude-haiku-4-5"),
        ("gcp.gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("vertex_ai", "vertex_ai/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("anything", "text-embedding-3-small", "text-embedding-3-small"),
    ],
)
def test_names_resolve_to_their_model(
    table: PriceTable, provider: str, model: str, canonical: str
) -> None:
    found = table.lookup(provider, model, NOW)
    assert found is not None, model
    # Compare against the canonical row by value.
    expected_provider = next(p for p, m in table.models() if m == canonical)
    assert found == table.lookup(expected_provider, canonical, NOW)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-7-turbo"),
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123"),
        ("vllm", "llama-3.3-70b"),
        ("openai", "gpt-4o-extra"),
    ],
)
def test_unknown_model_is_unpriced(table: PriceTable, provider: str, model: str) -> None:
    assert table.lookup(provider, model, NOW) is None
    assert table.price(event(provider, model, input_tokens=100, output_tokens=10)) is None


def test_memo_stays_bounded_under_many_unknown_names() -> None:
    t = PriceTable.from_entries([entry()])
    for i in range(70_000):
        assert t.price(event("p", f"unknown-{i}")) is None
    assert len(t._memo) <= 65_536
    assert t.price(event("p", "m", input_tokens=1_000_000)) == pytest.approx(1.0)


# -- bad entries -------------------------------------------------------------------


def _with_bad_fourth(bad: Any) -> list[Any]:
    return [entry("a"), entry("b"), entry("c"), bad]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            entry(input=-1),
            "pricing.models[3].prices[0].input: must be >= 0, got -1",
        ),
        (
            entry(output="cheap"),
            'pricing.models[3].prices[0].output: must be a valid number, got "cheap"',
        ),
        (
            entry(cache_read=True),
            "pricing.models[3].prices[0].cache_read: must be a valid number, got true",
        ),
        (
            entry(input=1.0, cache_read=2.0),
            "pricing.models[3].prices[0].cache_read: must be <= input (1), got 2",
        ),
        (
            entry(input=2.5e-6),
            "pricing.models[3].prices[0].input: 2.5e-06 looks like a per-token price; "
            "prices are $ per 1M tokens (multiply by 1e6)",
        ),
        (
            entry(effective_from="2025-13-01"),
            "pricing.models[3].prices[0].effective_from: must be a date YYYY-MM-DD (UTC), "
            'got "2025-13-01"',
        ),
        (
            entry(inptu=1.0),
            "pricing.models[3].prices[0].inptu: unknown key 'inptu' (did you mean 'input'?)",
        ),
        (
            {"model": "m", "provider": "p"},
            "pricing.models[3].prices: is required",
        ),
        (
            {"model": "m", "provider": "p", "prices": []},
            "pricing.models[3].prices: must list at least one dated row",
        ),
        (
            {**entry(), "aliases": "m-2025"},
            'pricing.models[3].aliases: must be a list, got "m-2025"',
        ),
        (
            entry("openai/gpt-x"),
            "pricing.models[3].model: must not contain '/', got \"openai/gpt-x\"; "
            "give the provider under provider",
        ),
        (
            "gpt-4o",
            'pricing.models[3]: must be a mapping, got "gpt-4o"',
        ),
        (
            entry("B"),
            "pricing.models[3].model: 'b' for provider 'p' is already listed at "
            "pricing.models[1].model; a price change is a new dated row under prices",
        ),
        (
            {**entry("d"), "aliases": ["a"]},
            "pricing.models[3].aliases[0]: 'a' for provider 'p' is already listed at "
            "pricing.models[0].model; a price change is a new dated row under prices",
        ),
    ],
)
def test_bad_entry_names_its_path(bad: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable.from_entries(_with_bad_fourth(bad))
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert info.value.path == message.split(": ", 1)[0]


def test_rows_out_of_date_order_are_rejected() -> None:
    bad = {
        "model": "m",
        "provider": "p",
        "prices": [
            {"effective_from": "2025-06-01", "input": 1.0, "output": 1.0},
            {"effective_from": "2025-01-01", "input": 2.0, "output": 2.0},
        ],
    }
    with pytest.raises(ConfigError) as info:
        PriceTable.from_entries([bad])
    assert str(info.value) == (
        "pricing.models[0].prices: rows must be in date order: prices[1] (2025-01-01) "
        "is not after prices[0] (2025-06-01)"
    )


def test_override_errors_use_the_given_path(table: PriceTable) -> None:
    with pytest.raises(ConfigError) as info:
        table.with_overrides([entry(output=-0.5)], path="pricing.models")
    assert str(info.value) == "pricing.models[0].prices[0].output: must be >= 0, got -0.5"
    with pytest.raises(ConfigError) as info:
        table.with_overrides([{**entry("mine", "openai"), "aliases": ["gpt-4o"]}])
    assert str(info.value).startswith(
        "pricing.models[0].aliases[0]: 'gpt-4o' is already a model for provider 'openai'"
    )


# -- the shipped table -------------------------------------------------------------


def test_default_table_is_loaded_once() -> None:
    assert PriceTable.default() is PriceTable.default()


def test_shipped_table_covers_the_main_models(table: PriceTable) -> None:
    names = {m for _, m in table.models()}
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-3-7-sonnet",
        "claude-3-5-haiku",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "text-embedding-3-small",
        "gemini-embedding-001",
    ):
        assert model in names, model


def test_every_shipped_row_is_sane(table: PriceTable) -> None:
    assert len(table) >= 40
    for provider, model in table.models():
        rows = table._entries[(provider, model)].rows
        assert [r.effective_from for r in rows] == sorted({r.effective_from for r in rows})
        for row in rows:
            prices = [row.input, row.cache_read, row.cache_write, row.output]
            prices += [] if row.reasoning is None else [row.reasoning]
            assert all(p >= 0 for p in prices), (model, row)
            assert row.cache_read <= row.input, (model, row)
            if provider == "anthropic" and model != "claude-3-haiku":
                # 5-minute cache write is 1.25x input, a cache read 0.1x.
                assert row.cache_write == pytest.approx(1.25 * row.input), model
                assert row.cache_read == pytest.approx(0.1 * row.input), model
        for alias in table._entries[(provider, model)].aliases:
            assert table.lookup(provider, alias, NOW) == table.lookup(provider, model, NOW)
