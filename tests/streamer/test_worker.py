"""`spendbrake worker` as a real process on the embedded broker: killed, restarted,
joined and left by other workers, and still exact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bench._worker import worker_command
from spendbrake._broker import EmbeddedBroker, ensure_topics, free_port
from spendbrake.schemas import PriceTable
from tests.kafka_helpers import read_topic_sync
from tests.streamer.kafka_io import publish_raw, read_totals
from tests.streamer.streams import ground_truth, make_stream
from tests.tcp_proxy import TcpProxy

PRICES = PriceTable.default()
#: The issue asks for 200k events; 50k keeps this test near 90 s on 2 cores (100k: ~130 s).
KILL_TEST_EVENTS = int(os.environ.get("SPENDBRAKE_KILL_TEST_EVENTS", "50000"))
CHECKS = [(("team", "feature"), 86400), ((), 3600), (("team",), 60)]


class Topics:
    def __init__(self, make_topic: Callable[..., str]) -> None:
        self.events = make_topic("events", partitions=4)
        self.rollups = make_topic("rollups", partitions=4)
        self.dlq = make_topic("dlq", partitions=1)

    def config(self, tmp_path: Path, group: str) -> Path:
        path = tmp_path / f"{group}.yaml"
        path.write_text(
            # The checks read every team's minutes, not only budgets' (the default).
            "minute_windows: all\n"
            "kafka:\n"
            f"  group_id: {group}\n"
            "  topics:\n"
            f"    events: {self.events}\n    rollups: {self.rollups}\n    dlq: {self.dlq}\n"
            f"    alerts: {self.events}-alerts\n    actions: {self.events}-actions\n"
            f"    traces: {self.events}-traces\n"
        )
        return path


def start_worker(
    broker: EmbeddedBroker | str,
    config: Path,
    state_dir: Path,
    log: Path,
    metrics_port: int = 0,
    stages: str = "ingest",
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command(
            config,
            state_dir,
            "--bootstrap",
            broker if isinstance(broker, str) else broker.bootstrap_servers,
            "--flush-interval",
            "0.2",
            "--checkpoint-interval",
            "0.5",
            "--session-timeout",  # fail over fast after a kill
            "6s",
            "--metrics-port",
            str(metrics_port),
            "--stages",
            stages,
            # The tests' act stages start fresh on alerts published around their start.
            *(("--act-from", "earliest") if "act" in stages and "--act-from" not in extra else ()),
            *extra,
        ),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
    )


@contextmanager
def broker_behind_a_proxy() -> Iterator[tuple[TcpProxy, str]]:
    """An embedded broker with the topics, reached only through a proxy the test can cut."""
    with (
        EmbeddedBroker(advertised_port=free_port()) as broker,
        TcpProxy(broker.port, port=broker.advertised_port) as proxy,
    ):
        bootstrap = f"127.0.0.1:{proxy.port}"
        topics = ["spend.events", "spend.dlq", "spend.rollups", "spend.alerts", "spend.actions"]
        asyncio.run(ensure_topics(bootstrap, [*topics, "spend.traces"], 4))
        yield proxy, bootstrap


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def expected(unique: dict[str, bytes]) -> dict:
    return {check: ground_truth(unique, check[0], check[1], PRICES) for check in CHECKS}


def observed(broker: EmbeddedBroker, topic: str) -> dict:
    totals = asyncio.run(read_totals(broker.bootstrap_servers, topic))
    return {
        (dims, window_s): {k: (v[0], v[1]) for k, v in totals.totals(dims, window_s).items()}
        for dims, window_s in CHECKS
    }


def wait_exact(broker: EmbeddedBroker, topic: str, want: dict, timeout_s: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout_s
    got: dict = {}
    while time.monotonic() < deadline:
        got = observed(broker, topic)
        if got == want:
            return got
        time.sleep(1.0)
    return got


def adoptions(log: Path) -> list[int]:
    """Offsets at which workers of this test adopted partitions, from their log."""
    return adoptions_in(log.read_text() if log.exists() else "")


def adoptions_in(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"adopted at offset (\d+)", text)]


def saved_offsets(state: Path) -> list[int]:
    """The next offset of every partition snapshot under ``state``."""
    return [orjson.loads(p.read_bytes())["next_offset"] for p in state.glob("*/p*/snapshot.json")]


def wait_checkpointed(state: Path, since: float, worker: subprocess.Popen[bytes]) -> None:
    """Until the newest worker has saved a snapshot with progress in it (an offset): a kill
    before that tests only startup."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for path in state.glob("*/p*/snapshot.json"):
            try:
                if path.stat().st_mtime > since and orjson.loads(path.read_bytes())["next_offset"]:
                    return
            except (FileNotFoundError, orjson.JSONDecodeError):
                pass  # replaced while we read it
        assert worker.poll() is None, "worker died"
        time.sleep(0.1)


