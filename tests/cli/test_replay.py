"""`spendbrake replay` on a simulated file: alert records on stdout, a summary on stderr."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from spendbrake._simulate import parse_incident, simulate
from spendbrake.cli import main
from spendbrake.schemas import parse_ts

START = parse_ts("2026-09-07T00:00:00Z")


def _files(tmp_path: Path) -> tuple[Path, Path]:
    runaway = parse_incident("runaway:team=search,x=40,start=+3d,duration=3h")
    events = tmp_path / "events.jsonl"
    with open(events, "wb") as out:
        for event in simulate(START, 4 * 86400, rate_per_s=0.1, seed=3, incidents=[runaway]):
            out.write(event.to_json() + b"\n")
        out.write(b'{"event_id": "x", "ts": "not a time"}\n')  # counted as rejected, not a crash
    config = tmp_path / "config.yaml"
    config.write_text(
        "detectors:\n  - kind: baseline\n    params: {season: 24, warmup_n: 48}\n"
        "budgets:\n  - name: all\n    amount_usd: 20\n    period: day\n"
    )
    return events, config


def test_replay_prints_alert_records(tmp_path: Path) -> None:
    events, config = _files(tmp_path)
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    alerts = [orjson.loads(line) for line in lines]
    assert alerts and all(
        set(a) >= {"kind", "scope", "window_start", "observed_usd", "severity", "action", "id"}
        for a in alerts
    )
    runaway = [a for a in alerts if a["kind"] == "anomaly"]
    assert len({a["id"] for a in runaway}) == 1
    assert runaway[0]["scope"]["api_key"].startswith("search-")
    assert START + 3 * 86400 <= parse_ts(runaway[0]["detected_at"]) < START + 3 * 86400 + 3600
    fired = [(a["id"], a["threshold"]) for a in alerts if a["kind"] == "budget"]
    assert fired and len(fired) == len(set(fired))  # each threshold once per day
    assert "1 rejected" in result.stderr and "rejected for ts: 1" in result.stderr


def test_replay_table_format(tmp_path: Path) -> None:
    events, config = _files(tmp_path)
    result = CliRunner().invoke(
        main, ["replay", str(events), "--config", str(config), "--format", "table"]
    )
    assert result.exit_code == 0
    assert "alerts the engine would have sent" in result.stdout
    # An anomaly caught inside its hour is set against the usual spend by then, as in
    # Slack, not the whole hour's ("$2.81 vs $3.45" read as no problem).
    jsonl = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    early = [
        a
        for a in map(orjson.loads, jsonl.stdout.splitlines())
        if a["kind"] == "anomaly"
        and parse_ts(a["window_start"]) < parse_ts(a["detected_at"]) < parse_ts(a["window_end"])
    ]
    assert early and "by then" in result.stdout


def test_replay_reads_a_production_config_without_its_brokers_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replay reads no Kafka, Slack or gateway: their ``${VAR}`` unset on the machine
    replaying (and a bootstrap override in the environment) do not stop it; an unset one in
    a section it reads does, and ``validate`` still checks every section."""
    events, _ = _files(tmp_path)
    for var in ("SB_TEST_KAFKA", "SB_TEST_TOKEN", "SB_TEST_URL", "SB_TEST_AMOUNT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SPENDBRAKE_BOOTSTRAP", "localhost:99999")
    config = tmp_path / "production.yaml"
    sections = (
        "kafka:\n  bootstrap_servers: ${SB_TEST_KAFKA}\n"
        "slack:\n  token: ${SB_TEST_TOKEN}\n"
        "gateway:\n  kind: litellm\n  url: ${SB_TEST_URL}\n"
    )
    config.write_text(sections + "budgets:\n  - name: all\n    amount_usd: 20\n    period: day\n")
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert any(orjson.loads(line)["kind"] == "budget" for line in result.stdout.splitlines())
    checked = CliRunner().invoke(main, ["validate", str(config)])
    assert checked.exit_code == 1 and "SB_TEST_TOKEN is not set" in checked.output
    config.write_text(sections + "budgets:\n  - name: all\n    amount_usd: ${SB_TEST_AMOUNT}\n")
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    assert result.exit_code == 1 and "SB_TEST_AMOUNT is not set" in result.output
    assert "SB_TEST_TOKEN" not in result.output


