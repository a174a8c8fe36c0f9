"""The live detector stage on the embedded broker: a simulated runaway becomes an alert
on the alerts topic, and a worker SIGKILLed mid-stream neither forgets nor repeats it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake._simulate import parse_incident, simulate
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.fakes.slack import FakeSlack
from spendbrake.schemas import Alert, parse_ts
from spendbrake.stages.detect import alert_partition
from tests.kafka_helpers import read_topic
from tests.streamer.kafka_io import publish_raw
from tests.streamer.test_worker import scrape, start_worker, stop

START = parse_ts("2026-09-07T00:00:00Z")  # a Monday
KILL_AFTER_S = tuple(float(x) for x in os.environ.get("KILLS", "6,5").split(",") if x)
RUNAWAY_AT = START + 3 * 86400  # day 4: three days to learn a daily baseline from


def _events() -> list[bytes]:
    runaway = parse_incident("runaway:team=search,x=40,start=+3d,duration=3h")
    stream = simulate(START, 4 * 86400, rate_per_s=0.1, seed=3, incidents=[runaway])
    return [e.to_json() for e in stream]


def _config(
    tmp_path: Path, make_topic: Callable[..., str], slack: FakeSlack, gateway: FakeGateway
) -> tuple[Path, str, str, str]:
    events, rollups = make_topic("events", 4), make_topic("rollups", 4)
    alerts = make_topic("alerts", 2)
    path = tmp_path / "config.yaml"
    path.write_text(
        "kafka:\n  group_id: detect-test\n  topics:\n"
        f"    events: {events}\n    rollups: {rollups}\n    alerts: {alerts}\n"
        f"    dlq: {events}-dlq\n    actions: {events}-actions\n    traces: {events}-traces\n"
        f"slack:\n  token: xoxb-e2e\n  base_url: {slack.base_url}\n  retry_cap_s: 2\n"
        # The events are dated 2026-09: read today, their pauses would be history.
        f"gateway:\n  url: {gateway.url}\n  master_key: sk-e2e\n  retry_cap_s: 2\n"
        "  pause_max_age_s: null\n"
        # Search's keys are standard workloads the operator lets be paused, and this policy
        # pauses the runaway one.
        'keys:\n  rules:\n    - {api_key: "search-*", workload: standard}\n'
        "policies:\n  - match: {team: search}\n    action: pause\n"
        # A daily season and a two-day warm-up keep the history (and the test) short.
        "detectors:\n  - kind: baseline\n    params: {season: 24, warmup_n: 48}\n"
    )
    return path, events, rollups, alerts


#: Records another writer (or another version) could leave on the rollups topic.
JUNK_ROLLUPS = [b"not json", b'{"dims": ["team"], "window_s": 3600}', b'{"mark": "p0"}']


async def _alerts(bootstrap: str, topic: str) -> dict[bytes, dict]:
    records = await read_topic(bootstrap, topic, expect=10**9, timeout_s=2.0)
    return {key: orjson.loads(value) for _, key, value in records if key is not None}


def _wait_for_anomaly(broker: EmbeddedBroker, topic: str, timeout_s: float) -> dict[bytes, dict]:
    deadline = time.monotonic() + timeout_s
    got: dict[bytes, dict] = {}
    while time.monotonic() < deadline:
        got = asyncio.run(_alerts(broker.bootstrap_servers, topic))
        if any(a["kind"] == "anomaly" for a in got.values()):
            return got
        time.sleep(1.0)
    return got


def test_runaway_becomes_one_alert_and_one_pause_across_sigkills(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Events to effects, every stage in one real worker process (the default)."""
    with (
        FakeSlack(token="xoxb-e2e") as slack,
        FakeGateway(master_key="sk-e2e", strict_key_format=False) as gateway,
    ):
        got = _run_pipeline(broker, make_topic, tmp_path, slack, gateway)
        blocked = sorted(gateway.blocked_keys)
        parents = slack.parents()
        threads = [slack.thread(p["ts"]) for p in parents]
    _check_alerts(got)
    key = min((a for a in got.values() if a["kind"] == "anomaly"), key=lambda a: a["seq"])["scope"][
        "api_key"
    ]
    # The action stage paused exactly the runaway key and told Slack, in one thread.
    assert blocked == [key], blocked
    assert len(parents) == 1 and key[-4:] in orjson.dumps(parents[0]).decode(), parents
    assert any("Paused" in orjson.dumps(m).decode() for m in threads[0]), threads


