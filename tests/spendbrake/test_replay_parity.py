"""``spendbrake replay`` prints the alerts a live worker sends on the same events.

One simulated file (four days of history, then a runaway agent key that an anomaly pauses
and that takes its team's daily budget through its thresholds, hard stop and burn rates)
goes through ``spendbrake replay`` and through a real worker (ingest and detect stages)
on the embedded broker, published to an events topic of one partition.

What is compared, and why only that:

- **The tail, played at a pace.** The history is published at once: the worker reads it
  as a backlog, whose hours are judged as they close, with no early looks (by design:
  docs/detectors.md, "Replay and the live worker"), so its alerts are not replay's. The
  tail is then published one early-look step at a time, each ending on the line where
  replay's own step ends (``replay_lines``'s progress), and the next step is sent only
  once the detect stage's watermark has reached it: the worker is caught up throughout,
  as a live one that keeps up with its traffic, and looks where replay looks (at real pace
  a live look comes at the first mark past each boundary: seconds later, which this test
  leaves out). Each step goes out in two halves, the ingest flushing the first before the
  second arrives, as traffic trickles in. Every alert record either side dates from the
  tail's first watermark on is compared; after a backlog the recent-rate window waits for
  three looks in a row, so the runaway starts half an hour into the tail.
- **Every field, bar one accepted difference.** The detect stage checks budgets after
  every fetch, on the rollups it has read past its watermark (the ingest sends a watermark
  mark only at a checkpoint, after the rollups before it), and at a mark inside a step: a
  budget record (``budget``, ``burn_rate``, ``projection``) may be dated live as early as
  replay's look one early-look step (``SpendWatch.peek_s``, 5 minutes) before the one
  replay dates it at. Its ``detected_at`` and window fields may then be earlier by up to
  that, live only, and what it measured by then (``observed_usd``, ``expected_usd``,
  ``score``, ``reason``, which names the time) may differ with them. Everything else must
  be equal, record by record (key ``id#seq``).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from spendbrake._broker import EmbeddedBroker
from spendbrake._config_loader import load_config
from spendbrake._replay import replay_lines
from spendbrake._simulate import parse_incident, simulate
from spendbrake.cli import main
from spendbrake.detectors import SpendWatch
from spendbrake.schemas import Config, KafkaConfig, TopicsConfig, decode_event, format_ts, parse_ts
from spendbrake.stages import IngestStage, Worker, WorkerSettings
from tests.kafka_helpers import read_topic
from tests.streamer.kafka_io import event_key

START = parse_ts("2026-09-07T00:00:00Z")  # a Monday
#: Read as a backlog: four days (the baseline learns two), to 00:30 of the fifth.
HISTORY_S = 4 * 86400 + 1800
#: Played a step at a time: the runaway's first two hours and a quarter.
TAIL_S = 2.25 * 3600
RUNAWAY = "runaway:api_key=search-agent-prod,x=150,start=+96.75h,duration=3h"
#: The search team spends $40-45 on a normal day of this traffic: before the runaway no
#: threshold but the first is crossed, and no hard stop (whose resume would open the tail).
CONFIG = """\
detectors:
  - kind: baseline
    params: {season: 24, warmup_n: 48}
budgets:
  - name: search-daily
    scope: {team: search}
    amount_usd: 60
    period: day
    alert_at: [0.5, 0.9]
    hard_stop_at: 1.2
keys:
  rules:
    - {api_key: 'search-*', workload: batch}
policies:
  - {match: {workload: batch}, action: pause, confirm_s: 900}