def test_replay_reads_a_gzipped_file_as_its_lines(tmp_path: Path) -> None:
    """An export kept as .jsonl.gz: the same alerts as the file itself (every line was
    rejected as not UTF-8)."""
    events, config = _files(tmp_path)
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(events.read_bytes()))
    outputs = []
    for path in (events, packed):
        result = CliRunner().invoke(main, ["replay", str(path), "--config", str(config)])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert outputs[0] and outputs[1] == outputs[0]


def test_replay_table_of_no_alert_says_so(tmp_path: Path) -> None:
    """An empty table frame read as a table that failed to fill."""
    events, _ = _files(tmp_path)
    config = tmp_path / "quiet.yaml"
    config.write_text("detectors: []\n")
    result = CliRunner().invoke(
        main, ["replay", str(events), "--config", str(config), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no alerts: this config would have sent nothing")
    assert "0 alert(s)" in result.stderr


def test_replay_tries_a_pause_that_waits_for_the_anomaly_to_last(tmp_path: Path) -> None:
    """An operator tries ``confirm_s`` on history: the runaway's first alert holds its key
    (the table says so), a follow-up at least that long after pauses it, once."""
    events, config = _files(tmp_path)
    config.write_text(
        config.read_text()
        + "keys:\n  rules:\n    - {api_key: 'search-*', workload: batch}\n"
        + "policies:\n  - {match: {workload: batch}, action: pause, confirm_s: 900}\n"
    )
    args = ["replay", str(events), "--config", str(config)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    alerts = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    runaway = [a for a in alerts if a["kind"] == "anomaly"]
    first, pauses = runaway[0], [a for a in runaway if a["action"] == "pause"]
    key = first["scope"]["api_key"]
    assert first["action"] == "alert" and list(first["held_keys"]) == [key]
    assert len(pauses) == 1 and pauses[0]["targets"] == [key] and pauses[0]["id"] == first["id"]
    assert parse_ts(pauses[0]["detected_at"]) >= parse_ts(first["opened_at"]) + 900
    table = CliRunner().invoke(main, [*args, "--format", "table"], env={"COLUMNS": "240"})
    assert f"alert (held: {key})" in table.stdout


def test_replay_prints_the_same_bytes_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Operators diff two replays to see what a threshold change does: the output must not
    depend on set order (string hashes are seeded per process). The parent scopes of an
    alert once came out in either order."""
    events, config = _files(tmp_path)
    # With [team, model] beside [team, feature]: the runaway key is its team's only agent
    # key on its model, so both show its excess alike, and tie.
    dims = "dimensions: [[], [team], [team, feature], [team, model], [api_key], [model]]\n"
    config.write_text(dims + config.read_text())
    outputs = _replays_under_hash_seeds(events, config)
    assert b'"also":[{"team":"search","model":' in outputs[0]
    assert len(set(outputs)) == 1


def test_which_series_a_capped_set_keeps_does_not_depend_on_the_hash_seed(
    tmp_path: Path,
) -> None:
    """Eleven keys first seen in the same second with room for ten: the one folded into
    ``(other)`` once followed the order of a set of rollups, so replays disagreed."""
    events, config = _files(tmp_path)
    lines = events.read_bytes().splitlines(keepends=True)
    keys = list(
        dict.fromkeys(k for k in (orjson.loads(line).get("api_key") for line in lines) if k)
    )
    assert len(keys) == 11
    first = [
        orjson.dumps(
            {
                "event_id": f"first-{i}",
                "ts": "2026-09-07T00:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 10,
                "output_tokens": 1,
                "team": "t",
                "api_key": key,
            }
        )
        + b"\n"
        for i, key in enumerate(keys)
    ]
    events.write_bytes(b"".join(first + lines))
    config.write_text("limits: {series_per_set: 10}\n" + config.read_text())
    outputs = _replays_under_hash_seeds(events, config)
    assert b'"kind":"series_cap","detector":"limits","scope":{"api_key":"(other)"}' in outputs[0]
    assert len(set(outputs)) == 1


def _replays_under_hash_seeds(events: Path, config: Path) -> list[bytes]:
    import os
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "spendbrake.cli",
                "replay",
                str(events),
                "--config",
                str(config),
            ],
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.append(done.stdout)
    return outputs


def test_a_file_out_of_event_time_order_is_noted_and_sort_replays_it_in_order(
    tmp_path: Path,
) -> None:
    """An export grouped by partition or team: in file order its events are late
    corrections (as live would count them arriving so); --sort gives the sorted file's alerts."""
    import random

    events, config = _files(tmp_path)
    lines = events.read_bytes().splitlines(keepends=True)
    # Four partitions exported one after another: each in order, the whole not.
    shuffled = tmp_path / "by-partition.jsonl"
    parts = [lines[i::4] for i in range(4)]
    random.Random(1).shuffle(parts)
    shuffled.write_bytes(b"".join(line for part in parts for line in part))

    def run(path: Path, *options: str) -> tuple[str, str]:
        result = CliRunner().invoke(main, ["replay", str(path), "--config", str(config), *options])
        assert result.exit_code == 0, result.output
        return result.stdout, result.stderr

    in_order, quiet = run(events)
    unsorted, noted = run(shuffled)
    resorted, sorted_note = run(shuffled, "--sort")
    assert "late corrections" not in quiet and "late corrections" in noted and "--sort" in noted
    assert "came more than 10m after later ones" in noted
    assert " 0 late" in sorted_note and "late corrections" not in sorted_note
    assert resorted == in_order and unsorted != in_order


def _tagged(key: str, team: str, feature: str, workload: str) -> bytes:
    """Two small calls on ``key`` before the history starts, carrying the ``workload`` tag a
    LiteLLM caller can set per request (``request_tags: ["workload:batch"]``). Two hours
    apart, so the key directory sees them before the history (one would share a rollup
    flush with the history's first hour, and which it saw first would be chance)."""
    lines = b""
    for hours_before in (2, 1):
        event = {
            "event_id": f"tagged-{key}-{hours_before}",
            "ts": START - hours_before * 3600,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "input_tokens": 10,
            "output_tokens": 1,
            "team": team,
            "feature": feature,
            "api_key": key,
            "environment": "prod",
            "workload": workload,
        }
        lines += orjson.dumps(event) + b"\n"
    return lines


def _keys_yaml() -> str:
    from spendbrake._simulate import TrafficProfile

    rules = "".join(
        f"    - {{api_key: {r['api_key']}, workload: {r['workload']}}}\n"
        for r in TrafficProfile.default().key_rules()
    )
    return "keys:\n  rules:\n" + rules


def test_replay_never_pauses_a_config_protected_key_whatever_its_events_say(
    tmp_path: Path,
) -> None:
    """Reproductions 1 of issue 17: the first event seen for a key fixed its workload, so one
    event saying "batch" in front of a critical key's runaway made replay print a pause of
    it, and one saying "critical" made a batch key unpausable. Now the keys section says."""
    incidents = [
        parse_incident("runaway:api_key=support-bot-prod,x=40,start=+3d,duration=3h"),
        parse_incident("batch_runaway:api_key=research-nightly-summarizer,x=20,start=+3d"),
    ]
    events = tmp_path / "events.jsonl"
    with open(events, "wb") as out:
        out.write(_tagged("support-bot-prod", "support", "chat", "batch"))
        out.write(
            _tagged("research-nightly-summarizer", "research", "nightly-summarizer", "critical")
        )
        for event in simulate(START, 4 * 86400, rate_per_s=0.1, seed=3, incidents=incidents):
            out.write(event.to_json() + b"\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "detectors:\n  - kind: baseline\n    params: {season: 24, warmup_n: 48}\n" + _keys_yaml()
    )
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    assert result.exit_code == 0, result.output
    alerts = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    about = {
        key: [a for a in alerts if a["scope"].get("api_key") == key]
        for key in ("support-bot-prod", "research-nightly-summarizer")
    }
    # The critical bot's runaway is alerted, never paused, and the record says why.
    bot = about["support-bot-prod"]
    assert bot and all(a["action"] == "alert" for a in bot), bot
    assert all("support-bot-prod" not in a["targets"] for a in alerts)
    assert any(a["critical_keys"] == ["support-bot-prod"] for a in bot)
    # The batch job's runaway is paused, whatever its first event claimed.
    batch = about["research-nightly-summarizer"]
    assert any(
        a["action"] == "pause" and a["targets"] == ["research-nightly-summarizer"] for a in batch
    ), batch


def test_replay_table_shows_hostile_names_inert(tmp_path: Path) -> None:
    events, config = _files(tmp_path)
    hostile = "\x1b[2J[link=http://evil]search[/link]\u202e"
    lines = []
    for line in events.read_bytes().splitlines():
        event = orjson.loads(line)
        if event.get("team") == "search":
            event["team"] = hostile
            event["api_key"] = hostile + event["api_key"]
        lines.append(orjson.dumps(event))
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(
        main,
        ["replay", str(events), "--config", str(config), "--format", "table"],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "\\x1b[2J[link=http://evil]search[/link]\\u202e" in result.stdout


def test_replay_dates_alerts_at_the_watermark_as_the_live_stage_does() -> None:
    """The watch's clock in replay is the events' watermark (what the ingest stage marks
    live), not the end of the latest minute window: budgets fire at the event that took
    the watermark past the early-look step, 00:05:30, not at 00:06:00."""
    from spendbrake._replay import replay_lines
    from spendbrake.schemas import Config, format_ts

    config = Config.model_validate(
        {
            "budgets": [
                {"name": "t-daily", "scope": {"team": "t"}, "amount_usd": 10, "period": "day"}
            ]
        }
    )
    lines = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "ts": format_ts(START + 30 + 60 * i),
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 10,
                "output_tokens": 1,
                "team": "t",
                "cost_usd": 2.0,
            }
        )
        for i in range(6)
    ]
    alerts = [a for a in replay_lines(lines, config) if a.kind == "budget"]
    assert alerts and {a.detected_at for a in alerts} == {format_ts(START + 330)}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_names_the_first_rejected_lines_and_counts_the_rest(
    tmp_path: Path, jobs: str
) -> None:
    """Eight bad lines among good ones: at ``--max-errors 5`` the first five by line number
    and reason, in one process or two (the second rolls up), how many more and how to see
    them; by default (20) all of them."""
    events, config = _files(tmp_path)
    good = events.read_bytes().splitlines(keepends=True)
    bad = [b'{"bad": 1}\n', b"not json\n"] * 3 + [b"\n", b'{"event_id": "x"}\n']
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(bad) + b"".join(good))

    def shown(*options: str) -> tuple[list[str], str]:
        result = CliRunner().invoke(
            main, ["replay", str(path), "--config", str(config), "--jobs", jobs, *options]
        )
        assert result.exit_code == 0, result.output
        lines = [line.strip() for line in result.stderr.splitlines()]
        return [line for line in lines if line.startswith("line ")], result.stderr

    first, stderr = shown("--max-errors", "5")
    assert first[0] == "line 1: event_id: is required"
    assert first[1].startswith("line 2: payload: not valid JSON")
    assert [s.split(":")[0] for s in first] == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    # Lines 6 and 8 (7 is blank, not an event), and the fixture's own bad last line.
    assert "(3 more; --max-errors N shows more)" in stderr
    every, stderr = shown()
    assert every[:5] == first and [s.split(":")[0] for s in every[5:7]] == ["line 6", "line 8"]
    assert len(every) == 8 and "more" not in stderr