def test_sigkilled_worker_restarts_exact(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """5% duplicates, 2% late (up to 2 h), 1% malformed; the worker is SIGKILLed 5 times
    mid-stream (each kill lands after it saved a snapshot, so restarts restore one)."""
    topics = Topics(make_topic)
    stream = make_stream(KILL_TEST_EVENTS, seed=11, span_s=2 * 86400)
    want = expected(stream.unique)
    half = KILL_TEST_EVENTS // 2
    config = topics.config(tmp_path, "crash")
    state = tmp_path / "state"
    log = tmp_path / "worker.log"
    rng = random.Random(4)
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records[:half]))
    started = time.time()
    worker = start_worker(broker, config, state, log)
    try:
        for kill in range(5):
            wait_checkpointed(state, started, worker)
            time.sleep(rng.uniform(0.0, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            if kill == 2:
                asyncio.run(
                    publish_raw(broker.bootstrap_servers, topics.events, stream.records[half:])
                )
            started = time.time()
            worker = start_worker(broker, config, state, log)
        got = wait_exact(broker, topics.rollups, want)
    finally:
        stop(worker)
    assert got == want, log.read_text()[-3000:]
    # Restarts resumed from snapshots, not from the beginning.
    assert any(offset > 0 for offset in adoptions(log)), adoptions(log)
    dead = read_topic_sync(broker.bootstrap_servers, topics.dlq, stream.malformed)
    letters = {key: orjson.loads(value) for _, key, value in dead}
    assert len(letters) == stream.malformed
    assert all(letter["reason"].startswith(letter["field"] + ": ") for letter in letters.values())


def test_workers_joining_and_leaving_stay_exact(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = Topics(make_topic)
    stream = make_stream(24_000, seed=12, span_s=86400)
    config = topics.config(tmp_path, "scale")
    state = tmp_path / "state"  # shared by both workers, as on one host or a shared volume
    records = stream.records
    metrics_port = free_port()
    first = start_worker(broker, config, state, tmp_path / "a.log")
    second = None
    try:
        asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, records[:8_000]))
        time.sleep(3)
        second = start_worker(
            broker, config, state, tmp_path / "b.log", metrics_port
        )  # joins: rebalance
        asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, records[8_000:16_000]))
        time.sleep(4)
        stop(first)  # leaves: its partitions move to the second worker
        asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, records[16_000:]))
        got = wait_exact(broker, topics.rollups, expected(stream.unique))
        values = scrape(metrics_port)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert got == expected(stream.unique), (tmp_path / "b.log").read_text()[-3000:]
    assert (
        values["spendbrake_events_valid_total"] > 0 and values["spendbrake_rollups_out_total"] > 0
    )
    assert values["spendbrake_duplicates_total"] > 0
    assert any(k.startswith('spendbrake_dlq_records_total{field="payload"}') for k in values)
    assert values["spendbrake_processing_latency_seconds_count"] > 0
    assert (
        'spendbrake_consumer_lag{partition="0"}' in values
        or 'spendbrake_consumer_lag{partition="1"}' in values
    )


