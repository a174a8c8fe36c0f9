"""A messy input stream with its ground truth: duplicates, late events, malformed records."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import orjson

from spendbrake.schemas import PriceTable, decode_event, to_nusd

T0 = 1_791_158_400  # 2026-10-05T00:00:00Z (a Monday, in the past: the worker refuses future events)
TEAMS = ("search", "support", "growth", "research")
FEATURES = ("agent", "summary", "chat", None)
MODELS = (
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("acme", "mystery-1"),
)

MALFORMED = [
    b'{"event_id": "broken", ',
    b"\xff\xfe\xfa not utf-8",
    orjson.dumps(
        {
            "event_id": "neg",
            "ts": T0,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": -5,
            "output_tokens": 1,
            "team": "x",
        }
    ),
    orjson.dumps(
        {
            "event_id": "type",
            "ts": T0,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": "5",
            "output_tokens": 1,
            "team": "x",
        }
    ),
    orjson.dumps(
        {
            "event_id": "big",
            "ts": T0,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1,
            "output_tokens": 1,
            "team": "x",
            "tags": {"blob": "x" * (10 * 1024 * 1024)},
        }
    ),
    b"[1, 2, 3]",
    orjson.dumps(
        {
            "event_id": "naive",
            "ts": "2026-11-23T10:00:00",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1,
            "output_tokens": 1,
            "team": "x",
        }
    ),
]


@dataclass
class Stream:
    records: list[bytes]
    unique: dict[str, bytes]
    malformed: int
    duplicates: int


def make_stream(
    n: int,
    seed: int = 1,
    span_s: int = 3 * 86400,
    dup_rate: float = 0.05,
    late_rate: float = 0.02,
    bad_rate: float = 0.01,
) -> Stream:
    rng = random.Random(seed)
    base: list[tuple[float, bytes]] = []
    for i in range(n):
        ts = T0 + span_s * i / n + rng.random()
        provider, model = rng.choice(MODELS)
        event = {
            "event_id": f"ev-{seed}-{i}",
            "ts": round(ts, 3),
            "provider": provider,
            "model": model,
            "input_tokens": rng.randint(0, 5000),
            "output_tokens": rng.randint(0, 800),
            "team": rng.choice(TEAMS),
            "workload": rng.choice(("critical", "standard", "batch")),
            "api_key": f"key-{rng.randint(0, 9)}",
            "trace_id": f"tr-{i // 4}",
        }
        event["cache_read_tokens"] = rng.randint(0, event["input_tokens"])
        feature = rng.choice(FEATURES)
        if feature:
            event["feature"] = feature
        if rng.random() < 0.5:
            event["cost_usd"] = round(rng.lognormvariate(-6, 1.5), 9)
        if rng.random() < 0.1:
            event["outcome"] = "ticket_resolved"
        arrival = ts
        if rng.random() < late_rate:
            arrival += rng.uniform(60, 2 * 3600)  # up to 2 hours late
        base.append((arrival, orjson.dumps(event)))
    unique = {orjson.loads(raw)["event_id"]: raw for _, raw in base}
    stream = list(base)
    duplicates = 0
    for _ in range(int(n * dup_rate)):
        arrival, raw = rng.choice(base)
        stream.append((arrival + rng.uniform(0, 6 * 3600), raw))  # possibly far apart
        duplicates += 1
    malformed = int(n * bad_rate)
    for j in range(malformed):
        stream.append((T0 + rng.random() * span_s, MALFORMED[j % len(MALFORMED)]))
    stream.sort(key=lambda item: item[0])
    return Stream([raw for _, raw in stream], unique, malformed, duplicates)


def trace_truth(
    unique: dict[str, bytes], prices: PriceTable | None = None
) -> dict[str, tuple[int, int]]:
    """trace_id -> (cost in nano-dollars, calls) over the unique valid events."""
    prices = prices or PriceTable.default()
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for raw in unique.values():
        event = decode_event(raw)
        cost = event.cost_usd if event.cost_usd is not None else prices.price(event)
        out[event.trace_id][0] += to_nusd(cost or 0.0)
        out[event.trace_id][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def ground_truth(
    unique: dict[str, bytes], dims: tuple[str, ...], window_s: int, prices: PriceTable | None = None
) -> dict[tuple[tuple[str | None, ...], int], tuple[int, int]]:
    """(values, window_start) -> (cost in nano-dollars, calls) over the unique valid events."""
    prices = prices or PriceTable.default()
    out: dict[tuple[tuple[str | None, ...], int], list[int]] = defaultdict(lambda: [0, 0])
    for raw in unique.values():
        event = decode_event(raw)
        cost = event.cost_usd if event.cost_usd is not None else prices.price(event)
        key = (tuple(getattr(event, d) for d in dims), int(event.ts // window_s) * window_s)
        out[key][0] += to_nusd(cost or 0.0)
        out[key][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def disorder(
    lines: list[bytes],
    rng: random.Random,
    *,
    resent: int,
    late: int,
    on_time: int,
    bad: int,
    bad_line: bytes = b'{"event_id": "x", "ts": 1}',
) -> None:
    """Mess up a log of lines in place, as a producer and a broker do: ``resent`` lines sent
    again a few lines later (duplicates), ``late`` held back 800 lines (hours: past the
    lateness), ``on_time`` held back a few (minutes: within it), ``bad`` lines refused."""
    for at in rng.sample(range(100, len(lines)), resent):
        lines.insert(at, lines[at - rng.randrange(1, 50)])
    for at in rng.sample(range(100, len(lines) - 900), late):
        lines.insert(at + 800, lines.pop(at))
    for at in rng.sample(range(100, len(lines) - 30), on_time):
        lines.insert(at + rng.randrange(3, 25), lines.pop(at))
    for at in rng.sample(range(len(lines)), bad):
        lines.insert(at, bad_line)
