"""The demo's live view shows team names, scopes and reasons as text, never as terminal
control or rich markup."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from spendbrake._demo import HOUR, DemoState, _view
from spendbrake.schemas import Config, RollupRecord
from spendbrake.stages import ActionStage, WorkerSettings
from tests.actions.test_blocks import HOSTILE, alert

END = 1_791_158_400.0


def test_the_live_view_shows_hostile_names_inert(tmp_path: Path) -> None:
    team = "[link=http://evil]ops[/link]\x1b[2J\u202e"
    state = DemoState()
    metrics = (round(12.5 * 1e9), 10, 1000, 0, 0, 100, 0, 0)
    state.on_records([RollupRecord(("team",), (team,), HOUR, int(END - HOUR), 0, 0, metrics, {})])
    state.act = ActionStage(Config(), WorkerSettings(state_dir=tmp_path))
    hostile = alert(scope=HOSTILE, reason=f"{HOSTILE['team']} \x1b[31m")
    state.act.outbox.accept(hostile, END, Config().keys)
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=False).print(_view(state, END))
    shown = out.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown, repr(shown)
    assert "[link=http://evil]ops[/link]\\x1b[2J\\u202e" in shown
    assert "gpt-4o\\x1b]8;;http://evil\\x1b\\" in shown and "sk-\\u202egnp.exe" in shown