def scrape(port: int) -> dict[str, float]:
    """A worker's /metrics as {'name{labels}': value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def scrape_when(
    port: int, ready: Callable[[dict[str, float]], bool], timeout_s: float = 60.0
) -> dict[str, float]:
    """The first scrape ``ready`` accepts, or the last one after ``timeout_s`` (for the
    caller's assertions to say what was missing). A worker started moments ago on a loaded
    machine may not serve /metrics yet, nor have retried its first effect."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            values = scrape(port)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if ready(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.2)


def wait_adopted(log: Path, partitions: int = 4) -> None:
    """Until the worker logs that it owns every input partition (or 60 s)."""
    deadline = time.monotonic() + 60
    while log.read_text().count(" adopted at ") < partitions and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_hourly_totals(bootstrap: str, want: dict, timeout_s: float) -> dict:
    """The global hourly (cost, calls) on spend.rollups, once equal to ``want`` (or at timeout)."""
    deadline = time.monotonic() + timeout_s
    got: dict = {}
    while time.monotonic() < deadline:
        totals = asyncio.run(read_totals(bootstrap, "spend.rollups"))
        got = {k: (v[0], v[1]) for k, v in totals.totals((), 3600).items()}
        if got == want:
            break
        time.sleep(1.0)
    return got


def test_worker_survives_a_network_outage(tmp_path: Path) -> None:
    """Cut the network between the worker and the broker for longer than a session, while
    rollups are in flight; then republish every event (a producer retrying blindly).

    The broker keeps its data, as Apache Kafka does: after the cut every window of the
    whole stream must carry exact totals: nothing lost while sends failed, nothing
    doubled by aiokafka's own retries of batches caught by the cut or by the
    republished events. (A memory-only broker that restarts loses its topics; and Tansu
    was measured to acknowledge writes it then loses when a topic is recreated while
    producers retry, so a broker restart cannot be a test of ours: see docs/worker.md.)
    """
    with broker_behind_a_proxy() as (proxy, bootstrap):
        stream = make_stream(6_000, seed=13, span_s=3 * 3600, dup_rate=0, late_rate=0, bad_rate=0)
        old, new = stream.records[:3_000], stream.records[3_000:]
        config = tmp_path / "cfg.yaml"
        config.write_text("kafka:\n  group_id: outage\n")
        worker = start_worker(bootstrap, config, tmp_path / "state", tmp_path / "w.log")
        try:
            wait_adopted(tmp_path / "w.log")
            asyncio.run(publish_raw(bootstrap, "spend.events", old))
            time.sleep(1.0)  # cut while the worker is mid-stream
            proxy.cut()
            time.sleep(8)  # longer than the 6 s session: the group forgets the worker
            assert worker.poll() is None, "the worker must ride out the outage"
            proxy.restore()
            asyncio.run(publish_raw(bootstrap, "spend.events", old + new))
            want = ground_truth(stream.unique, (), 3600, PRICES)
            # A send caught by the cut can take aiokafka's request timeout (40 s) to be retried.
            got = wait_hourly_totals(bootstrap, want, 150)
            assert worker.poll() is None
        finally:
            stop(worker)
    assert got == want, (tmp_path / "w.log").read_text()[-3000:]


def test_stop_during_an_outage_is_prompt_and_the_restart_exact(tmp_path: Path) -> None:
    """SIGTERM while the broker is unreachable: every stage (a store stage still starting
    up too) gives up waiting on the broker, and the process exits cleanly instead of
    waiting for aiokafka's request timeouts (about 50 s; a stage still seeking its start
    offsets waited until the broker came back). What was not checkpointed is redone after
    the restart: the totals are exact."""
    with broker_behind_a_proxy() as (proxy, bootstrap):
        stream = make_stream(3_000, seed=17, span_s=3 * 3600, dup_rate=0, late_rate=0, bad_rate=0)
        config = tmp_path / "cfg.yaml"
        config.write_text("kafka:\n  group_id: stop-outage\n")
        log = tmp_path / "w.log"
        stages = "ingest,detect,act,store"
        worker = start_worker(bootstrap, config, tmp_path / "state", log, stages=stages)
        try:
            wait_adopted(log)
            asyncio.run(publish_raw(bootstrap, "spend.events", stream.records))
            time.sleep(1.0)
            proxy.cut()
            time.sleep(2.0)
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)  # a hang guard, not a speed check
            assert worker.returncode == 0, log.read_text()[-3000:]
            # The ingest gave up on the broker rather than waiting for aiokafka's timeouts.
            assert re.search(
                r"(final checkpoint|stopped during a checkpoint).*within", log.read_text()
            )
            proxy.restore()
            worker = start_worker(bootstrap, config, tmp_path / "state", log, stages=stages)
            want = ground_truth(stream.unique, (), 3600, PRICES)
            got = wait_hourly_totals(bootstrap, want, 120)
        finally:
            stop(worker)
    assert got == want, log.read_text()[-3000:]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDBRAKE_BOOTSTRAP", raising=False)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    os.environ.pop("SPENDBRAKE_CONFIG", None)


