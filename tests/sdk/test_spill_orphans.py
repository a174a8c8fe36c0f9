"""Spill files of processes that exited, taken over and sent: real processes, real broker.

A second producer on one spill path (a LiteLLM proxy's ``--num_workers``) spills to
``<name>-<pid>.jsonl``; nothing ever sent such a file once its process had exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from spendbrake._broker import EmbeddedBroker
from spendbrake.sdk import SpendProducer
from tests.kafka_helpers import read_topic_sync
from tests.sdk.test_producer import event

#: A worker whose broker is unreachable: every event goes to its spill file; it says
#: which file, then waits to be killed.
SPILLER = """
import sys, time
import orjson
from spendbrake.sdk import SpendProducer
path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
producer = SpendProducer("127.0.0.1:1", spill_path=path, max_queue=0, retry_backoff_s=30)
for i in range(first, first + count):
    producer.emit(orjson.loads(sys.argv[4].replace("ID", str(i))))
print(producer.spill_path, flush=True)
time.sleep(120)
"""

#: A worker that starts on the spill path with the broker up, sends one event of its own,
#: and says how many spilled events it sent.
SENDER = """
import sys
import orjson
from spendbrake.sdk import SpendProducer
bootstrap, topic, path, own = sys.argv[1:5]
producer = SpendProducer(bootstrap, topic=topic, spill_path=path)
producer.emit(orjson.loads(own))
assert producer.flush(60)
assert producer.close(60)
print(orjson.dumps({"replayed": producer.stats.replayed}).decode(), flush=True)
"""


def template() -> str:
    """An event as JSON with ``ID`` where its number goes (event_id and a token count)."""
    return orjson.dumps({**event(0), "event_id": "e-ID", "input_tokens": 10_000}).decode()


def spill_and_die(path: Path, counts: list[int]) -> list[Path]:
    """Real processes on one spill path, started in turn and all alive at once, spill
    ``counts`` events each (numbered on from 0) and are killed with SIGKILL (no atexit, no
    close); returns the file each spilled to."""
    children, files, first = [], [], 0
    try:
        for count in counts:
            child = subprocess.Popen(
                [sys.executable, "-c", SPILLER, str(path), str(first), str(count), template()],
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(child)
            assert child.stdout is not None
            files.append(Path(child.stdout.readline().strip()))
            first += count
    finally:
        for child in children:
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert child.stdout is not None
            child.stdout.close()
    return files


def leftovers(folder: Path, pids_of: list[Path]) -> list[str]:
    """Files of the given spill files still in ``folder`` (data, replaying or lock)."""
    names = {p.name for p in pids_of}
    return sorted(f.name for f in folder.iterdir() if f.name.split(".jsonl")[0] + ".jsonl" in names)


def test_a_live_producer_sends_what_a_killed_worker_on_its_path_spilled(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Two workers beside a live one on one spill path, both killed while the broker was
    out of their reach: the live producer takes their files over and sends every event
    once, and deletes the files."""
    topic = make_topic("orphans-live")
    path = tmp_path / "spill.jsonl"
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=path, claim_interval_s=0.2
    ) as live:
        assert live.spill_path == path
        orphans = spill_and_die(path, [300, 200])
        assert path not in orphans and len(set(orphans)) == 2
        records = read_topic_sync(broker.bootstrap_servers, topic, 500)
        assert live.flush(30)
    ids = sorted(orjson.loads(v)["event_id"] for _, _, v in records)
    assert ids == sorted(f"e-{i}" for i in range(500))  # each once
    assert live.stats.replayed == 500
    assert leftovers(tmp_path, orphans) == []


def test_workers_restarting_together_send_each_dead_workers_spill_once(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Three workers spilled and were killed (one on the path itself, two beside it); two
    new workers start at once on the same path and race for those files. Every event
    arrives once: a file is sent by whoever holds its lock."""
    topic = make_topic("orphans-race")
    path = tmp_path / "spill.jsonl"
    orphans = spill_and_die(path, [400, 400, 400])
    assert orphans[0] == path and len(set(orphans)) == 3
    senders = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SENDER,
                broker.bootstrap_servers,
                topic,
                str(path),
                orjson.dumps(event(0, event_id=f"own-{n}")).decode(),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    replayed = []
    for sender in senders:
        out, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, out
        replayed.append(orjson.loads(out.strip().splitlines()[-1])["replayed"])
    assert sum(replayed) == 1200
    records = read_topic_sync(broker.bootstrap_servers, topic, 1202)
    ids = sorted(orjson.loads(v)["event_id"] for _, _, v in records)
    assert ids == sorted([*(f"e-{i}" for i in range(1200)), "own-0", "own-1"])  # each once
    assert leftovers(tmp_path, orphans[1:]) == []


def test_a_file_of_another_path_named_like_a_workers_is_left_alone(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """``spill-2.jsonl`` can be another producer's own path (topic ``spend.events-2``):
    its lock file says so, and its events stay for it. A file an older SDK left beside
    ours (a lock that records nothing) is ours, and sent."""
    topic = make_topic("orphans-other")
    other = SpendProducer("127.0.0.1:1", spill_path=tmp_path / "spill-2.jsonl", max_queue=0)
    other.emit(event(1, event_id="other-topic"))
    assert not other.close(0)
    older = tmp_path / f"spill-{os.getpid() + 1}.jsonl"
    older.write_bytes(orjson.dumps(event(2, event_id="older-sdk")) + b"\n")
    (tmp_path / (older.name + ".lock")).write_bytes(b"")
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "spill.jsonl"
    ) as producer:
        producer.emit(event(3, event_id="own"))
        assert producer.flush(30)  # and with it, every file it claimed
    records = read_topic_sync(broker.bootstrap_servers, topic, 2)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["older-sdk", "own"]
    assert b"other-topic" in (tmp_path / "spill-2.jsonl").read_bytes()
    assert not older.exists()
