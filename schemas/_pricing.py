"""Dated prices per model, and the cost of one usage event.

The shipped table is ``schemas/prices.yaml`` (US dollars per 1M tokens, one dated
row per price period). Operators add models or replace a model's rows with the
same per-model shape under ``pricing.models`` in their config.

>>> table = PriceTable.default()
>>> p = table.lookup("openai", "openai/gpt-4o-2024-08-06", ts=1_750_000_000.0)
>>> (p.input, p.cache_read, p.output)
(2.5, 1.25, 10.0)
>>> round(p.cost(input_tokens=1200, output_tokens=80, cache_read_tokens=1000), 8)
0.00255

How ``lookup`` and ``price`` find a model, given an event's provider and model:

1. The model name is lower-cased and everything up to its last ``/`` dropped
   (``openai/gpt-4o``, ``bedrock/...``, ``vertex_ai/...``, ``models/gemini-2.5-pro``).
   Bedrock ids lose their region, vendor and version parts
   (``us.anthropic.claude-sonnet-4-5-20250929-v1:0``), Vertex ids their ``@version``
   (tried as ``-version`` first, then dropped), and OpenRouter-style
   ``claude-sonnet-4.5`` is also tried as ``claude-sonnet-4-5``.
2. Each candidate name is looked up among model names and aliases.
3. If one provider prices that name, that entry is used whatever the event's
   provider says: gateways and clouds (bedrock, vertex_ai, azure, openrouter)
   resell models under their own provider name. If several providers price the
   same name (an operator priced ``gpt-4o`` for ``azure`` as well), the event's
   provider picks one, then the prefix of its model name (``azure/gpt-4o``);
   if neither matches, the call is unpriced rather than priced with a guess.

The price in effect at ``ts`` is the row with the latest ``effective_from <= ts``;
an event older than a model's first row uses the first row.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Any, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ._errors import ConfigError, show
from ._event import UsageEvent
from ._text import did_you_mean

#: Resolved (provider, model) pairs kept per table; past this the memo starts over,
#: so a stream of garbage model names cannot grow memory without bound.
_MEMO_MAX = 65_536

#: Provider spellings that mean the same seller (OpenTelemetry gen_ai.system values,
#: litellm provider names).
_PROVIDER_SYNONYMS = {
    "az.ai.openai": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "aws.bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "gcp.vertex_ai": "vertex_ai",
    "vertex": "vertex_ai",
    "vertexai": "vertex_ai",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "google_genai": "google",
}

# [region.]vendor.model[-vN[:M]], e.g. us.anthropic.claude-sonnet-4-20250514-v1:0
_BEDROCK_ID = re.compile(
    r"(?:[a-z]{2,6}(?:-gov)?\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer)\."
    r"(.+?)(?:-v\d+(?::\d+)?)?"
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's prices from ``effective_from`` (epoch seconds, UTC) on.

    Prices are US dollars per 1M tokens. ``reasoning`` None means reasoning
    tokens cost the same as output tokens.
    """

    effective_from: float
    input: float
    cache_read: float
    cache_write: float
    output: float
    reasoning: float | None = None

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> float:
        """Dollars for one call; token counts as in contract v1.

        ``input_tokens`` includes the cache reads and writes and ``output_tokens``
        includes the reasoning tokens, so the plain-priced parts are what is left.
        Should a producer break that rule, the remainder is taken as 0 rather
        than going negative.
        """
        uncached = input_tokens - cache_read_tokens - cache_write_tokens
        if uncached < 0:
            uncached = 0
        visible = output_tokens - reasoning_tokens
        if visible < 0:
            visible = 0
        reasoning = self.output if self.reasoning is None else self.reasoning
        return (
            uncached * self.input
            + cache_read_tokens * self.cache_read
            + cache_write_tokens * self.cache_write
            + visible * self.output
            + reasoning_tokens * reasoning
        ) / 1_000_000


# ----------------------------------------------------------------------------
# Entry validation: one pydantic model, reused by the operator config model.


