"""The spendbrake command as a user runs it."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner

from spendbrake._broker import EmbeddedBroker, free_port
from spendbrake.cli import main
from spendbrake.schemas import decode_event
from tests.kafka_helpers import read_topic_sync

COMMANDS = [
    "broker",
    "simulate",
    "produce",
    "worker",
    "replay",
    "resume",
    "validate",
    "config",
    "demo",
    "report",
    "digest",
]


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_console_script_help() -> None:
    script = str(Path(sys.executable).with_name("spendbrake"))
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage: main " + command in result.output.replace(
        "spendbrake", "main"
    )


def test_replay_help_says_what_its_file_holds() -> None:
    """It named EVENTS_FILE and nothing of its format, nor that '-' reads stdin."""
    text = " ".join(run("replay", "--help").output.split())
    assert "EVENTS_FILE holds usage events, one contract v1 JSON object a line" in text
    assert "'-' reads stdin" in text


def test_simulate_to_file_writes_valid_events(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    result = run(
        "simulate",
        "--start",
        "2026-10-05",
        "--duration",
        "2h",
        "--rate",
        "5",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) > 1000
    events = [decode_event(line) for line in lines]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
    assert f"wrote {len(lines)} events" in result.output


def test_simulate_rejects_a_bad_incident_spec() -> None:
    result = run("simulate", "--duration", "1h", "--inject", "meltdown:team=x", "--out", os.devnull)
    assert result.exit_code == 2 and "--inject" in result.output and "meltdown" in result.output


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate", "-1"),
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--priced-fraction", "2"),
        ("--priced-fraction", "nan"),
        ("--inject", "spike:team=search"),  # spike hits a critical key: search has none
        ("--inject", "batch_runaway:team=search"),
    ],
)
def test_simulate_refuses_a_bad_value_naming_the_option(option: str, value: str) -> None:
    result = run("simulate", "--duration", "1h", option, value, "--out", os.devnull)
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and option in result.output
    assert value in result.output and "Traceback" not in result.output


def test_simulate_names_a_bad_start_in_its_own_terms() -> None:
    result = run("simulate", "--start", "2026-13-01T00:00:00Z", "--out", os.devnull)
    assert result.exit_code == 2 and "Invalid value for --start: must be an RFC 3339" in (
        result.output
    ), result.output  # not "--start: ts: must be...", the event field's name
    # A date alone is quoted as given, not with the time of day added to read it.
    result = run("simulate", "--start", "yesterday", "--out", os.devnull)
    assert result.exit_code == 2 and "Invalid value for --start: 'yesterday' is not a date" in (
        result.output
    ), result.output


def test_simulate_refuses_to_publish_traffic_the_worker_would_dead_letter_for_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hours from now, not paced: the second hour reached the topic more than an hour
    ahead of its records, and the worker dead-lettered it, unsaid. A file takes any span."""
    monkeypatch.setenv("SPENDBRAKE_SPILL_DIR", str(tmp_path / "spill"))
    result = run("simulate", "--duration", "2h", "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2, result.output
    assert "Invalid value for --start/--duration: the traffic would reach 2.0 h past" in (
        result.output.replace("\n", " ")
    )
    assert not (tmp_path / "spill").exists()  # refused before a producer was made
    assert run("simulate", "--duration", "2h", "--out", os.devnull).exit_code == 0


def test_demo_refuses_a_negative_rate_before_starting_anything() -> None:
    result = run("demo", "--rate", "-1")
    assert result.exit_code == 2 and "Invalid value for '--rate'" in result.output


def test_worker_rejects_a_session_timeout_the_broker_would_refuse(tmp_path: Path) -> None:
    # Checked before anything connects: Kafka's default group limits are 6 s to 30 min.
    for value in ("2s", "45m"):
        result = run("worker", "--session-timeout", value, "--state-dir", str(tmp_path))
        assert result.exit_code == 2, result.output
        assert "--session-timeout" in result.output and value in result.output


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("simulate", "--duration", "-1h"),
        ("simulate", "--duration", "nan"),
        ("simulate", "--duration", "2x"),
        ("replay", "--lateness", "-5m"),
        ("worker", "--lateness", "-5m"),
        ("demo", "--duration", "-20s"),
    ],
)
def test_a_bad_duration_is_refused_naming_the_option(
    tmp_path: Path, command: str, option: str, value: str
) -> None:
    # Refused before anything runs: no events made, no broker started or reached.
    rest = {"simulate": ["--out", os.devnull], "replay": [os.devnull], "demo": []}
    result = run(command, option, value, *rest.get(command, ["--state-dir", str(tmp_path)]))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': '{value}'" in result.output


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("worker", "--flush-interval", "-1"),
        ("worker", "--checkpoint-interval", "-1"),
        ("worker", "--reload-interval", "-1"),
        ("worker", "--flush-interval", "nan"),
        ("worker", "--metrics-port", "-3"),
        ("worker", "--metrics-port", "65536"),
        ("broker", "--partitions", "0"),
        ("broker", "--port", "-1"),
        ("report", "--top", "-3"),  # was taken as "all customers but the last 3"
    ],
)
def test_a_negative_interval_port_or_partition_count_is_refused(
    tmp_path: Path, command: str, option: str, value: str
) -> None:
    # Refused before a broker is started or reached (--metrics-port 0 is "off": allowed).
    rest = {"worker": ["--state-dir", str(tmp_path)], "report": ["--period", "2026-10"]}
    result = run(command, option, value, *rest.get(command, []))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and value in result.output