"""
BUDGET_KINDS = frozenset({"budget", "burn_rate", "projection"})
#: What a budget record dated at an earlier look measured there.
MEASURED = frozenset({"observed_usd", "expected_usd", "score", "reason"})
#: Minute-aligned times that follow ``detected_at`` (a burn rate's windows end there).
WINDOWS = ("window_start", "window_end")
#: A guard against a hang (a stage that stopped), not a timing: each wait's limit.
STALL_S = 120.0


def test_replay_and_a_live_worker_send_the_same_alerts(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, config_path = tmp_path / "events.jsonl", tmp_path / "spendbrake.yaml"
    config_path.write_text(CONFIG)
    runaway = parse_incident(RUNAWAY)
    with events.open("wb") as out:
        for event in simulate(
            START, HISTORY_S + TAIL_S, rate_per_s=0.2, seed=3, incidents=[runaway]
        ):
            out.write(event.to_json() + b"\n")
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    replayed = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]

    # Where replay's steps end: the line count at each look, and the watermark there.
    lines = events.read_bytes().splitlines()
    config = load_config(config_path)
    steps: list[int] = []
    for _ in replay_lines(lines, config, progress=steps.append):
        pass
    watermarks = list(itertools.accumulate((decode_event(line).ts for line in lines), max))
    looks = [watermarks[end - 1] for end in steps]
    first = bisect.bisect_left(looks, START + HISTORY_S)  # the tail's first step

    topics = TopicsConfig(
        events=make_topic("events", partitions=1),
        rollups=make_topic("rollups", partitions=2),
        alerts=make_topic("alerts", partitions=2),
        dlq=make_topic("dlq", partitions=1),
        traces=make_topic("traces", partitions=1),
        actions=make_topic("actions", partitions=1),
    )
    kafka = KafkaConfig(
        bootstrap_servers=broker.bootstrap_servers, topics=topics, group_id=topics.events
    )
    live_config = config.model_copy(update={"kafka": kafka})
    live = asyncio.run(_live(live_config, lines, steps[first:], watermarks, tmp_path / "state"))

    tail_from = looks[first]
    compared = [a for a in replayed if parse_ts(a["detected_at"]) >= tail_from]
    # The tail holds what the comparison is for: an anomaly and its pause, budget
    # thresholds, a hard stop and burn rates.
    assert {(a["kind"], a["action"]) for a in compared} >= {
        ("anomaly", "alert"),
        ("anomaly", "pause"),
        ("budget", "alert"),
        ("budget", "pause"),
        ("burn_rate", "pause"),
    }, compared
    tail = [a for a in live if parse_ts(a["detected_at"]) >= tail_from]
    problems = differences(compared, tail, looks, SpendWatch(config).peek_s)
    assert not problems, "replay and the live worker differ:\n" + "\n".join(problems)


def test_the_comparison_lets_a_budget_record_be_one_look_early_live_and_nothing_else() -> None:
    """``differences`` itself: what it lets through and what it reports."""
    looks = [parse_ts(f"2026-09-11T01:{m:02d}:00.5Z") for m in (10, 15, 20)]

    def alert(kind: str, at: float, **fields: Any) -> dict[str, Any]:
        return {
            "id": kind,
            "seq": 0,
            "kind": kind,
            "detected_at": format_ts(at),
            "reason": "r",
        } | fields

    burn = alert("burn_rate", looks[2], window_end="2026-09-11T01:20:00.000000Z")
    one_look = alert("burn_rate", looks[1], window_end="2026-09-11T01:15:00.000000Z", reason="s")
    assert differences([burn], [one_look], looks, 300.0) == []
    two_looks = alert("burn_rate", looks[0], window_end="2026-09-11T01:10:00.000000Z")
    later = alert("burn_rate", looks[2] + 1, window_end="2026-09-11T01:20:00.000000Z")
    anomaly, early = alert("anomaly", looks[2]), alert("anomaly", looks[1], reason="s")
    assert len(differences([burn], [two_looks], looks, 300.0)) == 2
    assert differences([burn], [later], looks, 300.0) == [
        f"burn_rate#0 detected_at: replay {format_ts(looks[2])!r}, live {format_ts(looks[2] + 1)!r}"
    ]
    assert len(differences([anomaly], [early], looks, 300.0)) == 2  # its time and reason
    assert differences([burn | {"targets": ["k"]}], [one_look | {"targets": []}], looks, 300.0)
    assert differences([burn], [], looks, 300.0) == ["burn_rate#0: replay only: " + _brief(burn)]


async def _live(
    config: Config, lines: list[bytes], steps: list[int], watermarks: list[float], state: Path
) -> list[dict[str, Any]]:
    """Run ingest and detect on ``lines``: up to the first of ``steps`` at once, then step
    by step, each once the detect stage has judged the one before. Returns every alert
    record on the alerts topic."""
    settings = WorkerSettings(
        state_dir=state,
        flush_interval_s=0.05,
        checkpoint_interval_s=0.1,
        session_timeout_s=6.0,  # the group forms in seconds
        progress_s=0.0,
    )
    worker = Worker(config, settings, ["ingest", "detect"])
    running = asyncio.create_task(worker.run())
    kafka = config.kafka
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    ingest, detect = worker.ingest, worker.detect
    try:
        sent = 0
        for end in steps:
            if sent:
                # Half a step first, flushed by the ingest before the rest arrives, as
                # traffic trickles in: the detect stage reads rollups past its watermark.
                half, flushed = (sent + end) // 2, ingest.rollups_out
                await _publish(producer, kafka.topics.events, lines[sent:half])
                await _until(partial(_flushed, ingest, half, flushed), running)
                sent = half
            await _publish(producer, kafka.topics.events, lines[sent:end])
            sent = end
            # The stage has taken in the mark of the step's last line: the next step's
            # rollups reach it in a later fetch, after it judged this one.
            await _until(partial(_judged, detect.watch, watermarks[end - 1]), running)
        # Every alert of the last step is acknowledged once a checkpoint has saved its
        # watermark (``DetectStage.checkpoint`` waits for the alerts first).
        saved = state / "detect" / "snapshot.json"
        await _until(lambda: _saved_watermark(saved) >= watermarks[sent - 1], running)
        records = await read_topic(kafka.bootstrap_servers, kafka.topics.alerts, detect.alerts_out)
        return _one_per_key(records)
    finally:
        await producer.stop()
        worker.stop()
        await running


async def _publish(producer: AIOKafkaProducer, topic: str, lines: list[bytes]) -> None:
    """The lines in order, keyed by event id as the SDK sends them, in record batches."""
    sends = []
    batch = producer.create_batch()
    for line in lines:
        if batch.append(key=event_key(line), value=line, timestamp=None) is None:
            sends.append(await producer.send_batch(batch, topic, partition=0))
            batch = producer.create_batch()
            batch.append(key=event_key(line), value=line, timestamp=None)
    sends.append(await producer.send_batch(batch, topic, partition=0))
    await asyncio.gather(*sends)


async def _until(condition: Callable[[], bool], running: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + STALL_S
    while not condition():
        if running.done():
            await running  # a stage failed: its error, not a wait
            raise AssertionError("the worker stopped")
        assert time.monotonic() < deadline, f"the worker made no progress in {STALL_S:.0f} s"
        await asyncio.sleep(0.005)


def _flushed(ingest: IngestStage, offset: int, rollups_out: int) -> bool:
    """The ingest has read up to ``offset`` and sent rollups since it had sent ``rollups_out``."""
    processor = ingest.processors.get(0)
    read = processor is not None and (processor.next_offset or 0) >= offset
    return read and ingest.rollups_out > rollups_out


def _judged(watch: SpendWatch, watermark: float) -> bool:
    return watch.now >= watermark and not watch.behind


def _saved_watermark(path: Path) -> float:
    """The watermark of the detect stage's last checkpoint."""
    try:
        now = orjson.loads(path.read_bytes())["watch"]["clock"]["now"]
    except FileNotFoundError:
        return -math.inf
    return -math.inf if now is None else float(now)