def _price(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    if value < 0:
        raise ValueError(f"must be >= 0, got {value:g}")
    if 0 < value < 1e-4:
        # 1e-4 $/1M is far below any real price but far above a per-token one.
        raise ValueError(
            f"{value:g} looks like a per-token price; prices are $ per 1M tokens (multiply by 1e6)"
        )
    return float(value)


def _day(value: Any) -> date:
    # YAML reads an unquoted 2025-06-10 as a date; a datetime (a date subclass)
    # would carry a time of day the table has no use for.
    if type(value) is str and _DAY.fullmatch(value):
        with contextlib.suppress(ValueError):  # 2025-02-30: reported below
            value = date.fromisoformat(value)
    if type(value) is not date:
        raise ValueError(f"must be a date YYYY-MM-DD (UTC), got {show(value)}")
    if not 2000 <= value.year < 2100:
        raise ValueError(f"must fall between 2000 and 2100, got {value.isoformat()}")
    return value


def _name(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"must be a string, got {show(value)}")
    name = value.strip().lower()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 200:
        raise ValueError(f"must be at most 200 characters, got {len(name)}")
    return name


def _model_name(value: Any) -> str:
    name = _name(value)
    if "/" in name:
        raise ValueError(
            f"must not contain '/', got {show(value)}; give the provider under provider"
        )
    return name


def _provider_name(value: Any) -> str:
    name = _name(value)
    return _PROVIDER_SYNONYMS.get(name, name)


class PriceRowModel(BaseModel):
    """One dated price row of a ``PriceEntryModel``; prices in $ per 1M tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: Annotated[date, BeforeValidator(_day)]
    # strict: a YAML `true` or "1.5" is a mistake, not a price.
    input: Annotated[float, Field(strict=True)]
    cache_read: Annotated[float | None, Field(strict=True)] = None
    cache_write: Annotated[float | None, Field(strict=True)] = None
    output: Annotated[float, Field(strict=True)]
    reasoning: Annotated[float | None, Field(strict=True)] = None

    @field_validator("input", "cache_read", "cache_write", "output", "reasoning")
    @classmethod
    def _non_negative(cls, value: float | None) -> float | None:
        return None if value is None else _price(value)

    @field_validator("cache_read")
    @classmethod
    def _read_below_input(cls, value: float | None, info: ValidationInfo) -> float | None:
        base = info.data.get("input")
        if value is not None and base is not None and value > base:
            raise ValueError(f"must be <= input ({base:g}), got {value:g}")
        return value

    def to_price(self) -> ModelPrice:
        start = datetime(
            self.effective_from.year, self.effective_from.month, self.effective_from.day, tzinfo=UTC
        )
        return ModelPrice(
            effective_from=start.timestamp(),
            input=self.input,
            cache_read=self.input if self.cache_read is None else self.cache_read,
            cache_write=self.input if self.cache_write is None else self.cache_write,
            output=self.output,
            reasoning=self.reasoning,
        )


class PriceEntryModel(BaseModel):
    """One model in ``prices.yaml`` or in the operator's ``pricing.models``.

    ``model`` and ``aliases`` are stored lower-cased; ``prices`` lists dated
    rows oldest first. ``cache_read`` and ``cache_write`` default to ``input``,
    ``reasoning`` to ``output``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Annotated[str, BeforeValidator(_model_name)]
    provider: Annotated[str, BeforeValidator(_provider_name)]
    aliases: tuple[Annotated[str, BeforeValidator(_model_name)], ...] = ()
    prices: tuple[PriceRowModel, ...]

    @field_validator("prices")
    @classmethod
    def _dated_in_order(cls, rows: tuple[PriceRowModel, ...]) -> tuple[PriceRowModel, ...]:
        if not rows:
            raise ValueError("must list at least one dated row")
        for i in range(1, len(rows)):
            before, after = rows[i - 1].effective_from, rows[i].effective_from
            if after <= before:
                raise ValueError(
                    f"rows must be in date order: prices[{i}] ({after.isoformat()}) is not "
                    f"after prices[{i - 1}] ({before.isoformat()})"
                )
        return rows


def _config_error(exc: ValidationError, prefix: str) -> ConfigError:
    """The first pydantic error as a one-line ``ConfigError`` with a full path.

    An unknown key goes first: a misspelt ``inptu`` also makes ``input`` missing,
    and the unknown key is the message that shows the fix.
    """
    err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = tuple(err["loc"])
    path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    kind = err["type"]
    message = err["msg"]
    if kind == "missing":
        return ConfigError(path, "is required")
    if kind == "extra_forbidden":
        fields = PriceRowModel.model_fields if "prices" in loc else PriceEntryModel.model_fields
        more = did_you_mean(loc[-1], fields) or f"; use one of {', '.join(fields)}"
        return ConfigError(path, f"unknown key {loc[-1]!r}{more}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return ConfigError(path, f"must be a mapping, got {show(err.get('input'))}")
    if kind in ("tuple_type", "list_type"):
        return ConfigError(path, f"must be a list, got {show(err.get('input'))}")
    if message.startswith("Value error, "):
        return ConfigError(path, message[len("Value error, ") :])
    reason = message.replace("Input should be", "must be")
    return ConfigError(path, f"{reason}, got {show(err.get('input'))}")


# ----------------------------------------------------------------------------
# The table.


class _Entry(NamedTuple):
    provider: str
    model: str
    aliases: tuple[str, ...]
    rows: tuple[ModelPrice, ...]
    starts: tuple[float, ...]  # rows' effective_from, for bisect


def _entry(spec: PriceEntryModel) -> _Entry:
    rows = tuple(row.to_price() for row in spec.prices)
    aliases = tuple(dict.fromkeys(a for a in spec.aliases if a != spec.model))
    return _Entry(spec.provider, spec.model, aliases, rows, tuple(r.effective_from for r in rows))


class PriceTable:
    """Dated prices for many models; immutable once built.

    Build with ``default()``, ``from_entries()`` or ``with_overrides()``. Each
    distinct (provider, model) pair seen by ``price``/``lookup`` is resolved once
    and memoised, so the per-event cost is a dict hit and a little arithmetic.
    """

    __slots__ = ("_entries", "_index", "_memo")

    def __init__(self, entries: Iterable[_Entry] = ()) -> None:
        """Use the class methods; this takes already-checked entries, later ones
        shadowing earlier ones on a shared (name, provider)."""
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._index: dict[str, dict[str, _Entry]] = {}
        for entry in entries:
            self._entries[(entry.provider, entry.model)] = entry
        for entry in self._entries.values():
            for name in entry.aliases:
                self._index.setdefault(name, {})[entry.provider] = entry
        # Model names win over another entry's alias of the same name.
        for entry in self._entries.values():
            self._index.setdefault(entry.model, {})[entry.provider] = entry
        self._memo: dict[tuple[str, str], _Entry | None] = {}

    @classmethod
    def default(cls) -> PriceTable:
        """The shipped ``schemas/prices.yaml``, read and checked once per process."""
        return _default_table()

    @classmethod
    def from_entries(
        cls, entries: Iterable[Mapping[str, Any] | PriceEntryModel], *, path: str = "pricing.models"
    ) -> PriceTable:
        """Build from per-model mappings shaped like ``prices.yaml``'s ``models`` list.

        Raises ``ConfigError`` naming the first bad value, e.g.
        ``pricing.models[3].prices[0].input: must be >= 0, got -1``.
        """
        return cls(_check_entries(entries, path))

    def with_overrides(
        self,
        entries: Iterable[Mapping[str, Any] | PriceEntryModel],
        *,
        path: str = "pricing.models",
    ) -> PriceTable:
        """A new table with operator entries added; this table is unchanged.

        An entry with the (provider, model) of an existing one replaces its price
        rows and adds its aliases to the existing ones. An operator's name or
        alias wins over a shipped alias of the same name and provider.
        """
        merged = dict(self._entries)
        for i, entry in enumerate(_check_entries(entries, path)):
            key = (entry.provider, entry.model)
            for j, alias in enumerate(entry.aliases):
                # A model name outranks any alias, so this alias would never be used.
                if (entry.provider, alias) in self._entries and (entry.provider, alias) != key:
                    raise ConfigError(
                        f"{path}[{i}].aliases[{j}]",
                        f"{alias!r} is already a model for provider {entry.provider!r}; "
                        f"give it its own entry to change its prices",
                    )
            old = merged.pop(key, None)
            if old is not None:
                entry = entry._replace(aliases=tuple(dict.fromkeys(old.aliases + entry.aliases)))
            merged[key] = entry  # re-inserted last, so it shadows shipped aliases
        return PriceTable(merged.values())

    def lookup(self, provider: str, model: str, ts: float) -> ModelPrice | None:
        """The price row in effect at ``ts`` (epoch seconds), or None if the model is unknown."""
        try:
            entry = self._memo[(provider, model)]
        except KeyError:
            entry = self._resolve(provider, model)
        return None if entry is None else _row_at(entry, ts)

    def price(self, event: UsageEvent) -> float | None:
        """The event's cost in dollars, or None when its model is not in the table.

        None means "unpriced": the caller still counts the call and its tokens.
        """
        # A dict hit per event; the try costs nothing in 3.11 when nothing is raised.
        try:
            entry = self._memo[(event.provider, event.model)]
        except KeyError:
            entry = self._resolve(event.provider, event.model)
        if entry is None:
            return None
        row = entry.rows[-1]
        if event.ts < row.effective_from:
            row = _row_at(entry, event.ts)
        return row.cost(
            event.input_tokens,
            event.output_tokens,
            event.cache_read_tokens,
            event.cache_write_tokens,
            event.reasoning_tokens,
        )

    def models(self) -> list[tuple[str, str]]:
        """Every (provider, model) in the table, sorted."""
        return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._entries)} models)"

    def _resolve(self, provider: str, model: str) -> _Entry | None:
        found = None
        want = _PROVIDER_SYNONYMS.get(provider.strip().lower(), provider.strip().lower())
        hint, names = _candidate_names(model)
        for name in names:
            sellers = self._index.get(name)
            if not sellers:
                continue
            if len(sellers) == 1:
                found = next(iter(sellers.values()))
            else:
                found = sellers.get(want) or sellers.get(hint)
            if found is not None:
                break
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[(provider, model)] = found
        return found