def test_a_partition_locked_by_another_process_waits_then_counts_exactly(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A partition whose state another process still holds stays paused (the other three
    are counted meanwhile, and the worker stays in the group) and is counted, exactly, once
    the lock is let go."""
    from spendbrake.streamer import PartitionStore

    topics = Topics(make_topic)
    stream = make_stream(4_000, seed=31, span_s=6 * 3600)
    config = topics.config(tmp_path, "locked")
    state = tmp_path / "state"
    log = tmp_path / "worker.log"
    holder = PartitionStore(state, topics.events, 2)
    asyncio.run(holder.acquire())  # this test process holds partition 2's state
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records))
    worker = start_worker(broker, config, state, log)
    try:
        wait_adopted(log, partitions=3)
        assert worker.poll() is None, log.read_text()[-3000:]
        assert "partition 2 adopted" not in log.read_text()
        wait_checkpointed(state, 0.0, worker)
        assert not (state / topics.events / "p2" / "snapshot.json").exists()
        holder.release()
        got = wait_exact(broker, topics.rollups, expected(stream.unique))
    finally:
        holder.release()
        stop(worker)
    assert got == expected(stream.unique), log.read_text()[-3000:]
    assert log.read_text().count("partition 2 adopted") == 1


def wait_metric(port: int, name: str, at_least: float, timeout_s: float = 60.0) -> dict:
    """A worker's metrics once ``name`` reaches ``at_least`` (or at timeout)."""
    deadline = time.monotonic() + timeout_s
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            values = scrape(port)
            if values.get(name, 0) >= at_least:
                break
        time.sleep(0.3)
    return values


def test_a_restarted_worker_counts_only_what_it_reads_itself(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The ingest counters are the process' own, as Prometheus expects: a restart does not
    show every record and dead letter the partitions ever had as new ones (until 2026-12-07
    each adopted partition's saved counts were added on adoption: ``increase()`` of the DLQ
    counter fired after every restart, and a partition adopted twice was counted twice)."""
    topics = Topics(make_topic)
    stream = make_stream(2_000, seed=21, span_s=3600)
    config = topics.config(tmp_path, "restart-metrics")
    state, log = tmp_path / "state", tmp_path / "w.log"
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records))
    port = free_port()
    worker = start_worker(broker, config, state, log, port)
    try:
        first = wait_metric(port, "spendbrake_records_total", len(stream.records))
    finally:
        stop(worker)
    assert first["spendbrake_records_total"] == len(stream.records), first
    junk = [b"not json"] * 300
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, junk))
    worker = start_worker(broker, config, state, log, port)
    try:
        wait_adopted(log, partitions=8)  # both runs' adoptions are in the one log
        values = wait_metric(port, "spendbrake_records_total", len(junk))
    finally:
        stop(worker)
    assert values["spendbrake_records_total"] == len(junk), values
    assert values['spendbrake_dlq_records_total{field="payload"}'] == len(junk), values
    assert values["spendbrake_events_valid_total"] == 0, values


def test_a_worker_reports_lag_only_for_the_partitions_it_owns(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A second worker joins and takes half the partitions: the first one's
    ``spendbrake_consumer_lag`` no longer lists them (it kept their last value for good)."""
    topics = Topics(make_topic)
    stream = make_stream(2_000, seed=22, span_s=3600)
    config = topics.config(tmp_path, "lag-owned")
    state = tmp_path / "state"
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records))
    port = free_port()
    first = start_worker(broker, config, state, tmp_path / "a.log", port)
    second = None
    try:
        wait_metric(port, "spendbrake_records_total", len(stream.records))
        second = start_worker(broker, config, state, tmp_path / "b.log")
        wait_adopted(tmp_path / "b.log", partitions=2)
        asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, [b"not json"] * 40))
        deadline = time.monotonic() + 30
        lags: list[str] = []
        while time.monotonic() < deadline:
            lags = [k for k in scrape(port) if k.startswith("spendbrake_consumer_lag{")]
            if len(lags) == 2:
                break
            time.sleep(0.3)
        taken = re.findall(r"partition (\d+) adopted", (tmp_path / "b.log").read_text())
    finally:
        if second is not None:
            stop(second)
        stop(first)
    assert len(taken) == 2, taken
    assert sorted(lags) == sorted(
        f'spendbrake_consumer_lag{{partition="{p}"}}' for p in {"0", "1", "2", "3"} - set(taken)
    ), lags