def test_replay_table_redirected_to_a_file_keeps_every_value_whole(tmp_path: Path) -> None:
    """Off a terminal (``> alerts.txt``, a pipe) the table is not cut to 80 columns: rich's
    default there cut the dates and scopes to ``2026-09-…`` and ``api_key=sea…``."""
    events, config = _files(tmp_path)
    result = CliRunner().invoke(
        main, ["replay", str(events), "--config", str(config), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout
    alerts = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)]).stdout
    for line in alerts.splitlines():
        alert = orjson.loads(line)
        scope = ",".join(f"{k}={v}" for k, v in alert["scope"].items()) or "global"
        assert alert["detected_at"][:16].replace("T", " ") in result.stdout
        assert scope in result.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            b'{"id": "chatcmpl-1", "usage": {"total_tokens": 9}}\n' * 3,
            "has no valid event (3 rejected)",
        ),
        (b"", "is empty"),
    ],
)
def test_a_file_with_no_valid_event_fails_instead_of_reporting_no_alerts(
    tmp_path: Path, content: bytes, says: str
) -> None:
    """A file in another format (every line rejected) or an empty one: exit 1 and one line
    saying nothing was replayed; it exited 0 with "0 alert(s)", which reads as "this config
    would have fired nothing"."""
    path = tmp_path / "other.jsonl"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 1, result.output
    assert f"error: {path} {says}: nothing was replayed" in result.stderr


