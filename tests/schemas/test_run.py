"""``RunDecoder`` gives ``decode_run``'s events, field by field, whatever it has learned."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import orjson
import pytest

from spendbrake._simulate import simulate
from spendbrake.schemas import RunDecoder, decode_run, parse_ts

START = parse_ts("2026-09-07T00:00:00Z")


def _bad(wire: dict[str, Any], rng: random.Random) -> bytes | None:
    """One record every decoder must refuse (or cut the run at), of a kind picked at random."""
    kind = rng.randrange(9)
    field = rng.choice(["team", "provider", "model", "feature", "customer"])
    if kind == 0:
        wire[field] = rng.choice([" ", "\u00a0", "\t"])  # NOT_BLANK, or kept as it came
    elif kind == 1:
        wire[field] = "x" * 513  # past MAX_STR_LEN
    elif kind == 2:
        wire[field] = ""  # an empty required field; an empty optional one is the checked path's
    elif kind == 3:
        wire[field] = 5
    elif kind == 4:
        wire["region"] = "eu"  # unknown
    elif kind == 5:
        wire["extras"] = None
    elif kind == 6:
        return orjson.dumps(wire).replace(b'"team":"', b'"team":"\xff', 1)  # bad UTF-8
    elif kind == 7:
        return None
    else:
        return orjson.dumps(wire)[:-3]  # malformed
    return orjson.dumps(wire)


def _records(seed: int, customers: int) -> list[bytes | None]:
    """Simulated calls with new values arriving all along (a customer per call drawn from
    ``customers``, a new team now and then) and a bad record every 50 or so."""
    rng = random.Random(seed)
    out: list[bytes | None] = []
    for i, event in enumerate(simulate(START, 86400, rate_per_s=0.05, seed=seed)):
        wire: dict[str, Any] = event.to_wire()
        if "customer" in wire:
            wire["customer"] = f"c{rng.randrange(customers)}"
        if rng.random() < 0.02:
            wire["team"] = f"team-{i}"
        raw = orjson.dumps(wire)
        if rng.random() < 0.02:  # an escape: the same value as "ab"
            raw = raw.replace(f'"team":"{wire["team"]}"'.encode(), b'"team":"a\\u0062"')
        out.append(_bad(wire, rng) if rng.random() < 0.02 else raw)
    return out


def _fields(events: list[Any]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(e) for e in events]


@pytest.mark.parametrize(("customers", "max_values"), [(5, 512), (40, 512), (600, 512), (40, 8)])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_same_events_as_decode_run(seed: int, customers: int, max_values: int) -> None:
    records = _records(seed, customers)
    decoder = RunDecoder(max_values)
    shared = decoded = 0
    rng = random.Random(seed)
    at = 0
    while at < len(records):  # runs of random lengths, the next after where one stopped
        run = records[at : at + rng.choice([1, 2, 7, 64, 1024])]
        want = decode_run(run)
        got = decoder.decode(run)
        assert _fields(got) == _fields(want), run  # a stop at the same record too
        shared += sum(type(e).__name__ == "SharedUsageEvent" for e in got)
        decoded += len(got)
        at += len(want) + (len(want) < len(run))
    assert shared > decoded // 2  # the literals took most records
    # A field past the cap is text for good; the others keep their values.
    assert (decoder.values["customer"] is None) == (customers > max_values)
    assert all(decoder.values[f] for f in ("provider", "environment"))


def test_values_past_the_cap_are_text_and_still_checked() -> None:
    """With every team new, ``team`` becomes text; a blank team still ends the run."""
    decoder = RunDecoder(max_values=2)
    events = [e.to_wire() for e in simulate(START, 3600, rate_per_s=0.05, seed=3)][:40]
    for i, wire in enumerate(events):
        wire["team"] = f"t{i}"
    records: list[bytes | None] = [orjson.dumps(w) for w in events]
    for a in range(0, 20, 5):
        assert len(decoder.decode(records[a : a + 5])) == 5
    assert decoder.values["team"] is None
    records[27] = orjson.dumps({**events[27], "team": " "})
    assert len(decoder.decode(records[20:40])) == len(decode_run(records[20:40])) == 7


def test_shared_strings_are_one_object() -> None:
    decoder = RunDecoder()
    raws = [e.to_json() for e in simulate(START, 3600, rate_per_s=0.05, seed=4)]
    decoder.decode(raws)  # learned
    events = decoder.decode(raws)
    teams = {e.team: e.team for e in events}
    assert all(e.team is teams[e.team] for e in events)