def test_metrics_are_served_on_the_address_asked_for(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """``--metrics-host``: in a container (docker-compose.yml) /metrics must listen beyond
    the container's own loopback, where no Prometheus can reach it; until 2026-12-07 it
    was always 127.0.0.1. Here another loopback address stands in for 0.0.0.0."""
    topics = Topics(make_topic)
    config = topics.config(tmp_path, "metrics-host")
    port, log = free_port(), tmp_path / "w.log"
    worker = start_worker(
        broker, config, tmp_path / "state", log, port, extra=("--metrics-host", "127.0.0.2")
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while not text and time.monotonic() < deadline and worker.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).text
            time.sleep(0.3)
    finally:
        stop(worker)
    assert "spendbrake_records_total" in text, log.read_text()[-2000:]


async def recreate_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Delete ``topic`` and create it again, empty: what a restart of the embedded broker
    does to every topic (it keeps them in memory only)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        # Created again only once it is gone: Tansu acknowledges and drops what is
        # produced to a topic that does not exist.
        while topic in await admin.list_topics():
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    assert await ensure_topics(bootstrap, [topic], partitions) == [topic]


def test_a_topic_deleted_and_created_again_is_read_from_its_start(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The worker's snapshots are at about offset 500 of each partition; while it is down
    the events topic is deleted and created again, and 100 or so new events go to each
    partition. Each saved offset is past its partition's end: the worker says so, counts
    it, and reads the new events from offset 0. It used to seek to the saved offset, where
    Tansu answers with no records (Apache Kafka with OFFSET_OUT_OF_RANGE, which aiokafka
    resets to earliest at INFO): the new events were never counted, and nothing said so."""
    topics = Topics(make_topic)
    stream = make_stream(2_400, seed=41, span_s=2 * 3600, dup_rate=0, late_rate=0, bad_rate=0)
    before, after = stream.records[:2_000], stream.records[2_000:]
    config = topics.config(tmp_path, "recreated")
    state, log, port = tmp_path / "state", tmp_path / "w.log", free_port()
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, before))
    worker = start_worker(broker, config, state, log, port)
    try:
        wait_metric(port, "spendbrake_records_total", len(before))
    finally:
        stop(worker)  # its final checkpoint saves every partition at its end
    asyncio.run(recreate_topic(broker.bootstrap_servers, topics.events, 4))
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, after))
    worker = start_worker(broker, config, state, log, port)
    try:
        want = expected(stream.unique)
        got = wait_exact(broker, topics.rollups, want)
        values = scrape(port)
    finally:
        stop(worker)
    text = log.read_text()
    assert got == want, text[-3000:]
    assert text.count("is beyond the log end") == 4, text[-3000:]
    assert "the topic was deleted and re-created" in text
    gaps = {
        k: v
        for k, v in values.items()
        if k.startswith("spendbrake_saved_offsets_out_of_range_total{")
    }
    assert len(gaps) == 4 and set(gaps.values()) == {1.0}, gaps
    assert all('reason="beyond_log_end"' in k and 'stage="ingest"' in k for k in gaps), gaps


def test_a_worker_restarted_at_the_end_of_its_partitions_reads_on_from_there(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A worker stopped once it has read every event saves each partition at its end;
    restarted, it adopts each at that offset. On Tansu, ListOffsets answers the last record
    batch's first offset plus one, below the saved offset whenever that batch held more than
    one record (``publish_raw`` batches them): each partition was taken for a re-created
    topic and read again from 0, and with events over more than the 7-day dedupe memory
    the older ones went to the DLQ, at every restart and rebalance."""
    topics = Topics(make_topic)
    stream = make_stream(2_000, seed=43, span_s=9 * 86400, dup_rate=0, late_rate=0, bad_rate=0)
    config = topics.config(tmp_path, "at-the-end")
    state, log, port = tmp_path / "state", tmp_path / "w.log", free_port()
    asyncio.run(publish_raw(broker.bootstrap_servers, topics.events, stream.records))
    worker = start_worker(broker, config, state, log, port)
    try:
        wait_metric(port, "spendbrake_records_total", len(stream.records))
    finally:
        stop(worker)  # its final checkpoint saves every partition at its end
    saved = sorted(saved_offsets(state))
    assert sum(saved) == len(stream.records), saved
    first = log.read_text()
    worker = start_worker(broker, config, state, log, port)
    try:
        wait_adopted(log, partitions=8)
    finally:
        stop(worker)
    text = log.read_text()[len(first) :]
    assert "is beyond the log end" not in text, text[-3000:]
    assert sorted(adoptions_in(text)) == saved, text[-3000:]
