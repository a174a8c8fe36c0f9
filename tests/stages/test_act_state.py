"""The act stage's saved state: a plain versioned ``outbox.json``; the ``outbox.pkl`` of an
earlier release is migrated once, on load, and kept beside it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from spendbrake.actions import Outbox
from spendbrake.schemas import Config, StateUnreadable, unpickle_state
from spendbrake.stages import ActionStage, WorkerSettings
from tests.actions.test_outbox import KEYS, OLD_PICKLE, alert


def stage(state: Path) -> ActionStage:
    return ActionStage(Config(), WorkerSettings(state_dir=state))


def plan(outbox: Outbox) -> tuple[object, ...]:
    """What an outbox holds, less the settings a stage takes from its config."""
    return (
        outbox.offsets,
        outbox.seen,
        outbox.incidents,
        outbox.threads,
        outbox.lanes,
        outbox.audit,
        outbox.blocked,
    )


def test_an_old_outbox_pickle_is_migrated_once_and_kept_beside_it(tmp_path: Path) -> None:
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "outbox.pkl").write_bytes(OLD_PICKLE.read_bytes())
    first = stage(tmp_path)
    first.load()
    assert plan(first.outbox) == plan(unpickle_state(OLD_PICKLE.read_bytes()))
    assert sorted(p.name for p in actions.iterdir()) == ["outbox.json", "outbox.pkl.migrated"]
    assert (actions / "outbox.pkl.migrated").read_bytes() == OLD_PICKLE.read_bytes()
    saved = (actions / "outbox.json").read_bytes()
    assert orjson.loads(saved)["version"] == 1
    # The next start reads the new file alone: the pickle is never read again.
    (actions / "outbox.pkl.migrated").write_bytes(b"not read again")
    second = stage(tmp_path)
    second.load()
    assert second.outbox == first.outbox
    assert (actions / "outbox.json").read_bytes() == saved


def test_a_migration_cut_short_before_the_rename_is_finished(tmp_path: Path) -> None:
    """Stopped between writing ``outbox.json`` and renaming the pickle: the file wins."""
    first = stage(tmp_path)
    first.outbox.accept(alert(), now=1.0, keys=KEYS)
    (tmp_path / "actions").mkdir()
    first.save()
    (tmp_path / "actions" / "outbox.pkl").write_bytes(OLD_PICKLE.read_bytes())
    second = stage(tmp_path)
    second.load()
    assert second.outbox == first.outbox
    assert (tmp_path / "actions" / "outbox.pkl.migrated").exists()
    assert not (tmp_path / "actions" / "outbox.pkl").exists()


@pytest.mark.parametrize("name", ["outbox.json", "outbox.pkl"])
def test_an_unreadable_outbox_stops_the_stage_with_one_line(tmp_path: Path, name: str) -> None:
    """Starting empty would act again on every alert the topic holds: refused, naming the
    file and the way out (the CLI prints it as ``error: ...``)."""
    damaged = tmp_path / "actions" / name
    damaged.parent.mkdir()
    damaged.write_bytes(b'{"version": 1, "outbox": {"lan' if name.endswith("json") else b"\x80\x05")
    with pytest.raises(StateUnreadable) as caught:
        stage(tmp_path).load()
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{damaged}: unreadable state ("), line
    assert "restore it from a backup" in line
    assert not (tmp_path / "actions" / "outbox.json").exists() or name == "outbox.json"


def test_a_slack_message_is_never_given_up_a_pause_is_after_max_attempts(tmp_path: Path) -> None:
    """An outage longer than the retry budget: the alert is still posted when Slack is back
    (late, in order); a pause that late is given up and audited as failed."""
    from spendbrake.stages.act import MAX_ATTEMPTS

    config = Config.model_validate(
        {"slack": {"token": "xoxb-x", "base_url": "http://127.0.0.1:9/api/"}}
    )
    act = ActionStage(config, WorkerSettings(state_dir=tmp_path))
    act.outbox.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    post, block = act.outbox.lanes["slack"][0], act.outbox.lanes["gateway"][0]
    for task in (post, block):
        task.attempts = MAX_ATTEMPTS
        act._settle(task, False, "retry", "HTTP 503")
    assert post in act.outbox.lanes["slack"] and post.next_at > 1.0  # kept, due later
    assert act.outbox.audit[post.id].result == "retrying"
    assert not act.outbox.lanes["gateway"]
    assert act.outbox.audit[block.id].result == "failed"


def test_a_stage_with_nowhere_to_act_says_so_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without slack.token and a gateway, alerts were only logged and pauses only audited as
    skipped, and nothing said so: an operator took silence for quiet."""
    caplog.set_level("WARNING", logger="spendbrake.stages.act")
    stage(tmp_path / "bare").load()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3
    assert said[0].startswith("slack.token is not set: alerts are logged here")
    assert said[1].startswith("keys.rules is empty: every key is alerted only, never paused")
    assert said[2].startswith("no gateway configured")
    caplog.clear()
    config = Config.model_validate(
        {
            "slack": {"token": "xoxb-1"},
            "gateway": {"kind": "litellm", "master_key": "sk-m"},
            "keys": {"rules": [{"api_key": "batch-*", "workload": "batch"}]},
        }
    )
    ActionStage(config, WorkerSettings(state_dir=tmp_path / "set")).load()
    assert caplog.records == []
    # A dry run pauses nothing either (the example config's setting): said too.
    dry = config.model_copy(update={"gateway": config.gateway.model_copy(update={"dry_run": True})})
    ActionStage(dry, WorkerSettings(state_dir=tmp_path / "dry")).load()
    assert [r.getMessage() for r in caplog.records] == [
        "gateway.dry_run is set: pauses are audited as dry runs, no key is paused at "
        "http://127.0.0.1:4000"
    ]