def topic_config(tmp_path: Path, topic: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"kafka:\n  topics:\n    events: {topic}\n")
    return path


def test_simulate_publishes_to_the_broker(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("simcli")
    cfg = topic_config(tmp_path, topic)
    result = run(
        "simulate",
        "--duration",
        "20m",
        "--rate",
        "5",
        "--config",
        str(cfg),
        "--bootstrap",
        broker.bootstrap_servers,
    )
    assert result.exit_code == 0, result.output
    count = int(result.output.split("published ")[1].split()[0])
    assert count > 100
    assert len(read_topic_sync(broker.bootstrap_servers, topic, count)) == count


def test_produce_reports_bad_lines_and_sends_good_ones(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("produce")
    good = {
        "event_id": "g1",
        "ts": "2026-11-23T23:30:00-11:00",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 0,
        "output_tokens": 0,
        "team": "search",
        "feature": "line\u2028sep",
    }
    lines = [
        orjson.dumps(good) + b"\r\n",
        b'{"event_id": "bad-json", \n',
        orjson.dumps({**good, "event_id": "g2"}) + b"\n",
        orjson.dumps({**good, "event_id": "b2", "input_tokens": -5}) + b"\n",
        b"\n",
        orjson.dumps({**good, "event_id": "b3", "ts": "2026-11-23T10:00:00"}) + b"\n",
        b"\xff\xfe\n",
        # Valid as read; past 64 KiB once its 5,000 short secrets are redacted: the run
        # stopped here with a traceback, and g3 was never sent.
        orjson.dumps({**good, "event_id": "b5", "debug": " ".join(["sk-aaaaaaaa"] * 5000)}) + b"\n",
        orjson.dumps({**good, "event_id": "g3", "unknown_field": 1}) + b"\n",
    ]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(lines))
    result = run(
        "produce",
        str(source),
        "--config",
        str(topic_config(tmp_path, topic)),
        "--bootstrap",
        broker.bootstrap_servers,
    )
    assert result.exit_code == 1
    assert f"{source}:2: payload: not valid JSON" in result.output
    assert f"{source}:4: input_tokens: must be >= 0, got -5" in result.output
    assert f"{source}:6: ts: must carry a UTC offset" in result.output
    assert f"{source}:7: payload: not valid JSON: str is not valid UTF-8" in result.output
    assert f"{source}:8: debug: the record is 120" in result.output
    assert "5 bad line(s) of 9" in result.output
    records = read_topic_sync(broker.bootstrap_servers, topic, 3)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["g1", "g2", "g3"]


#: The event the produce runs below publish.
GROWTH_EVENT = {
    "event_id": "e1",
    "ts": 1795428000,
    "provider": "google",
    "model": "gemini-2.5-flash",
    "input_tokens": 5,
    "output_tokens": 5,
    "team": "growth",
}


def produce_after_spill(
    broker: EmbeddedBroker,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spilled: list[bytes],
) -> tuple[Any, Path]:
    """``spendbrake produce`` of ``GROWTH_EVENT`` with ``spilled`` left in the spill file
    by an earlier run; the result and the spill file."""
    monkeypatch.setenv("SPENDBRAKE_SPILL_DIR", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    spill = tmp_path / "spill" / f"spendbrake-sdk-{topic}.jsonl"
    spill.write_bytes(b"".join(line + b"\n" for line in spilled))
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(GROWTH_EVENT) + b"\n")
    config = str(topic_config(tmp_path, topic))
    return run(
        "produce", str(source), "--config", config, "--bootstrap", broker.bootstrap_servers
    ), spill


def test_produce_sends_and_says_what_an_earlier_run_spilled(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run the broker refused left its events in the spill file; the next run delivers
    them too, and says so beside its own count."""
    topic = make_topic("spilled")
    earlier = orjson.dumps({**GROWTH_EVENT, "event_id": "earlier"})
    result, spill = produce_after_spill(broker, topic, tmp_path, monkeypatch, [earlier])
    assert result.exit_code == 0, result.output
    assert "published 1 events" in result.output
    assert f"also sent 1 spilled event(s) from {spill}" in result.output.replace("\n", " ")
    records = read_topic_sync(broker.bootstrap_servers, topic, 2)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["e1", "earlier"]


def test_produce_with_the_broker_down_keeps_every_event_in_the_spill_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No broker at the address: the run's events join what an earlier run spilled, all
    kept for the next run, and the exit code says not everything was sent. (Until
    2026-12-07 it first waited a whole minute for the broker, silent.)"""
    monkeypatch.setenv("SPENDBRAKE_SPILL_DIR", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    spill = tmp_path / "spill" / "spendbrake-sdk-spend.events.jsonl"
    spill.write_bytes(orjson.dumps({**GROWTH_EVENT, "event_id": "earlier"}) + b"\n")
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({**GROWTH_EVENT, "event_id": f"now-{i}"}) + b"\n" for i in range(3))
    )
    result = run("produce", str(source), "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 3, result.output
    assert "published 0 of 3 events; the rest wait in" in result.output.replace("\n", " ")
    ids = sorted(orjson.loads(line)["event_id"] for line in spill.read_bytes().splitlines())
    assert ids == ["earlier", "now-0", "now-1", "now-2"]


def test_produce_with_the_broker_down_says_it_once_in_its_own_words(tmp_path: Path) -> None:
    """A real process (pytest's own log handlers hide it in-process): the Kafka client's
    "Unable connect to ..." came bare before our "broker ... unreachable" line."""
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(GROWTH_EVENT) + b"\n")
    env = {**os.environ, "SPENDBRAKE_SPILL_DIR": str(tmp_path / "spill")}
    address = f"127.0.0.1:{free_port()}"
    cmd = "from spendbrake.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", cmd, "produce", str(source), "--bootstrap", address],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert f"broker {address} unreachable" in done.stderr
    assert "Unable connect" not in done.stderr, done.stderr