def _run_pipeline(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    slack: FakeSlack,
    gateway: FakeGateway,
) -> dict[bytes, dict]:
    config, events, rollups, alerts_topic = _config(tmp_path, make_topic, slack, gateway)
    records = _events()
    state, log = tmp_path / "state", tmp_path / "worker.log"
    asyncio.run(publish_raw(broker.bootstrap_servers, events, records))
    port = free_port()
    worker = start_worker(broker, config, state, log, port, stages="ingest,detect,act")
    try:
        # Kill the whole worker (all stages) twice while it learns the history.
        for pause_s in KILL_AFTER_S:
            time.sleep(pause_s)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(broker, config, state, log, port, stages="ingest,detect,act")
        # Junk among the rollups is skipped and counted, not a stage stuck failing on it.
        asyncio.run(publish_raw(broker.bootstrap_servers, rollups, JUNK_ROLLUPS))
        got = _wait_for_anomaly(broker, alerts_topic, timeout_s=150.0)
        assert gateway.wait_for(lambda: bool(gateway.blocked_keys), 60), log.read_text()[-3000:]
        time.sleep(3.0)  # let follow-ups of the same incident land
        got = asyncio.run(_alerts(broker.bootstrap_servers, alerts_topic))
        metrics = scrape(port)
    finally:
        stop(worker)
    assert got, log.read_text()[-3000:]
    # One port serves every stage the process runs. The ingest counts what this process
    # read (since 2026-12-07): none, when the killed ones had read it all before.
    assert metrics["spendbrake_records_total"] >= 0, metrics
    assert metrics["spendbrake_series_watched"] > 0, metrics
    assert metrics["spendbrake_detect_event_time_seconds"] >= RUNAWAY_AT, metrics
    lags = [v for k, v in metrics.items() if k.startswith("spendbrake_detect_lag{partition=")]
    assert len(lags) == 4 and all(v >= 0 for v in lags), metrics
    assert metrics['spendbrake_effects_pending{lane="gateway"}'] == 0, metrics
    assert metrics["spendbrake_rollups_skipped_total"] == len(JUNK_ROLLUPS), metrics
    return got


def _check_alerts(got: dict[bytes, dict]) -> None:
    anomalies = [a for a in got.values() if a["kind"] in ("anomaly", "wow")]
    assert anomalies, got
    # One incident: every record (first alert and follow-ups) carries the same id.
    assert len({a["id"] for a in anomalies}) == 1, [
        (a["id"], a["seq"], a["detected_at"], a["scope"], a["observed_usd"]) for a in anomalies
    ]
    first = min(anomalies, key=lambda a: a["seq"])
    assert first["seq"] == 0
    key = first["scope"].get("api_key")
    assert key is not None and key.startswith("search-"), first
    assert first["also"], "the parent scopes the runaway also showed in"
    assert first["action"] == "pause" and first["targets"] == [key]
    # The incident is dated by the hour that showed it: the runaway's. (Here the worker
    # catches up on a backlog, so it is found when that hour closes; tests/detectors
    # shows the early look that finds a live runaway minutes in.)
    assert RUNAWAY_AT <= parse_ts(first["window_start"]) < RUNAWAY_AT + 3 * 3600
    for record_key, alert in got.items():
        assert record_key == f"{alert['id']}#{alert['seq']}".encode()