def _row_at(entry: _Entry, ts: float) -> ModelPrice:
    i = bisect.bisect_right(entry.starts, ts) - 1
    return entry.rows[i if i > 0 else 0]


def _candidate_names(model: str) -> tuple[str, list[str]]:
    """(provider hint from a ``prefix/``, names to try in order) for a raw model string."""
    name = model.strip().lower()
    hint = ""
    if "/" in name:
        hint = name.partition("/")[0]
        hint = _PROVIDER_SYNONYMS.get(hint, hint)
        name = name.rsplit("/", 1)[1]
    names = [name]
    bedrock = _BEDROCK_ID.fullmatch(name)
    if bedrock:
        names.append(bedrock.group(1))
    for candidate in list(names):
        if "@" in candidate:
            base, _, version = candidate.partition("@")
            names += [f"{base}-{version}", base]
    if name.startswith("claude") and "." in name:
        names.append(name.replace(".", "-"))
    return hint, names


def _check_entries(
    entries: Iterable[Mapping[str, Any] | PriceEntryModel], path: str
) -> list[_Entry]:
    if isinstance(entries, (str, bytes, Mapping)):
        raise ConfigError(path, f"must be a list of model entries, got {show(entries)}")
    out: list[_Entry] = []
    owners: dict[tuple[str, str], str] = {}  # (provider, name) -> path that claimed it
    for i, raw in enumerate(entries):
        here = f"{path}[{i}]"
        if isinstance(raw, PriceEntryModel):
            spec = raw
        else:
            try:
                spec = PriceEntryModel.model_validate(raw)
            except ValidationError as exc:
                raise _config_error(exc, here) from None
        entry = _entry(spec)
        claims = [(f"{here}.model", entry.model)]
        claims += [
            (f"{here}.aliases[{j}]", a) for j, a in enumerate(spec.aliases) if a != spec.model
        ]
        for where, name in claims:
            first = owners.get((entry.provider, name))
            if first is not None:
                raise ConfigError(
                    where,
                    f"{name!r} for provider {entry.provider!r} is already listed at {first}; "
                    f"a price change is a new dated row under prices",
                )
            owners[(entry.provider, name)] = where
        out.append(entry)
    return out


@functools.cache
def _default_table() -> PriceTable:
    location = "schemas/prices.yaml"
    text = resources.files(__package__ or "schemas").joinpath("prices.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if (
        not isinstance(data, dict)
        or set(data) != {"models"}
        or not isinstance(data["models"], list)
    ):
        raise ConfigError("", "must be a mapping with one key, models: a list", location)
    try:
        return PriceTable.from_entries(data["models"], path="models")
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.reason, location) from None
