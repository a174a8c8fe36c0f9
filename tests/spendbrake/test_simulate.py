"""The traffic simulator: seeded, ordered, valid, seasonal, and incidents that show."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake._produce import publish
from spendbrake._simulate import (
    INCIDENT_KINDS,
    PRICES_PER_1M,
    Incident,
    TrafficProfile,
    _draw,
    pace,
    parse_incident,
    simulate,
    write_jsonl,
)
from spendbrake.schemas import decode_event, validate_event
from spendbrake.sdk import SpendProducer
from tests.kafka_helpers import read_topic_sync

MONDAY = datetime(2026, 10, 5, tzinfo=UTC).timestamp()
HOUR = 3600.0
DAY = 86400.0


def wires(seed: int) -> list[dict[str, object]]:
    return [e.to_wire() for e in simulate(MONDAY + 10 * HOUR, HOUR, rate_per_s=2, seed=seed)]


def count_in(events: list, api_key: str, begin: float, end: float) -> int:
    return sum(1 for e in events if e.api_key == api_key and begin <= e.ts < end)


def test_same_seed_same_events_and_another_seed_differs() -> None:
    first, again, other = wires(7), wires(7), wires(8)
    assert len(first) > 5000 and first == again
    assert [e["event_id"] for e in first[:3]] == ["sim-7-0", "sim-7-1", "sim-7-2"]
    assert other[0]["event_id"] == "sim-8-0"
    assert [(e["ts"], e["input_tokens"]) for e in first] != [
        (e["ts"], e["input_tokens"]) for e in other
    ]


def test_events_are_ordered_in_bounds_unique_and_valid() -> None:
    start = MONDAY + 3.5 * HOUR + 17.25  # not minute-aligned, spans night into morning
    span = 6 * HOUR
    targets = {
        "runaway": "api_key=search-agent-prod",
        "batch_runaway": "api_key=growth-email-batch",
        "spike": "api_key=support-bot-prod",
        "launch": "team=growth,feature=copy",
        "creep": "api_key=research-analyst-prod",
        "prompt_change": "api_key=support-triage-prod",
    }
    specs = [f"{kind}:{where},start=+2h,duration=1h" for kind, where in targets.items()]
    events = list(
        simulate(start, span, rate_per_s=1, seed=1, incidents=[parse_incident(s) for s in specs])
    )
    assert len(events) > 10_000
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
    assert start <= events[0].ts and events[-1].ts < start + span
    assert len({e.event_id for e in events}) == len(events)
    for event in events:
        wire = event.to_wire()
        assert validate_event(wire).to_wire() == wire
    assert {e.tags.get("sim_incident") for e in events} == {None, *INCIDENT_KINDS}


def test_shapes_of_real_traffic() -> None:
    profile = TrafficProfile.default()
    events = list(simulate(MONDAY + 13 * HOUR, 2 * HOUR, rate_per_s=3, seed=2))
    providers = {"gpt": "openai", "o4": "openai", "claude": "anthropic", "gemini": "google"}
    for event in events:
        assert providers[event.model.split("-")[0]] == event.provider
    assert {e.team for e in events} == {"search", "support", "growth", "platform", "research"}
    assert {e.workload for e in events} == {"critical", "standard", "batch"}
    assert {e.environment for e in events} == {"prod", "staging"}
    assert {k.api_key for k in profile.keys} == {e.api_key for e in events}
    assert any(e.cache_write_tokens for e in events if e.provider == "anthropic")
    assert not any(e.cache_write_tokens for e in events if e.provider != "anthropic")
    assert any(e.cache_read_tokens for e in events)
    assert {e.model for e in events if e.reasoning_tokens} == {"o4-mini", "gpt-5"}
    assert {e.outcome for e in events} >= {None, "ticket_resolved"}
    assert len({e.customer for e in events}) > 5
    # Agent tasks: several calls share a trace id.
    agent = Counter(e.trace_id for e in events if e.api_key == "search-agent-prod")
    assert 3 < sum(agent.values()) / len(agent) < 9
    # About half carry cost_usd, priced from the local table.
    priced = [e for e in events if e.cost_usd is not None]
    assert 0.4 < len(priced) / len(events) < 0.6
    e = priced[0]
    p_in, p_read, p_write, p_out = PRICES_PER_1M[e.model]
    uncached = e.input_tokens - e.cache_read_tokens - e.cache_write_tokens
    expected = uncached * p_in + e.cache_read_tokens * p_read + e.cache_write_tokens * p_write
    assert e.cost_usd == pytest.approx((expected + e.output_tokens * p_out) / 1e6, abs=1e-8)


@pytest.mark.parametrize(("fraction", "priced"), [(0.0, False), (1.0, True)])
def test_priced_fraction_bounds(fraction: float, priced: bool) -> None:
    events = simulate(MONDAY, 600, rate_per_s=2, seed=4, priced_fraction=fraction)
    assert {e.cost_usd is not None for e in events} == {priced}


def test_weekly_seasonality_over_two_weeks() -> None:
    rate = 0.05
    events = list(simulate(MONDAY, 14 * DAY, rate_per_s=rate, seed=5))
    assert len(events) / (14 * DAY) == pytest.approx(rate, rel=0.1)
    per_hour: Counter[tuple[str, str]] = Counter()
    for e in events:
        when = datetime.fromtimestamp(e.ts, UTC)
        if 12 <= when.hour < 17:
            slot = "weekend_day" if when.weekday() >= 5 else "weekday_day"
        elif when.hour < 5:
            slot = "night"
        else:
            continue
        per_hour["batch" if e.workload == "batch" else "online", slot] += 1
    hours = {"weekday_day": 10 * 5, "weekend_day": 4 * 5, "night": 14 * 5}
    rates = {key: n / hours[key[1]] for key, n in per_hour.items()}
    assert rates["online", "weekday_day"] > 3 * rates["online", "night"]
    assert rates["online", "weekday_day"] > 1.5 * rates["online", "weekend_day"]
    assert rates["batch", "night"] > 5 * rates["batch", "weekday_day"]


def test_runaway_multiplies_the_key_in_its_window_and_tags_it() -> None:
    start, tue_10 = MONDAY + DAY + 8 * HOUR, MONDAY + DAY + 10 * HOUR
    spec = "runaway:team=search,feature=agent,x=20,start=2026-10-06T10:00:00Z,duration=3h"
    incident = parse_incident(spec)
    base = list(simulate(start, 6 * HOUR, rate_per_s=0.5, seed=6))
    hit = list(simulate(start, 6 * HOUR, rate_per_s=0.5, seed=6, incidents=[incident]))
    key, end = "search-agent-prod", tue_10 + 3 * HOUR
    ratio = count_in(hit, key, tue_10, end) / count_in(base, key, tue_10, end)
    assert 10 < ratio < 40
    tagged = [e for e in hit if e.tags]
    assert tagged and all(e.tags == {"sim_incident": "runaway"} for e in tagged)
    assert {e.api_key for e in tagged} == {key}
    assert all(tue_10 <= e.ts < end for e in tagged)
    assert len(tagged) == count_in(hit, key, tue_10, end)
    other = "support-bot-prod"  # untouched keys keep their volume
    assert count_in(hit, other, tue_10, end) == pytest.approx(
        count_in(base, other, tue_10, end), rel=0.3
    )


def test_prompt_change_raises_tokens_per_call_at_flat_volume() -> None:
    spec = "prompt_change:api_key=support-triage-prod,x=4,start=+2h,duration=3h"
    begin, end = MONDAY + 12 * HOUR, MONDAY + 15 * HOUR
    key = "support-triage-prod"
    runs = {}
    for name, incidents in (("base", []), ("hit", [parse_incident(spec)])):
        events = simulate(MONDAY + 10 * HOUR, 6 * HOUR, rate_per_s=1, seed=9, incidents=incidents)
        runs[name] = [e for e in events if e.api_key == key and begin <= e.ts < end]
    per_call = {n: sum(e.input_tokens for e in es) / len(es) for n, es in runs.items()}
    assert per_call["hit"] > 2.5 * per_call["base"]
    assert len(runs["hit"]) == pytest.approx(len(runs["base"]), rel=0.2)
    assert all(e.tags == {"sim_incident": "prompt_change"} for e in runs["hit"])


def test_batch_runaway_runs_a_batch_key_around_the_clock() -> None:
    saturday = MONDAY + 5 * DAY
    incident = parse_incident("batch_runaway:api_key=growth-email-batch,x=5")  # middle: Sun 00:00
    events = list(simulate(saturday, 2 * DAY, rate_per_s=0.5, seed=3, incidents=[incident]))
    tagged = [e for e in events if e.tags]
    assert {e.api_key for e in tagged} == {"growth-email-batch"}
    sunday_afternoon = [e for e in tagged if saturday + DAY + 12 * HOUR <= e.ts]
    assert len(sunday_afternoon) > 100  # a nightly job would be nearly idle here


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "runaway:team=search,feature=agent,x=20,start=2026-10-20T02:00:00Z,duration=3h",
            Incident(
                "runaway",
                (("team", "search"), ("feature", "agent")),
                20.0,
                datetime(2026, 10, 20, 2, tzinfo=UTC).timestamp(),
                None,
                3 * HOUR,
            ),
        ),
        ("spike", Incident("spike")),
        ("launch:start=+2h", Incident("launch", start_offset_s=2 * HOUR)),
        (" creep : team = research , x=1.5, ", Incident("creep", (("team", "research"),), 1.5)),
        (
            "batch_runaway:start=2026-10-24,duration=2d",
            Incident("batch_runaway", (), None, MONDAY + 19 * DAY, None, 2 * DAY),
        ),
        (
            "prompt_change:model=gpt-4.1,duration=30m",
            Incident("prompt_change", (("model", "gpt-4.1"),), duration_s=1800.0),
        ),
    ],
)
def test_parse_incident_accepts(spec: str, expected: Incident) -> None:
    assert parse_incident(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("meltdown:team=x", "unknown kind 'meltdown'"),
        ("runaway:colour=red", "unknown key 'colour'"),
        ("runaway:team", "'team' needs a value"),
        ("runaway:team=a,team=b", "'team=b' is given twice"),
        ("runaway:x=lots", "x=lots must be a number > 0"),
        ("runaway:x=0", "x=0 must be a number > 0"),
        ("runaway:start=tomorrow", "start=tomorrow needs RFC 3339"),
        ("runaway:start=+2 hours", "start=+2 hours needs a number and a unit"),
        ("runaway:duration=3", "duration=3 needs a number and a unit"),
    ],
)
def test_parse_incident_rejects_naming_the_bad_part(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_incident(spec)
    message = str(info.value)
    assert fragment in message and spec in message and "\n" not in message


def test_incident_that_matches_no_key_fails_before_the_first_event() -> None:
    with pytest.raises(ValueError, match="matches no critical key"):
        simulate(MONDAY, HOUR, incidents=[parse_incident("spike:team=research")])
    with pytest.raises(ValueError, match="rate_per_s"):
        simulate(MONDAY, HOUR, rate_per_s=-1)


@pytest.mark.parametrize(
    "spec",
    [
        "runaway:team=search,start=+2h,duration=3h",  # after the span (the help's example)
        "launch:start=+1h",  # a start at the span's end: nothing of it is drawn
        "runaway:start=2026-01-01,duration=3h",  # before the span
    ],
)
def test_an_incident_outside_the_span_is_refused_not_dropped(spec: str) -> None:
    # Drawn anyway, the file would be the traffic alone, byte for byte.
    with pytest.raises(ValueError, match="outside the simulated span") as info:
        simulate(MONDAY, HOUR, incidents=[parse_incident(spec)])
    assert f"incident {spec.split(':')[0]}" in str(info.value)


def test_an_incident_begun_before_the_span_is_drawn_where_they_overlap() -> None:
    spec = "runaway:team=search,x=20,start=2026-10-04T23:30:00Z,duration=1h"
    events = list(simulate(MONDAY, HOUR, incidents=[parse_incident(spec)]))
    assert len(events) > 2 * len(list(simulate(MONDAY, HOUR)))


def test_two_weeks_at_5_per_s_streams_in_bounded_slices() -> None:
    # The numeric core that simulate() wraps; building 6M UsageEvents as well
    # would take the suite far past its time budget.
    total = largest = 0
    profile = TrafficProfile.default()
    for slice_ in _draw(MONDAY, 14 * DAY, 5.0, 0, [], profile, 0.5):
        total += len(slice_[0])
        largest = max(largest, len(slice_[0]))
    assert total == pytest.approx(5 * 14 * DAY, rel=0.02)
    assert largest < 100_000


def test_write_jsonl_round_trips() -> None:
    events = list(simulate(MONDAY, 900, rate_per_s=2, seed=11))
    fh = io.BytesIO()
    assert write_jsonl(iter(events), fh) == len(events)
    lines = fh.getvalue().splitlines()
    assert [decode_event(line) for line in lines] == events


def test_pace_sleeps_until_event_time_on_the_given_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    events = list(simulate(MONDAY, 120, rate_per_s=1, seed=2))
    paced = list(pace(events, MONDAY, clock=lambda: now[0], sleep=sleep, speed=10))
    assert paced == events
    assert now[0] - 100.0 == pytest.approx((events[-1].ts - MONDAY) / 10)


def test_the_demo_config_classes_every_simulated_key_as_its_profile_does() -> None:
    """The demo pauses the batch key and only alerts the critical bot because its config
    says so (the events' workload decides nothing): keep the two in step."""
    from spendbrake._demo import demo_config
    from spendbrake.schemas import KeysConfig

    keys = demo_config("127.0.0.1:1", None, "xoxb-x", None, "http://127.0.0.1:1").keys
    profile = TrafficProfile.default()
    assert KeysConfig.model_validate({"rules": profile.key_rules()}).rules
    for key in profile.keys:
        cls = keys.classify(key.api_key)
        assert (cls.workload, cls.pausable) == (key.workload, key.workload != "critical"), key


def test_history_published_faster_than_the_broker_takes_it_arrives_in_order(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """``emit`` spills past the producer's queue and the spill goes out after it: three
    weeks simulated to Kafka reached the topic up to 33 h out of order, two thirds of it
    counted as late corrections. ``publish`` waits for the broker at half the queue."""
    topic = make_topic("sim")
    events = list(simulate(MONDAY, 6 * HOUR, rate_per_s=0.5, seed=1))
    producer = SpendProducer(
        broker.bootstrap_servers, topic=topic, max_queue=200, spill_path=tmp_path / "s.jsonl"
    )
    assert publish(events, producer) == len(events) > 2000
    assert producer.close(60) and producer.stats.spilled == 0
    records = read_topic_sync(broker.bootstrap_servers, topic, len(events))
    assert len(records) == len(events)
    by_partition: dict[int, list[float]] = {}
    for partition, _, value in records:
        by_partition.setdefault(partition, []).append(decode_event(value).ts)
    for partition, stamps in by_partition.items():
        assert stamps == sorted(stamps), partition