def test_records_the_watch_skips_are_skipped_undecoded_and_change_nothing() -> None:
    """The detect stage's prefilter: same watch state as decoding every record."""
    from spendbrake.detectors import SpendWatch
    from spendbrake.schemas import Config, PriceTable, decode_rollup, encode_rollup
    from spendbrake.stages.detect import minute_sets, unread
    from spendbrake.streamer import PartitionProcessor

    config = Config.model_validate(
        {
            "budgets": [
                {"name": "s", "scope": {"team": "search"}, "amount_usd": 5, "period": "day"},
                {"name": "b", "scope": {"team": "research", "workload": "batch"}, "amount_usd": 3},
            ]
        }
    )
    start = parse_ts("2026-10-05T09:00:00Z")
    processor = PartitionProcessor("t", 0, config.rollup_dimensions(), PriceTable.default())
    for offset, event in enumerate(simulate(start, 3 * 3600, rate_per_s=2, seed=3)):
        processor.process(event.to_json(), offset)
    values = [encode_rollup(r) for r in processor.flush().rollups]
    whole, filtered = SpendWatch(config, partitions=1), SpendWatch(config, partitions=1)
    wanted = minute_sets(config, filtered)
    assert wanted == {b'["team"]', b'["team","workload"]'}
    kept = [v for v in values if not unread(v, wanted)]
    assert 0 < len(kept) < len(values) / 2  # most records are minutes of other sets
    assert not any(b'"window_s":86400,' in v for v in kept)
    whole.observe(decode_rollup(v) for v in values)
    filtered.observe(decode_rollup(v) for v in kept)
    for watch in (whole, filtered):
        watch.set_mark(0, start + 3 * 3600)

    assert whole.snapshot() == filtered.snapshot()  # the same state, learned alike
    assert whole.advance() == filtered.advance()


def test_an_alert_past_1_mb_goes_out_in_records_that_pause_every_key(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A budget's hard stop on 16,000 keys was one record of 1.07 MB: aiokafka refused it
    (over the 1 MB default) and the stage retried it forever, sending no other alert. It
    goes out as 16 records under 1 MB, which the action stage plans a pause of every key
    from."""
    from spendbrake.actions import Outbox
    from spendbrake.schemas import Config, KeyRule, KeysConfig, decode_alert
    from spendbrake.stages.detect import DetectStage
    from spendbrake.stages.stage import WorkerSettings
    from tests.schemas.test_alert import hard_stop

    topic = make_topic("alerts", 2)
    config = Config.model_validate(
        {"kafka": {"bootstrap_servers": broker.bootstrap_servers, "topics": {"alerts": topic}}}
    )
    stop = hard_stop(16_000)

    async def send() -> None:
        stage = DetectStage(config, WorkerSettings(state_dir=tmp_path))
        stage.dir.mkdir(parents=True)
        stage.producer = stage.new_producer()
        await stage.producer.start()
        stage._alert_partitions = 2
        try:
            stage._send(stop)
            await stage.checkpoint()
        finally:
            await stage.producer.stop()

    asyncio.run(send())
    records = asyncio.run(read_topic(broker.bootstrap_servers, topic, expect=16))
    assert len(records) == 16 and len({partition for partition, _, _ in records}) == 1
    assert all(len(value) < 1024 * 1024 for _, _, value in records)
    box = Outbox(slack_enabled=False)
    keys = KeysConfig(rules=[KeyRule(api_key="*", workload="batch")])
    for _, key, value in records:
        record = decode_alert(value)
        assert key == record.record_key().encode()
        assert box.accept(record, now=1.0, keys=keys)
    assert [t.target for t in box.lanes["gateway"]] == stop.targets


def _alert(id: str, kind: str = "budget", **extra: str) -> Alert:
    return Alert(kind=kind, severity="critical", reason="r", id=id, seq=0, **extra)


def test_a_budgets_stop_and_the_next_periods_resume_go_to_one_partition() -> None:
    """Two incidents (one per period) went to the partitions of their ids: an act stage
    catching up read the next day's resume first (nothing paused yet, nothing undone), then
    the stop, and the keys stayed paused into a period under budget. All of a budget's
    records share a partition now, read in the order they were written; others still go
    by incident."""
    day = 1_795_046_400
    stop = _alert(f"budget/search-daily/{day - 86400}", budget="search-daily", action="pause")
    resume = _alert(f"budget/search-daily/{day}", budget="search-daily", action="resume")
    assert alert_partition(stop, 4) == alert_partition(resume, 4)
    days = [_alert(f"budget/b/{day + i * 86400}", budget="b") for i in range(8)]
    assert len({alert_partition(a, 4) for a in days}) == 1
    anomalies = [_alert(f"anomaly/api_key=k/{day + i * 3600}", "anomaly") for i in range(8)]
    assert len({alert_partition(a, 4) for a in anomalies}) > 1
