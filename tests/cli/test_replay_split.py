"""Replay on two processes (``jobs=2``): the same alerts, stats and progress as on one, and a
child that never outlives its caller."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from spendbrake import _replay_split
from spendbrake._config_loader import build_config, parse_yaml
from spendbrake._replay import ReplayStats, RollupPlan, replay_lines, rolled_up
from spendbrake._simulate import parse_incident, simulate
from spendbrake.cli import main
from spendbrake.detectors import SpendWatch
from spendbrake.schemas import RollupColumns, encode_alert, parse_ts

START = parse_ts("2026-09-07T00:00:00Z")
YAML = """\
detectors:
  - kind: baseline
    params: {season: 24, warmup_n: 48}
budgets:
  - {name: all, amount_usd: 20, period: day}
  - {name: search, amount_usd: 5, period: day, scope: {team: search}}
"""
CONFIG = build_config(*parse_yaml(YAML), env={})


def _lines() -> list[bytes]:
    """Four days with a runaway, every kind of line the processor treats apart: resent
    (duplicates), held back past the lateness (late), blank, malformed and invalid."""
    runaway = parse_incident("runaway:team=search,x=40,start=+3d,duration=3h")
    events = simulate(START, 4 * 86400, rate_per_s=0.06, seed=5, incidents=[runaway])
    lines = [event.to_json() + b"\n" for event in events]
    rng = random.Random(1)
    for at in rng.sample(range(100, len(lines)), 200):
        lines.insert(at, lines[at - rng.randrange(1, 50)])  # resent a few lines later
    for at in rng.sample(range(100, len(lines) - 400), 50):
        lines.insert(at + 300, lines.pop(at))  # arrives minutes after its neighbours
    for at in rng.sample(range(len(lines)), 20):
        lines.insert(at, rng.choice([b"\n", b"{not json\n", b'{"event_id": "x", "ts": 1}\n']))
    return lines


def _replayed(lines: list[bytes], jobs: int) -> tuple[list[bytes], ReplayStats, list[int]]:
    stats, ticks = ReplayStats(), []
    alerts = [
        encode_alert(a)
        for a in replay_lines(lines, CONFIG, stats=stats, progress=ticks.append, jobs=jobs)
    ]
    return alerts, stats, ticks


def test_two_processes_replay_what_one_does() -> None:
    lines = _lines()
    watch = SpendWatch(CONFIG, partitions=1)
    dims = CONFIG.rollup_dimensions()
    plan = RollupPlan(watch.windows_read(dims), watch.minutes_read(dims), watch.peek_s)
    steps = rolled_up(lines, CONFIG, 600.0, plan, ReplayStats())
    records = sum(len(b.values) for blocks, _, _ in steps for b in blocks)
    # Several messages each way, or the test would not exercise the pipes' framing.
    assert len(lines) > 3 * _replay_split.LINES_PER_MESSAGE
    assert records > 3 * _replay_split.RECORDS_PER_MESSAGE

    one = _replayed(lines, jobs=1)
    two = _replayed(lines, jobs=2)
    alerts, stats, ticks = two
    assert alerts == one[0] and stats == one[1] and ticks == one[2]
    assert any(b'"kind":"anomaly"' in a for a in alerts)
    assert any(b'"kind":"budget"' in a for a in alerts)
    assert stats.duplicates and stats.late and stats.dead
    assert ticks[-1] == len(lines)


def test_the_cli_prints_the_same_with_either_number_of_jobs(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(_lines()))
    config = tmp_path / "config.yaml"
    config.write_text(YAML)
    out = {}
    for jobs in ("1", "2"):
        result = CliRunner().invoke(
            main, ["replay", str(events), "--config", str(config), "--jobs", jobs]
        )
        assert result.exit_code == 0, result.output
        out[jobs] = result.stdout
        assert ("rolled up in a second process" in result.stderr) == (jobs == "2")
    assert out["1"] == out["2"] and out["1"].count("\n") > 3


def test_a_file_is_read_by_the_child_from_where_the_caller_stands(tmp_path: Path) -> None:
    lines = _lines()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(lines))
    with events.open("rb") as handle:
        handle.readline()  # a caller that read a header (its buffer holds more)
        assert _replay_split._regular_file(handle) == (handle.fileno(), len(lines[0]))
        stats = ReplayStats()
        two = [encode_alert(a) for a in replay_lines(handle, CONFIG, stats=stats, jobs=2)]
    one, one_stats, _ = _replayed(lines[1:], jobs=1)
    assert two == one and stats == one_stats and one


def test_a_file_on_standard_input_is_read_by_the_child_too(tmp_path: Path) -> None:
    """``spendbrake replay - < events.jsonl``: the child reads the file from a descriptor of
    its own (its descriptor 0 is not the caller's)."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(_lines()))
    config = tmp_path / "config.yaml"
    config.write_text(YAML)
    run = [sys.executable, "-c", "from spendbrake._entry import main; main()", "replay", "-"]
    out = {}
    for jobs in ("1", "2"):
        with events.open("rb") as stdin:
            done = subprocess.run(
                [*run, "--config", str(config), "--jobs", jobs],
                stdin=stdin,
                capture_output=True,
                timeout=120,
                check=True,
            )
        out[jobs] = done.stdout
        assert b"valid" in done.stderr and b" 0 valid" not in done.stderr
    assert out["1"] == out["2"] and out["1"].count(b"\n") > 3


def _our_children() -> list[str]:
    """Command lines of this process' live children that are replay's rollup process."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"_replay_split" in cmdline:
            found.append(cmdline.decode(errors="replace"))
    return found


def test_a_caller_that_stops_early_stops_the_child() -> None:
    alerts = replay_lines(_lines(), CONFIG, jobs=2)
    first = next(alerts)
    assert first.kind in ("budget", "anomaly")
    assert _our_children()  # it is still rolling up the rest
    alerts.close()
    assert _our_children() == []


def test_an_error_reading_the_lines_is_the_error_raised() -> None:
    def failing() -> Iterator[bytes]:
        yield from _lines()[:5000]
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        list(replay_lines(failing(), CONFIG, jobs=2))
    assert _our_children() == []


def _send_and_read(
    blocks: list[RollupColumns],
    numbering: _replay_split._Numbering | None = None,
    reader: _replay_split._Reader | None = None,
) -> list[tuple[list[RollupColumns], float, int]]:
    pipe = io.BytesIO()
    _replay_split._send(pipe, [(blocks, 1.5, 7)], numbering or _replay_split._Numbering())
    pipe.seek(0)
    message = _replay_split._read(pipe)
    assert message is not None and _replay_split._read(pipe) is None
    return (reader or _replay_split._Reader()).steps(message)


def test_records_cross_the_pipe_unchanged_even_past_what_msgpack_holds() -> None:
    ordinary = RollupColumns(
        ("team",), 3600, 0, [("search",)], [0], [0], [[5], [1], [2], *[[0]] * 5]
    )
    minutes = RollupColumns(
        ("api_key", "team"), 60, 0, [(None, "a"), ("k", "b")], [60, 120], [3, 0], [[5, 6]] * 8
    )
    assert _send_and_read([ordinary, minutes]) == [([ordinary, minutes], 1.5, 7)]
    # A window past 2**64 nano-dollars ($18bn, exact as Python ints) goes pickled.
    huge = RollupColumns(("team",), 3600, 0, [("search",)], [0], [0], [[2**70], *[[1]] * 7])
    assert _send_and_read([ordinary, huge]) == [([ordinary, huge], 1.5, 7)]


def test_sets_and_values_cross_as_numbers_each_tuple_sent_once() -> None:
    """A message carries the tuples numbered since the one before (none for a block of
    tuples sent already); past the numbering's limit both ends start afresh."""
    numbering, reader = _replay_split._Numbering(limit=3), _replay_split._Reader()
    teams = RollupColumns(("team",), 3600, 0, [("a",), ("b",)], [0, 0], [0, 2], [[5, 6], [1, 1]])
    features = RollupColumns(
        ("team", "feature"), 60, 1, [("b", None), ("a", "x"), ("b", None)], [0, 60, 60],
        [0, 0, 1], [[1, 2, 3], [1, 1, 1]],
    )  # fmt: skip
    pipe = io.BytesIO()
    for blocks in ([teams], [teams], [features, teams], [teams]):
        _replay_split._send(pipe, [(blocks, 1.5, 7)], numbering)
    pipe.seek(0)
    new = []
    for blocks in ([teams], [teams], [features, teams], [teams]):
        message = _replay_split._read(pipe)
        assert message is not None
        fresh, tuples, _ = _replay_split._decode_steps(message[1:])
        new.append((fresh, tuples))
        assert reader.steps(message) == [(blocks, 1.5, 7)]
    assert new == [
        (False, [("team",), ("a",), ("b",)]),
        (False, []),
        (False, [("team", "feature"), ("b", None), ("a", "x")]),
        (True, [("team",), ("a",), ("b",)]),
    ]
    assert len(reader.known) == 3


def test_a_failure_in_the_child_is_raised_with_its_traceback() -> None:
    steps_out = io.BytesIO()
    lines_in = io.BytesIO()
    _replay_split._write(lines_in, b"not a pickle")
    lines_in.seek(0)
    assert _replay_split._child(lines_in, steps_out) == 1
    steps_out.seek(0)
    message = _replay_split._read(steps_out)
    assert message is not None
    with pytest.raises(RuntimeError, match=r"(?s)rollup process failed:.*UnpicklingError"):
        _replay_split._Reader().steps(message)
