"""`spendbrake worker --stages ingest,store` on the embedded broker, SIGKILLed mid-stream
and restarted: the store, and the report made from it, equal the exact sums of the
generated events (no double counting)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from spendbrake._broker import EmbeddedBroker
from spendbrake._report import (
    DAY_S,
    build_report,
    cache_savings_usd,
    open_store,
    parse_period,
    percentile,
)
from spendbrake.schemas import PriceTable, decode_event, parse_ts, to_nusd
from spendbrake.streamer import StoreBusy, connect_store, load_offsets
from tests.streamer.kafka_io import publish_raw, read_totals
from tests.streamer.test_worker import recreate_topic, start_worker, stop

PRICES = PriceTable.default()
DAY = parse_ts("2026-10-05T00:00:00Z")
TEAMS = ("search", "support", "growth")
MODELS = (
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("acme", "mystery-1"),
)
DIMENSIONS = "[[], [team], [team, feature], [api_key], [customer], [model], [team, model]]"


def make_events(n: int, seed: int = 5) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Records to publish (with 5% duplicates) and the unique events. A third of the events
    fall on the prior day (for the trend); the last few, a day later, close every trace."""
    rng = random.Random(seed)
    unique: list[dict[str, Any]] = []
    for i in range(n):
        day = DAY - DAY_S if i < n // 3 else DAY
        ts = day + 20 * 3600 * (i % (n // 3 + 1)) / (n // 3 + 1) + rng.random()
        provider, model = rng.choice(MODELS)
        event: dict[str, Any] = {
            "event_id": f"st-{seed}-{i}",
            "ts": round(ts, 3),
            "provider": provider,
            "model": model,
            "input_tokens": rng.randint(0, 6000),
            "output_tokens": rng.randint(0, 900),
            "team": rng.choice(TEAMS),
            "feature": rng.choice(("chat", "agent")),
            "api_key": f"key-{rng.randint(0, 5)}",
            "customer": f"cust-{rng.randint(0, 12)}",
            "trace_id": f"tr-{seed}-{i // 3}",
        }
        event["cache_read_tokens"] = rng.randint(0, event["input_tokens"])
        if rng.random() < 0.4:
            event["cost_usd"] = round(rng.lognormvariate(-5, 1.2), 9)
        if rng.random() < 0.15:
            event["outcome"] = "ticket_resolved"
        unique.append(event)
    for k in range(40):  # some on every partition: each keeps its own watermark
        tick = {**unique[-1], "event_id": f"st-{seed}-tick{k}", "ts": DAY + DAY_S + 43200.0}
        tick.pop("trace_id", None)
        unique.append(tick)
    records = [orjson.dumps(e) for e in unique]
    records += [orjson.dumps(rng.choice(unique)) for _ in range(n // 20)]
    rng.shuffle(records)  # the worker counts in event time, whatever the order
    return records, unique


def truth(unique: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """What the report must say about [start, end), computed from the events alone."""
    per: dict[str, dict[Any, list[int]]] = {"team": defaultdict(lambda: [0] * 5)}
    per["model"] = defaultdict(lambda: [0] * 5)
    traces: dict[str, list[float]] = {}
    outcomes = 0
    savings = 0.0
    for raw in unique:
        event = decode_event(orjson.dumps(raw))
        cost = event.cost_usd if event.cost_usd is not None else PRICES.price(event)
        nusd = to_nusd(cost or 0.0)
        if event.trace_id is not None:
            trace = traces.setdefault(event.trace_id, [0, event.ts])
            trace[0] += nusd
            trace[1] = min(trace[1], event.ts)
        if not start <= event.ts < end:
            continue
        for by in ("team", "model"):
            row = per[by][getattr(event, by)]
            row[0] += nusd
            row[1] += 1
            row[2] += event.input_tokens
            row[3] += event.cache_read_tokens
            row[4] += event.output_tokens
        outcomes += event.outcome == "ticket_resolved"
        saved = cache_savings_usd(PRICES, event.model, start, event.cache_read_tokens)
        savings += saved or 0.0
    costs = sorted(int(c) for c, s in traces.values() if start <= s < end)
    return {
        "team": {k: tuple(v) for k, v in per["team"].items()},
        "model": {k: tuple(v) for k, v in per["model"].items()},
        "total": sum(v[0] for v in per["team"].values()),
        "outcomes": outcomes,
        "savings": savings,
        "traces": (len(costs), percentile(costs, 0.5), percentile(costs, 0.95), costs[-1]),
    }


def observed(report: dict[str, Any], by: str) -> dict[Any, tuple[int, ...]]:
    return {
        row[by]: (
            row["cost_nusd"],
            row["calls"],
            row["input_tokens"],
            row["cache_read_tokens"],
            row["output_tokens"],
        )
        for row in report["rows"]
    }


def store_report(path: Path, by: str) -> dict[str, Any] | None:
    """The report for the test day, or None while the store is not readable yet."""
    if not path.is_file():
        return None
    try:
        con = connect_store(path, read_only=True, wait_s=2.0)
    except StoreBusy:
        return None
    try:
        return build_report(con, parse_period("2026-10-05"), by, now=DAY + 3 * DAY_S)
    except Exception:
        return None  # nothing stored for the day yet
    finally:
        con.close()


def test_store_is_exact_across_sigkills(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, rollups = make_topic("events", 4), make_topic("rollups", 4)
    config = tmp_path / "config.yaml"
    config.write_text(
        "kafka:\n  group_id: store-test\n  topics:\n"
        f"    events: {events}\n    rollups: {rollups}\n    dlq: {events}-dlq\n"
        f"    alerts: {events}-alerts\n    actions: {events}-actions\n"
        f"    traces: {events}-traces\n"
        f"dimensions: {DIMENSIONS}\n"
    )
    records, unique = make_events(6_000)
    want = truth(unique, DAY, DAY + DAY_S)
    state = tmp_path / "state"
    store = state / "store" / "spend.duckdb"
    log = tmp_path / "worker.log"
    third = len(records) // 3
    asyncio.run(publish_raw(broker.bootstrap_servers, events, records[:third]))
    worker = start_worker(broker, config, state, log, stages="ingest,store")
    rng = random.Random(2)
    try:
        for kill, upto in enumerate((2 * third, len(records))):
            # Kill once the store has committed something: the restart must resume there.
            deadline = time.monotonic() + 60
            while store_report(store, "team") is None and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 1.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            asyncio.run(
                publish_raw(broker.bootstrap_servers, events, records[third * (kill + 1) : upto])
            )
            worker = start_worker(broker, config, state, log, stages="ingest,store")
        deadline = time.monotonic() + 60
        report: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            report = store_report(store, "team")
            # More than the team totals: caching savings come from the [model] rollups, which
            # can land in a later fetch (and store commit) than the last [team] ones.
            if (
                report
                and observed(report, "team") == want["team"]
                and report["traces"]
                and (report["traces"]["count"] == want["traces"][0])
                and abs(report["caching"]["saved_usd"] - want["savings"]) < 1e-6
            ):
                break
            time.sleep(0.5)
    finally:
        stop(worker)
    assert report is not None, log.read_text()[-3000:]
    assert "store " in log.read_text() and "opened at offsets {(" in log.read_text()
    by_model = store_report(store, "model")
    assert by_model is not None
    # Exact to the nano-dollar, per team and per model, with calls and tokens.
    assert observed(report, "team") == want["team"]
    assert observed(by_model, "model") == want["model"]
    assert report["total"]["cost_nusd"] == want["total"]
    assert report["total"]["calls"] == sum(v[1] for v in want["team"].values())
    (outcome,) = report["outcomes"]
    assert outcome["count"] == want["outcomes"]
    assert outcome["cost_per_outcome_usd"] == want["total"] / 1e9 / want["outcomes"]
    traces = report["traces"]
    assert (traces["count"], traces["p50_nusd"], traces["p95_nusd"], traces["max_nusd"]) == (
        want["traces"]
    )
    assert abs(report["caching"]["saved_usd"] - want["savings"]) < 1e-6
    prior = truth(unique, DAY - DAY_S, DAY)
    assert report["total"]["prior_cost_nusd"] == prior["total"]

    # The command line reads the same store (the worker is stopped: no lock to wait on).
    chart = tmp_path / "spend.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spendbrake.cli",
            "report",
            "--period",
            "2026-10-05",
            "--state-dir",
            str(state),
            "--format",
            "json",
            "--chart",
            str(chart),
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    cli = orjson.loads(done.stdout)
    assert {row["team"]: row["cost_nusd"] for row in cli["rows"]} == {
        k: v[0] for k, v in want["team"].items()
    }
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert open_store(store).execute("SELECT COUNT(*) FROM offsets").fetchone()[0] > 0


def two_topic_config(tmp_path: Path, group: str, events: str, rollups: str) -> Path:
    """A config naming the test's events and rollups topics (the others beside them)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"kafka:\n  group_id: {group}\n  topics:\n"
        f"    events: {events}\n    rollups: {rollups}\n    dlq: {events}-dlq\n"
        f"    alerts: {events}-alerts\n    actions: {events}-actions\n"
        f"    traces: {events}-traces\n"
        f"dimensions: {DIMENSIONS}\n"
    )
    return config


def stored_until(
    worker: subprocess.Popen[bytes], log: Path, store: Path, want: dict[str, Any]
) -> dict[str, Any] | None:
    """The store's report once its teams equal ``want``'s (or the last one, after 60 s);
    the worker must stay up meanwhile."""
    deadline = time.monotonic() + 60
    report = None
    while time.monotonic() < deadline:
        assert worker.poll() is None, log.read_text()[-3000:]
        report = store_report(store, "team")
        if report and observed(report, "team") == want["team"]:
            break
        time.sleep(0.3)
    return report


def test_a_rollups_topic_re_created_under_the_running_store_is_read_from_its_start(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Walk 2026-12-07: the embedded broker restarted under a running worker (Tansu keeps
    topics in memory only). The ingest's group was lost and its partitions assigned again
    from offset 0; the store (and detect, and act), with no group, waited at their old
    offsets, where Tansu answers nothing: the new rollups were never stored (and new
    alerts never acted on). Here the rollups topic is re-created under a running store."""
    events, rollups = make_topic("events", 4), make_topic("rollups", 4)
    config = two_topic_config(tmp_path, "store-recreated", events, rollups)
    records, unique = make_events(2_000, seed=9)
    half = len(records) // 2
    first = list({e["event_id"]: e for e in map(orjson.loads, records[:half])}.values())
    store = tmp_path / "state" / "store" / "spend.duckdb"
    log = tmp_path / "worker.log"

    def rollup_partitions_stored() -> set[int]:
        """The rollups partitions whose records the store file holds (offset past 0)."""
        while True:  # the store holds the file a moment while it writes
            try:
                con = connect_store(store, read_only=True, wait_s=2.0)
            except StoreBusy:
                continue
            try:
                offsets = load_offsets(con)
            finally:
                con.close()
            return {p for (topic, p), offset in offsets.items() if topic == rollups and offset}

    asyncio.run(publish_raw(broker.bootstrap_servers, events, records[:half]))
    worker = start_worker(broker, config, tmp_path / "state", log, stages="ingest,store")
    try:
        before = truth(first, DAY, DAY + DAY_S)
        stored = stored_until(worker, log, store, before)
        assert stored is not None and observed(stored, "team") == before["team"]
        read = rollup_partitions_stored()
        assert read, "the store has read no rollups"
        asyncio.run(recreate_topic(broker.bootstrap_servers, rollups, 4))
        # The new events only once the store has seen the new topic (empty, below its read
        # positions): one refilled past them before the store's next fetch cannot be told
        # from the old one (offsets carry no topic identity: spendbrake/stages/offsets.py).
        # Published at once, under load the ingest won that race now and then.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            f"store: {rollups} partition {p}: saved offset" in log.read_text() for p in read
        ):
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        asyncio.run(publish_raw(broker.bootstrap_servers, events, records[half:]))
        want = truth(unique, DAY, DAY + DAY_S)
        report = stored_until(worker, log, store, want)
    finally:
        stop(worker)
    text = log.read_text()
    assert report is not None and observed(report, "team") == want["team"], text[-3000:]
    assert f"store: {rollups} partition" in text and "is beyond the log end" in text


def rolled_up_calls(broker: EmbeddedBroker, topic: str) -> int:
    totals = asyncio.run(read_totals(broker.bootstrap_servers, topic))
    return sum(v[1] for v in totals.totals((), 3600).values())


def test_a_store_file_that_cannot_be_read_stops_only_the_store_until_it_is_moved_aside(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A corrupt store file stopped the whole worker ("unreadable state"), so a report
    store's disk problem took alerts and pauses down with it: a restart loop, nothing
    detected. Now the store stage says so and tries again while the other stages go on;
    moved aside (at the start, then again mid-run), the file is built anew from the
    topics, exactly."""
    events, rollups = make_topic("events", 4), make_topic("rollups", 4)
    config = two_topic_config(tmp_path, "store-unreadable", events, rollups)
    records, unique = make_events(2_000, seed=13)
    half = len(records) // 2
    first = list({e["event_id"]: e for e in map(orjson.loads, records[:half])}.values())
    store = tmp_path / "state" / "store" / "spend.duckdb"
    store.parent.mkdir(parents=True)
    junk = b"not a database " * 4096
    store.write_bytes(junk)
    log = tmp_path / "worker.log"

    def logged(text: str, after: int = 0) -> int:
        """Wait for ``text`` in the log past offset ``after``; the worker must stay up."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            found = log.read_text().find(text, after)
            if found >= 0:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not logged: {log.read_text()[-3000:]}")

    asyncio.run(publish_raw(broker.bootstrap_servers, events, records[:half]))
    worker = start_worker(broker, config, tmp_path / "state", log, stages="ingest,store")
    try:
        at = logged(f"store stage: {store}: unreadable state")
        logged("the other stages go on", at)
        # Meanwhile the ingest counts every event: the worker did not stop.
        deadline = time.monotonic() + 60
        while rolled_up_calls(broker, rollups) != len(first):
            assert time.monotonic() < deadline, rolled_up_calls(broker, rollups)
            time.sleep(0.5)
        store.rename(store.with_name("spend.duckdb.bad"))
        before = truth(first, DAY, DAY + DAY_S)
        stored = stored_until(worker, log, store, before)
        assert stored is not None and observed(stored, "team") == before["team"]
        # Mid-run: the file is swapped for junk between two writes, then moved aside.
        mark = len(log.read_text())
        swap = store.with_name("junk")
        swap.write_bytes(junk)
        swap.replace(store)
        asyncio.run(publish_raw(broker.bootstrap_servers, events, records[half:]))
        logged(f"store stage: {store}: unreadable state", mark)
        store.rename(store.with_name("spend.duckdb.bad2"))
        want = truth(unique, DAY, DAY + DAY_S)
        report = stored_until(worker, log, store, want)
    finally:
        stop(worker)
    text = log.read_text()
    assert report is not None and observed(report, "team") == want["team"], text[-3000:]
    assert "opened again; reading on" in text