def test_a_bootstrap_option_that_is_not_host_port_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--bootstrap kafka:notaport`` went unchecked to the Kafka client: ``produce``
    spilled every event as for an outage and exited 3 ("the broker did not take
    everything")."""
    monkeypatch.setenv("SPENDBRAKE_SPILL_DIR", str(tmp_path / "spill"))
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(GROWTH_EVENT) + b"\n")
    result = run("produce", str(source), "--bootstrap", "kafka:notaport")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--bootstrap': 'kafka:notaport': the port must be a number" in (
        result.output.replace("\n", " ")
    )


def test_produce_counts_and_names_spilled_events_the_broker_refuses(
    broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spilled events the broker refused as too large were set aside in silence: the run
    said "published" and exited 0. It now counts them, names the first five as replay
    names its first rejected lines, and exits 1."""
    topic = make_topic("refused")
    huge = [
        orjson.dumps({**GROWTH_EVENT, "event_id": f"huge-{i}", "debug": "x" * 1_100_000})
        for i in range(6)
    ]
    earlier = orjson.dumps({**GROWTH_EVENT, "event_id": "earlier"})
    result, spill = produce_after_spill(broker, topic, tmp_path, monkeypatch, [*huge, earlier])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert (
        f"6 spilled event(s) refused by the broker as too large, set aside in {spill}.rejected"
        in output
    )
    named = [line.strip() for line in result.output.splitlines() if "bytes" in line]
    assert named == [f'event_id "huge-{i}": {len(huge[i]):,} bytes' for i in range(5)]
    assert "(1 more)" in result.output
    records = read_topic_sync(broker.bootstrap_servers, topic, 2)
    assert sorted(orjson.loads(v)["event_id"] for _, _, v in records) == ["e1", "earlier"]


def test_produce_from_stdin_exits_zero_when_all_lines_are_good(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("stdin")
    event = {**GROWTH_EVENT, "event_id": "s1"}
    result = CliRunner().invoke(
        main,
        [
            "produce",
            "-",
            "--config",
            str(topic_config(tmp_path, topic)),
            "--bootstrap",
            broker.bootstrap_servers,
        ],
        input=orjson.dumps(event) + b"\n",
    )
    assert result.exit_code == 0, result.output
    assert len(read_topic_sync(broker.bootstrap_servers, topic, 1)) == 1


def test_validate_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDBRAKE_CONFIG", raising=False)
    assert run("validate", "examples/spendbrake.yaml").exit_code == 0
    # Named as every other command names it (it said "No such option: --config").
    assert run("validate", "--config", "examples/spendbrake.yaml").exit_code == 0
    result = run("validate")
    assert result.exit_code == 2 and "no config file given" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - name: x\n    amount_usd: -1\n")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3:17: budgets[0].amount_usd: must be greater than 0, got -1" in result.output
    assert result.output.endswith(f"1 problem(s) in {bad}\n"), result.output
    # A YAML syntax error stops the parse: one problem, counted like the others.
    bad.write_text("budgets:\n  - name: x\n    amount_usd: [1\n")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert result.output.startswith(f"{bad}:"), result.output
    assert result.output.endswith(f"1 problem(s) in {bad}\n"), result.output


def doc_config_snippets() -> list[str]:
    """SpendBrake config in the docs: ```yaml blocks (not LiteLLM's own config) and inline
    spans such as `gateway: {kind: litellm, ...}`, which may wrap across lines."""
    sections = "|".join(("kafka", "budgets", "keys", "policies", "slack", "gateway", "digest"))
    found = []
    for page in sorted(Path("docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
        found += [textwrap.dedent(b) for b in blocks if "model_list" not in b]
        spans = re.findall(rf"`((?:{sections}): \{{[^`]*\}})`", text)
        found += [" ".join(span.split()) + "\n" for span in spans]
    return found


def test_validate_reads_spendbrake_config_as_every_command_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "name the config file once" with only the environment naming it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - name: x\n    amount_usd: -1\n")
    monkeypatch.setenv("SPENDBRAKE_CONFIG", str(bad))
    result = run("validate")
    assert result.exit_code == 1 and f"1 problem(s) in {bad}" in result.output
    # A file named on the command line is the one checked.
    result = run("validate", "examples/spendbrake.yaml")
    assert result.exit_code == 0 and "examples/spendbrake.yaml: ok" in result.output


def test_validate_takes_every_config_snippet_in_the_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snippet a reader copies must load: contract.md's inline gateway snippet left
    ${LITELLM_MASTER_KEY} unquoted in a flow mapping, where YAML reads its braces as syntax."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-doc")
    snippets = doc_config_snippets()
    assert any(s.startswith("gateway: {") for s in snippets), snippets
    for n, snippet in enumerate(snippets):
        path = tmp_path / f"snippet{n}.yaml"
        path.write_text(snippet)
        result = run("validate", str(path))
        assert result.exit_code == 0, f"{snippet!r}: {result.output}"


def test_validate_says_a_file_that_sets_nothing_and_reads_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty or commented-out file (a truncated copy, the wrong path) printed a plain
    "ok": deployed, it runs with no budget or policy of its own. A directory was a usage
    error (exit 2) where a missing file is a problem of the file (exit 1)."""
    for text in ("", "# budgets come later\n", "{}\n"):
        (tmp_path / "empty.yaml").write_text(text)
        result = run("validate", str(tmp_path / "empty.yaml"))
        assert result.exit_code == 0
        assert result.output == (
            f"{tmp_path}/empty.yaml: ok, but it sets nothing: every setting is the default\n"
        )
    assert run("validate", "examples/spendbrake.yaml").output == "examples/spendbrake.yaml: ok\n"
    # What the environment overrides the file does not set: not "every setting is the default".
    (tmp_path / "kafka.yaml").write_text("kafka:\n  bootstrap_servers: kafka-0:9092\n")
    monkeypatch.setenv("SPENDBRAKE_BOOTSTRAP", "127.0.0.1:9092")
    assert run("validate", str(tmp_path / "kafka.yaml")).output == (
        f"{tmp_path}/kafka.yaml: ok, but it sets nothing beyond the defaults and "
        "SPENDBRAKE_BOOTSTRAP in the environment\n"
    )
    for path, reason in (
        (tmp_path, "Is a directory"),
        (tmp_path / "no.yaml", "No such file or directory"),
    ):
        result = run("validate", str(path))
        assert (result.exit_code, result.output) == (1, f"{path}: cannot read config: {reason}\n")


def test_config_schema_covers_every_section_and_forbids_unknown_keys(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert run("config", "schema", "-o", str(out)).exit_code == 0
    schema = orjson.loads(out.read_bytes())
    from spendbrake.schemas import Config

    assert set(schema["properties"]) == set(Config.model_fields)
    assert schema["additionalProperties"] is False
    # A typo like hard_stop must fail in the editor too, not only in `spendbrake validate`.
    budget = schema["$defs"]["BudgetConfig"]
    assert budget["additionalProperties"] is False and "hard_stop_at" in budget["properties"]
    # A detector's kind is offered from the registered ones, a typo flagged (any name passed).
    from spendbrake.detectors import available

    assert schema["$defs"]["DetectorConfig"]["properties"]["kind"]["enum"] == available()
    assert orjson.loads(run("config", "schema").output) == schema


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["config", "schema", "-o"], "'-o' / '--output'"),
        (["report", "--period", "2026-10", "--chart"], "'--chart'"),
        (["simulate", "--duration", "1m", "--out"], "'--out'"),
        (["broker", "--log"], "'--log'"),
    ],
)
def test_a_file_to_write_in_a_missing_directory_is_refused_up_front(
    tmp_path: Path, args: list[str], option: str
) -> None:
    # Before the store is read, events are made or a broker is started.
    missing = tmp_path / "missing" / "out"
    result = run(*args, str(missing))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}: '{missing}': directory" in result.output
    assert "does not exist" in result.output and not missing.parent.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_config_schema_reports_a_failed_write_in_one_line() -> None:
    result = run("config", "schema", "-o", "/dev/full")
    assert result.exit_code == 1
    assert result.output == "error: cannot write /dev/full: No space left on device\n"


def test_broker_command_serves_topics_and_stops_on_ctrl_c() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "spendbrake.cli", "broker", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 30
        while "Ctrl-C" not in banner and time.monotonic() < deadline:
            banner += process.stderr.readline()
        assert f"127.0.0.1:{port}" in banner

        async def topics() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
            await admin.start()
            try:
                return await admin.list_topics()
            finally:
                await admin.close()

        assert {
            "spend.events",
            "spend.dlq",
            "spend.rollups",
            "spend.alerts",
            "spend.actions",
        } <= set(asyncio.run(topics()))
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert "broker stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_demo_pauses_the_runaway_and_spares_the_critical_bot() -> None:
    """The README's first command, with a shorter live part: every stage, the fakes."""
    script = str(Path(sys.executable).with_name("spendbrake"))
    done = subprocess.run(
        [script, "demo", "--duration", "6s"], capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stderr.split("published", 1)[-1]
    paused = summary.split("paused at the gateway:")[1].split(".")[0]
    # The looping batch job is paused; the critical bot never is, whatever it spends.
    assert "research-nightly-summarizer" in paused, summary
    assert "support-bot-prod" not in paused, summary


def test_sigterm_stops_the_demo_and_the_broker_it_started(tmp_path: Path) -> None:
    """A `timeout` or process manager ends the demo through its cleanup, as Ctrl-C does:
    killed by SIGTERM's default action, it left its Tansu broker running, orphaned."""
    import re
    import socket

    script = str(Path(sys.executable).with_name("spendbrake"))
    log = tmp_path / "demo.err"
    with log.open("wb") as err:
        demo = subprocess.Popen([script, "demo"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline and demo.poll() is None:
            time.sleep(0.2)
            found = re.search(r"embedded broker on 127\.0\.0\.1:(\d+)", log.read_text())
        assert found is not None, log.read_text()[-2000:]
        time.sleep(3.0)  # the stages are running
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 130, log.read_text()[-2000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert "demo interrupted" in log.read_text()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(found[1])), 1):
        pass


def test_produce_waits_for_the_broker_rather_than_spill_a_file_out_of_order(
    broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A backlog file sent faster than the broker takes it filled the SDK's queue and
    spilled the rest (200k of 1.86M events in a by-hand run), sent after the others, days
    out of order, from a spill folder every producer on the host shares. With the broker
    up, ``produce`` waits for the queue instead: nothing spilled, the file's order kept."""
    from spendbrake._produce import produce_lines
    from spendbrake.sdk import SpendProducer

    topic = make_topic("produce-order")
    lines = [orjson.dumps({**GROWTH_EVENT, "event_id": f"o-{i:05d}"}) + b"\n" for i in range(3000)]
    with SpendProducer(
        broker.bootstrap_servers, topic=topic, spill_path=tmp_path / "spill.jsonl", max_queue=200
    ) as producer:
        report = produce_lines(lines, producer)
        assert report.sent == 3000 and producer.flush(60)
        assert producer.stats.spilled == 0, producer.stats
    records = read_topic_sync(broker.bootstrap_servers, topic, 3000)
    assert len(records) == 3000


def test_a_config_value_that_looks_like_markup_is_shown_not_applied(tmp_path: Path) -> None:
    """The invalid-config message went through rich's markup: "[/bogus]" in a value ended in
    a MarkupError traceback, and "[link=...]" made a hidden hyperlink."""
    config = tmp_path / "c.yaml"
    config.write_text('slack:\n  allowed_users: ["[/bogus] oops"]\n')
    events = tmp_path / "e.jsonl"
    events.write_bytes(orjson.dumps(GROWTH_EVENT) + b"\n")
    result = run("produce", str(events), "--config", str(config))
    assert result.exit_code == 1 and "invalid config" in result.output, result.output
    assert "[/bogus] oops" in result.output and "Traceback" not in result.output