def test_a_replay_off_a_terminal_says_how_far_it_has_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal (a CI log, ``| tee``) a long replay printed nothing until its end: the
    spinner is for terminals only. It now prints a plain count every ``every_s`` seconds
    (every step here), which only grows; stdout keeps the alert records alone."""
    from spendbrake import cli

    monkeypatch.setattr(cli._progress, "every_s", 0.0)
    events, config = _files(tmp_path)
    result = CliRunner().invoke(main, ["replay", str(events), "--config", str(config)])
    assert result.exit_code == 0, result.output
    counts = [
        int(line.rsplit(": ", 1)[1].removesuffix(" events").replace(",", ""))
        for line in result.stderr.splitlines()
        if line.startswith(f"replaying {events}: ")
    ]
    assert len(counts) > 3 and counts == sorted(counts), result.stderr[:2000]
    assert all(line.startswith("{") for line in result.stdout.splitlines() if line.strip())


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_one_line_dated_years_ahead_is_rejected_not_the_rest(tmp_path: Path, jobs: str) -> None:
    """A line dated 2030 pushed replay's watermark four years on: every later line was
    rejected as past the dedupe horizon and the run found nothing, exit 0. Replay's lines
    carry no record timestamp, so their event times are checked against the clock, as the
    live stage checks a record's."""
    events, config = _files(tmp_path)
    lines = events.read_bytes().splitlines()
    bogus = b'{"event_id": "fut", "ts": "2030-10-12T02:00:00Z", "provider": "openai", '
    bogus += (
        b'"model": "gpt-4.1", "input_tokens": 5, "output_tokens": 1, "team": "t", "api_key": "k"}'
    )
    with_bogus = tmp_path / "bogus.jsonl"
    with_bogus.write_bytes(b"\n".join([*lines[:700], bogus, *lines[700:]]) + b"\n")
    args = ["--config", str(config), "--jobs", jobs]
    clean = CliRunner().invoke(main, ["replay", str(events), *args])
    result = CliRunner().invoke(main, ["replay", str(with_bogus), *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == clean.stdout  # the same alerts: the rest of the file counted
    assert "2 rejected" in result.stderr and "rejected for ts: 2" in result.stderr
    assert "line 701: ts: is " in result.stderr and "ahead of this machine's clock" in result.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_says_how_many_events_no_price_covered(tmp_path: Path, jobs: str) -> None:
    """A model the price table does not know was counted as $0, unsaid: budgets tuned on
    the replay undercounted (the live ingest sends an unpriced_model notice)."""
    events, _ = _files(tmp_path)
    text = events.read_bytes()
    model = orjson.loads(text.splitlines()[0])["model"]
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_bytes(text.replace(f'"model":"{model}"'.encode(), b'"model":"gpt-9-mini"'))
    result = CliRunner().invoke(main, ["replay", str(renamed), "--jobs", jobs])
    assert result.exit_code == 0, result.output
    # Those that carry their own cost_usd (half of them) are priced.
    said = re.search(r"note: ([\d,]+) events of models with no price were counted as \$0 "
                     r"\(gpt-9-mini: ([\d,]+)\); give their prices", result.stderr)  # fmt: skip
    assert said and said[1] == said[2] and int(said[1].replace(",", "")) > 0, result.stderr