def test_the_pause_age_bound_comes_from_the_config_in_force(tmp_path: Path) -> None:
    """Like the other settings, it is the config's, not the saved outbox's: set when built,
    kept over a restored outbox, changed by a reload."""
    act = stage(tmp_path)
    assert act.outbox.pause_max_age_s == 6 * 3600
    (tmp_path / "actions").mkdir()
    act.save()
    again = ActionStage(
        Config.model_validate({"gateway": {"pause_max_age_s": 60}}),
        WorkerSettings(state_dir=tmp_path),
    )
    again.load()
    assert again.outbox.pause_max_age_s == 60

    async def reload() -> None:  # the old clients are closed on the loop, later
        again.reconfigure(Config.model_validate({"gateway": {"pause_max_age_s": None}}))

    asyncio.run(reload())
    assert again.outbox.pause_max_age_s is None


def test_pauses_queued_when_a_reload_takes_the_gateway_away_are_kept(tmp_path: Path) -> None:
    """``master_key`` commented out for a moment while a hard stop's pause waited: the pause
    failed for good ("no gateway configured") and the key was never paused. It is now held,
    as for a gateway refusing its credentials, and goes once a reload brings them back."""
    keys = {"rules": [{"api_key": "sk-*", "workload": "batch"}]}
    with_gateway = Config.model_validate(
        {
            "keys": keys,
            "gateway": {"kind": "litellm", "master_key": "sk-m", "url": "http://127.0.0.1:9"},
        }
    )
    act = ActionStage(with_gateway, WorkerSettings(state_dir=tmp_path))
    act.outbox.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    block = act.outbox.lanes["gateway"][0]

    async def run() -> None:
        act.reconfigure(Config.model_validate({"keys": keys}))
        await act._gateway_attempt(block)
        assert block in act.outbox.lanes["gateway"], act.outbox.audit[block.id]
        assert act.outbox.audit[block.id].detail.startswith(
            "no gateway configured since a config reload"
        )
        act.reconfigure(Config.model_validate({"keys": keys, "slack": {"cooldown_s": 60}}))
        await act._gateway_attempt(block)
        assert block in act.outbox.lanes["gateway"]
        act.reconfigure(with_gateway)
        assert block.next_at <= time.time()  # woken: it goes now

    asyncio.run(run())
    # A stage that never had a gateway gives pauses up at once, as before: nowhere to act.
    bare = ActionStage(Config.model_validate({"keys": keys}), WorkerSettings(state_dir=tmp_path))
    bare.outbox.accept(alert(targets=("sk-a",)), now=1.0, keys=KEYS)
    task = bare.outbox.lanes["gateway"][0]
    asyncio.run(bare._gateway_attempt(task))
    assert not bare.outbox.lanes["gateway"] and bare.outbox.audit[task.id].result == "failed"


def test_the_log_line_of_a_held_pause_says_held_not_alert_only(tmp_path: Path) -> None:
    """A pause held for ``confirm_s`` was logged "(alert only)" while Slack said "Pause
    held": an operator reading the log took it for an alert that pauses nothing."""
    act = stage(tmp_path)
    held = {"sk-a": "2026-11-08T03:10:02.011000Z"}
    on_key = alert(action="alert", targets=(), held_keys=held)
    assert act._done(on_key, 1.0) == "pause sk-a held until 2026-11-08 03:10 UTC"
    assert act._done(alert(action="alert", targets=()), 1.0) == "alert only"


def test_the_log_line_of_a_resume_names_the_keys_it_leaves_paused(tmp_path: Path) -> None:
    """A budget's next period resumed "resume sk-a, sk-b, sk-c" in the log, while the audit
    kept sk-b paused for an anomaly and refused sk-c, a key SpendBrake never paused."""
    act = stage(tmp_path)
    box = act.outbox
    stop = alert(id="budget/b/1", kind="budget", budget="b", targets=("sk-a", "sk-b"))
    loop = alert(id="anomaly/api_key=sk-b/1", targets=("sk-b",))
    for paused in (stop, loop):
        box.accept(paused, now=1.0, keys=KEYS)
    while (task := box.ready("gateway", 2.0)) is not None:
        box.finish(task, "ok", "blocked", 2.0)
    resume = alert(
        id="budget/b/2", kind="budget", budget="b", action="resume",
        targets=("sk-a", "sk-b", "sk-c"),
    )  # fmt: skip
    assert box.accept(resume, now=3.0, keys=KEYS)
    assert act._done(resume, 3.0) == (
        "resume sk-a; sk-b not resumed: still paused for anomaly/api_key=sk-b/1; "
        "sk-c not resumed: not paused by SpendBrake"
    )