def _one_per_key(records: list[tuple[int, bytes | None, bytes]]) -> list[dict[str, Any]]:
    """The alert records, one per key (a record sent again after a retry is the same)."""
    by_key: dict[bytes | None, bytes] = {}
    for _, key, value in records:
        assert by_key.setdefault(key, value) == value, f"two records under {key!r}"
    return [orjson.loads(value) for value in by_key.values()]


def differences(
    replayed: list[dict[str, Any]], live: list[dict[str, Any]], looks: list[float], step_s: float
) -> list[str]:
    """One line per record on one side only and per field that differs, except for a budget
    record dated live at a check no earlier than replay's look one step (``step_s``) before
    the one replay dates it at (``looks``: replay's watermarks, in order): its windows
    move with it, and what it measured there differs."""

    def by_key(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {f"{a['id']}#{a['seq']}": a for a in alerts}

    ours, theirs = by_key(replayed), by_key(live)
    problems = [f"{key}: replay only: {_brief(ours[key])}" for key in ours.keys() - theirs.keys()]
    problems += [f"{key}: live only: {_brief(theirs[key])}" for key in theirs.keys() - ours.keys()]
    for key in sorted(ours.keys() & theirs.keys()):
        ours_, live_ = ours[key], theirs[key]
        fields = {f for f in ours_.keys() | live_.keys() if ours_.get(f) != live_.get(f)}
        if ours_["kind"] in BUDGET_KINDS and _one_look_early(ours_, live_, looks, step_s):
            fields -= {"detected_at", *WINDOWS, *MEASURED}
        problems += [
            f"{key} {f}: replay {ours_.get(f)!r}, live {live_.get(f)!r}" for f in sorted(fields)
        ]
    return problems


def _one_look_early(
    ours: dict[str, Any], live: dict[str, Any], looks: list[float], step_s: float
) -> bool:
    """``live`` is dated before ``ours``, at or after replay's look one step before, and
    its windows earlier by no more than a check there moves them."""
    at, live_at = parse_ts(ours["detected_at"]), parse_ts(live["detected_at"])
    i = bisect.bisect_left(looks, at)
    if not (0 < i < len(looks) and looks[i] == at):
        return False  # replay dates every record at a look
    before = looks[i - 1]
    if at // step_s - before // step_s != 1 or not before <= live_at < at:
        return False
    moved = (at // 60 - before // 60) * 60  # what the earlier check moves a minute by
    for field in WINDOWS:
        if ours.get(field) != live.get(field):
            shift = parse_ts(ours[field]) - parse_ts(live[field])
            if not 0 < shift <= moved:
                return False
    return True


def _brief(alert: dict[str, Any]) -> str:
    return (
        f"{alert['kind']} {alert.get('severity')} {alert.get('action')} at "
        f"{alert['detected_at']}: {alert.get('reason')}"
    )
