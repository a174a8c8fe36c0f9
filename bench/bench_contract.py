"""Per-event cost of contract v1 validation: our hand-written decoder against an
equivalent pydantic v2 model, both measured in this run.

    python -m bench contract [--events N] [--json]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spendbrake.schemas import decode_event
from spendbrake.schemas._event import decode_event_checked

NonNeg = Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
Text = Annotated[str, Field(min_length=1, max_length=512, strict=True)]


class PydanticEvent(BaseModel):
    """The same contract as a pydantic model: the baseline, not used by the product."""

    model_config = ConfigDict(extra="allow")
    event_id: Text
    ts: float
    provider: Text
    model: Text
    input_tokens: NonNeg
    output_tokens: NonNeg
    team: Text
    cache_read_tokens: NonNeg = 0
    cache_write_tokens: NonNeg = 0
    reasoning_tokens: NonNeg = 0
    cost_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    feature: str | None = None
    api_key: str | None = None
    customer: str | None = None
    environment: str | None = None
    workload: Literal["critical", "standard", "batch"] = "standard"
    trace_id: str | None = None
    outcome: str | None = None
    tags: dict[str, str] = {}

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: object) -> float:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError("must carry a UTC offset")
            return parsed.timestamp()
        return value  # type: ignore[return-value]

    @field_validator("team", "provider", "model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value.isspace():
            raise ValueError("must not be only whitespace")
        return value

    @model_validator(mode="after")
    def _cache(self) -> PydanticEvent:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cache tokens exceed input")
        return self


def sample(n: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"evt-{i}",
                "ts": "2026-11-23T10:00:00.123Z",
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 1234 + i % 50,
                "output_tokens": 321,
                "cache_read_tokens": 1000,
                "team": "search",
                "feature": "agent",
                "api_key": "search-agent-prod",
                "customer": "acme",
                "environment": "prod",
                "workload": "batch",
                "trace_id": f"tr-{i // 5}",
                "cost_usd": 0.0123,
            }
        )
        for i in range(n)
    ]


def measure(events: list[bytes]) -> dict[str, float]:
    def per_event(fn: object) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for raw in events:
                fn(raw)  # type: ignore[operator]
            best = min(best, time.perf_counter() - start)
        return best / len(events) * 1e6

    loads_us = per_event(orjson.loads)
    ours_us = per_event(decode_event)
    checked_us = per_event(decode_event_checked)
    pydantic_us = per_event(PydanticEvent.model_validate_json)
    return {
        "events": len(events),
        "orjson_loads_us": round(loads_us, 3),
        "decode_event_us": round(ours_us, 3),
        "checked_path_us": round(checked_us, 3),
        "pydantic_us": round(pydantic_us, 3),
        "pydantic_over_ours": round(pydantic_us / ours_us, 2),
        "ours_over_orjson_loads": round(ours_us / loads_us, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(sample(args.events))
    if args.json:
        print(orjson.dumps(result).decode())
        return
    print(f"events                      {result['events']:,}")
    print(f"orjson.loads only           {result['orjson_loads_us']:.2f} us/event")
    print(f"decode_event (msgspec path) {result['decode_event_us']:.2f} us/event")
    print(f"checked path (orjson+rules) {result['checked_path_us']:.2f} us/event")
    print(f"pydantic model_validate_json{result['pydantic_us']:>7.2f} us/event")
    print(f"pydantic / ours             {result['pydantic_over_ours']:.2f}x")
    print(f"ours / orjson.loads         {result['ours_over_orjson_loads']:.2f}x")


if __name__ == "__main__":
    main()
