"""The detect stage's state file: plain versioned JSON; a pickled one of an earlier release is
migrated once, on start, and kept beside it; a damaged one stops the stage in one line.

No broker: these are the stage's load and save on real files (the restart that resumes
alike on the broker is in test_detect_stage.py, the refusal of the whole worker in
test_unreadable_state.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import msgspec
import pytest

from spendbrake.schemas import StateUnreadable
from spendbrake.stages import DetectStage, WorkerSettings
from tests.detectors.test_legacy import FIXTURE, _stage_plan


def _stage(state: Path) -> DetectStage:
    _, config = _stage_plan()  # the config the fixture was written under
    return DetectStage(config, WorkerSettings(state_dir=state))


def test_a_pickled_snapshot_is_migrated_once_and_kept_beside(tmp_path: Path) -> None:
    detect = tmp_path / "detect"
    detect.mkdir()
    shutil.copy(FIXTURE, detect / "snapshot.pkl")
    first = _stage(tmp_path)
    first._load()
    assert first.offsets == {0: 4321} and list(first.mark_parts) == [(0, 0)]
    assert first.watch.folded_series() == 4 and len(first.watch.incidents.open) == 4
    assert not (detect / "snapshot.pkl").exists()
    assert (detect / "snapshot.pkl.migrated").read_bytes() == FIXTURE.read_bytes()
    saved = msgspec.json.decode((detect / "snapshot.json").read_bytes())
    assert (saved["kind"], saved["version"], saved["offsets"]) == (
        "spendbrake.detect",
        1,
        [[0, 4321]],
    )
    # The next start reads the plain file, to the same state.
    again = _stage(tmp_path)
    again._load()
    assert (again.offsets, again.mark_parts) == (first.offsets, first.mark_parts)
    assert again.watch.snapshot() == first.watch.snapshot()


def test_a_stop_between_saving_and_setting_the_pickle_aside_keeps_the_new_file(
    tmp_path: Path,
) -> None:
    detect = tmp_path / "detect"
    detect.mkdir()
    shutil.copy(FIXTURE, detect / "snapshot.pkl")
    first = _stage(tmp_path)
    first._load()
    first.offsets[0] = 5000  # it went on, and saved
    first._save()
    shutil.copy(FIXTURE, detect / "snapshot.pkl")  # as if the rename had not happened
    os.utime(detect / "snapshot.pkl", ns=(1, 1))
    again = _stage(tmp_path)
    again._load()
    assert again.offsets == {0: 5000}
    assert not (detect / "snapshot.pkl").exists() and (detect / "snapshot.pkl.migrated").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"kind": "spendbrake.detect", "version": 1, "offs', "truncated"),
        (
            b'{"kind": "spendbrake.detect", "version": 2, "offsets": [], "mark_parts": [], '
            b'"watch": {}}',
            "a spendbrake.detect snapshot of version 2",
        ),
        (
            b'{"kind": "spendbrake.detect", "version": 1, "offsets": [], "mark_parts": [], '
            b'"watch": {"kind": "spendbrake.watch", "version": 1}}',
            "watch snapshot: KeyError",
        ),
    ],
)
def test_a_damaged_snapshot_is_refused_in_one_line(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "detect" / "snapshot.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(StateUnreadable) as caught:
        _stage(tmp_path)._load()
    message = str(caught.value)
    assert message.startswith(f"{path}: unreadable state (") and reason in message, message
    assert "restore it from a backup" in message and "\n" not in message


def test_a_first_start_says_anomalies_wait_for_two_weeks_of_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no saved state the baselines page nothing for two weeks of event time, which an
    operator met as a silent worker and a runaway unpaged (budgets alert at once). A
    restart from a snapshot does not say it again."""
    from spendbrake.schemas import Config

    caplog.set_level(logging.INFO, logger="spendbrake")
    stage = DetectStage(Config(), WorkerSettings(state_dir=tmp_path))
    stage._load()
    assert "the baselines learn for 14 days of event time" in caplog.text
    stage.dir.mkdir(parents=True, exist_ok=True)  # the stage's start makes it
    stage._save()
    caplog.clear()
    DetectStage(Config(), WorkerSettings(state_dir=tmp_path))._load()
    assert "learn for" not in caplog.text and "restored" in caplog.text
