"""Block Kit rendering: what the on-call reads, within Slack's limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from spendbrake.actions import Interaction, build_payload, parse_interaction, sign_request
from spendbrake.actions._blocks import (
    RESUME_ACTION_ID,
    SNOOZE_ACTION_ID,
    mask,
    render_alert,
    render_followup,
    render_parent_update,
)
from spendbrake.schemas import Alert, parse_ts


def alert(**extra: Any) -> Alert:
    return Alert(
        **{
            "kind": "anomaly",
            "detector": "baseline",
            "scope": {"team": "research", "api_key": "sk-live-0123456789abcdef"},
            "also": [{"team": "research"}],
            "window_start": "2026-09-10T02:00:00.000000Z",
            "window_end": "2026-09-10T03:00:00.000000Z",
            "observed_usd": 412.5,
            "expected_usd": 10.25,
            "severity": "critical",
            "action": "pause",
            "targets": ["sk-live-0123456789abcdef"],
            "id": "anomaly/x/1",
            "seq": 0,
            "score": 0.97,
            "reason": "spend 40x the hour-of-week baseline",
            **extra,
        }
    )


def flat(blocks: list[dict[str, Any]]) -> str:
    return orjson.dumps(blocks).decode()


def test_the_message_says_what_where_how_much_why_and_how_to_undo() -> None:
    text, blocks = render_alert(alert(), outcome="Paused 1 key(s): sk-…cdef")
    shown = flat(blocks)
    assert "Runaway spend" in text
    assert "$412.50" in shown and "$10.25" in shown and "40.2x" in shown
    assert "02:00" in shown and "UTC" in shown
    assert "spend 40x the hour-of-week baseline" in shown
    assert "Paused 1 key(s)" in shown
    assert "spendbrake resume sk-live-0123456789abcdef" in shown
    assert "team=research" in shown  # the "also" scopes


def test_names_show_in_full_and_tokens_shortened() -> None:
    token = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    assert mask("research-nightly-summarizer") == "research-nightly-summarizer"
    assert mask(token) == "88dc28…6b4b"
    title = render_alert(alert(scope={"api_key": token}))[1][0]["text"]["text"]
    assert token not in title and "88dc28…6b4b" in title


def test_buttons_only_on_pauses() -> None:
    actions = [b for b in render_alert(alert())[1] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [RESUME_ACTION_ID, SNOOZE_ACTION_ID]
    value = orjson.loads(actions[0]["elements"][0]["value"])
    assert value == {"alert": "anomaly/x/1", "targets": ["sk-live-0123456789abcdef"]}
    plain = render_alert(alert(action="alert", targets=[]))[1]
    assert not [b for b in plain if b["type"] == "actions"]
    assert "spendbrake resume" not in flat(plain)


def test_slack_limits_hold_for_huge_inputs() -> None:
    many = [f"sk-batch-{i:04d}-" + "x" * 40 for i in range(200)]
    _, blocks = render_alert(alert(reason="r" * 10_000, targets=many))
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            assert (
                len(element.get("text", "") if isinstance(element.get("text"), str) else "") <= 3000
            )
            assert len(element.get("value", "")) <= 2000


def test_runbook_template_is_filled_and_quoted() -> None:
    _, blocks = render_alert(alert(), runbook_url="https://wiki/run#{kind}?s={scope}")
    shown = flat(blocks)
    assert "https://wiki/run#anomaly?s=team%3Dresearch" in shown


def test_budget_titles_and_followups() -> None:
    text, _ = render_alert(alert(kind="budget", budget="research-monthly", threshold=0.8))
    assert "Budget research-monthly at 80%" in text
    # A resume has no threshold: it read "at 0%", a budget with nothing spent.
    resume = alert(kind="budget", budget="research-daily", action="resume", targets=["sk-a"])
    text, _ = render_alert(resume)
    assert "at 0%" not in text and "Budget research-daily: new period" in text
    text, blocks = render_followup(alert(seq=2), "Paused 2 key(s)")
    assert "#2" in text and "Paused 2 key(s)" in flat(blocks)
    _, blocks = render_parent_update(
        alert(seq=2), "Resumed sk-…cdef", ["#0 warning", "#2 critical"]
    )
    assert "History" in flat(blocks) and "Resumed" in flat(blocks)


#: Caller-chosen names as an attacker would send them in usage events.
HOSTILE = {
    "team": "<!channel> urgent",
    "feature": "<http://evil.example|click here>",
    "customer": "<@U123> & <#C1>",
    "api_key": "sk-\u202egnp.exe",
    "model": "gpt-4o\x1b]8;;http://evil\x1b\\",
}


def _mrkdwn_objects(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for block in blocks:
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(obj, dict) and obj.get("type") == "mrkdwn":
                found.append(obj)
    return found


def _mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for block in blocks:
        if "text" in block and block["text"].get("type") == "mrkdwn":
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                texts.append(element["text"])
    return texts


def test_caller_text_cannot_mention_link_or_reorder_in_slack() -> None:
    hostile = alert(
        scope=HOSTILE,
        also=[{"team": "<!here>"}],
        reason=f"{HOSTILE['team']}: $412.50 in the hour",
        targets=[HOSTILE["api_key"]],
        id="anomaly/<!everyone>/1",
    )
    for text, blocks in (
        render_alert(
            hostile, outcome="Paused 1 key(s): <!channel>", runbook_url="https://w/{scope}"
        ),
        render_followup(hostile, "Paused <@U1>"),
        render_parent_update(hostile, "Resumed <!here>", ["#0 <!channel>", "#1 <@U9>"]),
    ):
        # Taken literally: Slack would otherwise link bare URLs and channel names, and parse
        # "certain mentions", in caller text (``schemas.mrkdwn_text``).
        assert all(o.get("verbatim") is True for o in _mrkdwn_objects(blocks)), blocks
        for shown in [text, *_mrkdwn_texts(blocks)]:
            if shown.endswith("|Runbook>"):  # the operator's link; the scope in it is quoted
                assert shown.startswith("<https://w/team%3D%3C%21channel") and shown.count("|") == 1
                continue
            assert "<!" not in shown and "<@" not in shown and "<#" not in shown, shown
            assert "<http" not in shown and "\u202e" not in shown and "\x1b" not in shown, shown
    shown = flat(render_alert(hostile)[1])
    assert "&lt;!channel&gt; urgent" in shown and "&lt;http://evil.example|click here&gt;" in shown
    assert "\\\\u202e" in shown and "\\\\x1b" in shown  # shown as codes (JSON-escaped here)


def test_the_undo_line_is_one_safe_shell_command() -> None:
    import shlex

    keys = ["batch-1; rm -rf ~", "$(curl evil)", "-rf", "a`b"]
    undo = next(t for t in _mrkdwn_texts(render_alert(alert(targets=keys))[1]) if "To undo" in t)
    command = undo.split("`", 1)[1].rsplit("`", 1)[0]
    assert "`" not in command  # the key's backtick cannot close the code span
    words = shlex.split(command.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert words[:3] == ["spendbrake", "resume", "--"]
    assert words[3:] == keys[:3]  # each key one argument, nothing run, no option
    # A key a code span cannot show as it is (a backtick, a hidden character) is left out:
    # shown with a look-alike or a code, the pasted command would name another key.
    assert undo.endswith("and 1 more key, not shown: the Resume button resumes them all")
    (only,) = [t for t in _mrkdwn_texts(render_alert(alert(targets=["a`b"]))[1]) if "undo" in t]
    assert (
        only
        == "To undo: resume the 1 key paused with the Resume button (names a command cannot hold)"
    )


def _buttons_of(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


LONG = "k" * 512  # the longest name an event may carry


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"targets": [f"k{i}" for i in range(150)]},  # short names: a value under 2,000 chars
        {"targets": [f"sk-batch-{i:04d}-" + "x" * 40 for i in range(200)]},
        {"targets": [LONG], "scope": {"api_key": LONG}, "id": f"anomaly/api_key={LONG}/1"},
        {
            "scope": {f: LONG for f in ("team", "feature", "customer", "model", "environment")},
            "id": "anomaly/" + ",".join(f"{f}={LONG}" for f in ("feature", "team")) + "/1",
        },
    ],
    ids=["one", "150-short", "200-long", "long-key", "long-scope"],
)
def test_every_button_fits_slack_and_the_click_parser_accepts_it(extra: dict[str, Any]) -> None:
    """A button value over 2,000 characters makes Slack refuse the whole post; one the
    parser refuses makes the click fail (150 short keys, a key or id over 500 characters):
    too many keys resume ``all``, too long a scope snoozes the incident's."""
    hostile = alert(**extra)
    _, blocks = render_alert(hostile)
    buttons = _buttons_of(blocks)
    assert [b["action_id"] for b in buttons] == [RESUME_ACTION_ID, SNOOZE_ACTION_ID]
    for button in buttons:
        assert len(button["value"]) <= 2000 and len(button["text"]["text"]) <= 75
        body = build_payload(button["action_id"], button["value"])
        click = parse_interaction(sign_request("s", body, 1), body, signing_secret="s", now=1)
        assert isinstance(click, Interaction), click
        assert click.alert_id == hostile.id
        if click.action == "resume":
            assert click.every or click.targets == tuple(hostile.targets)
        else:
            assert click.scope in (hostile.scope, None)
    confirm = buttons[0]["confirm"]  # a stray tap asks before the spend runs again
    assert confirm["title"]["text"] == "Resume spend?" and len(confirm["text"]["text"]) <= 300
    assert f"Unblock the {len(hostile.targets)} key" in confirm["text"]["text"]
    label = buttons[0]["text"]["text"]
    assert label == (
        "Resume key" if len(hostile.targets) == 1 else f"Resume {len(hostile.targets)} keys"
    )


def test_the_undo_line_lists_whole_keys_and_says_how_many_it_leaves_out() -> None:
    """Cut at the block limit, the command ended mid-key with no closing backtick: pasted,
    it resumed a key of that prefix (or none) and left the rest paused, unsaid."""
    import shlex

    many = [f"research-nightly-{i:04d}-" + "x" * 20 for i in range(200)]
    undo = next(t for t in _mrkdwn_texts(render_alert(alert(targets=many))[1]) if "To undo" in t)
    command, _, rest = undo.removeprefix("To undo: `").partition("`")
    words = shlex.split(command)
    assert words[:2] == ["spendbrake", "resume"] and words[2:] == many[: len(words) - 2]
    left = 200 - (len(words) - 2)
    assert (
        left > 0 and rest == f" and {left} more keys, not shown: the Resume button resumes them all"
    )


def test_without_the_button_endpoint_no_buttons_are_shown() -> None:
    _, blocks = render_alert(alert(), buttons=False)
    assert _buttons_of(blocks) == [] and "spendbrake resume" in flat(blocks)


def test_the_parent_update_keeps_the_runbook_link() -> None:
    _, blocks = render_parent_update(
        alert(), "Paused 1 key(s)", ["#0 critical"], runbook_url="https://wiki/{kind}"
    )
    assert "<https://wiki/anomaly|Runbook>" in flat(blocks)


def test_a_resume_answer_names_each_outcome_and_mentions_only_user_ids() -> None:
    from spendbrake.actions import ResumeAnswer, render_resume_answer

    answer = ResumeAnswer(queued=["sk-a"], underway=["sk-b"], done=["sk-c"], refused=["<!here>"])
    text = render_resume_answer(answer, "U42", known=True, gateway_problem="HTTP 503 <!channel>")
    assert text.startswith("Resuming 1 key (sk-a), requested by <@U42>;")
    assert "Already being resumed (an earlier click): 1 key (sk-b)." in text
    assert "Already resumed: 1 key (sk-c)." in text
    assert "Not resumed: 1 key (&lt;!here&gt;): SpendBrake did not pause it" in text
    assert "failing right now (HTTP 503 &lt;!channel&gt;)" in text
    assert "<@<!channel>>" not in render_resume_answer(answer, "<!channel>", known=True)


def test_the_message_says_since_when_and_an_update_keeps_the_first_detection() -> None:
    first = "2026-09-10T02:07:00.000000Z"
    _, blocks = render_alert(alert(detected_at=first))
    assert "caught 2026-09-10T02:07 UTC" in flat(blocks)
    later = alert(seq=2, detected_at="2026-09-10T02:41:00.000000Z")
    _, blocks = render_parent_update(later, "Paused 1 key(s)", ["#0", "#2"], since=first)
    assert "caught 2026-09-10T02:07 UTC" in flat(blocks) and "02:41" not in flat(blocks)


def test_the_money_line_measures_each_kind_against_what_it_means() -> None:
    """``expected_usd`` is a budget's threshold amount, a projection's total, a burn rate's
    even pace, an anomaly's whole usual hour. Shown alike, a loop caught 5 minutes into an
    hour read "$7.80 vs $9.80 expected (0.8x)" and a projection "(0.0x)": pages that read
    as no problem."""
    early = alert(observed_usd=7.8, expected_usd=9.8, detected_at="2026-09-10T02:05:00.000000Z")
    line = flat(render_alert(early)[1])
    assert "*$7.80* in its first 5 min, 9.6x the $0.82 expected by then" in line, line
    assert "($9.80 in a usual window)" in line and "0.8x" not in line
    closed = alert(detected_at="2026-09-10T03:00:00.400000Z")
    assert "*$412.50* vs $10.25 expected (40.2x)" in flat(render_alert(closed)[1])
    projection = alert(kind="projection", observed_usd=371.78, expected_usd=8906.29)
    line = flat(render_alert(projection)[1])
    assert "*$371.78* so far, projected $8,906.29 by the period's end" in line, line
    budget = alert(kind="budget", threshold=0.5, observed_usd=103.82, expected_usd=100.0)
    assert "*$103.82* of the $200.00 budget (52%)" in flat(render_alert(budget)[1])
    burn = alert(kind="burn_rate", threshold=14.4, observed_usd=122.69, expected_usd=8.33)
    assert "*$122.69* vs $8.33 at an even pace (14.7x)" in flat(render_alert(burn)[1])


def test_a_notice_shows_no_amount_and_a_window_of_days_ends_on_its_date() -> None:
    """An unpriced model's notice read "*$0.00* · 2026-10-01T00:00–00:00 UTC": nothing
    spent, in no time at all. It shows its day; a month's budget its end date."""
    from spendbrake.streamer._processor import unpriced_model_alert

    notice = unpriced_model_alert("openai", "gpt-9", 1790812800, daily=True)
    line = _mrkdwn_texts(render_alert(notice)[1])[1]
    assert line == "2026-10-01T00:00–2026-10-02T00:00 UTC", line
    month = alert(
        kind="budget",
        threshold=0.5,
        observed_usd=510.0,
        expected_usd=500.0,
        window_start="2026-09-01T00:00:00.000000Z",
        window_end="2026-10-01T00:00:00.000000Z",
    )
    assert "2026-09-01T00:00–2026-10-01T00:00 UTC" in _mrkdwn_texts(render_alert(month)[1])[1]


def test_a_message_about_an_alert_caught_long_ago_is_marked_as_history() -> None:
    """A new deployment reading a week of history posted each alert of that week in
    minutes, every one reading as happening now ("caught 2026-09-10T02:50" the only hint).
    Posted more than an hour after it was caught, the message says it is history, in the
    notification text first."""
    caught = alert(detected_at="2026-09-10T02:50:00.000000Z")
    at = parse_ts(caught.detected_at)
    text, blocks = render_alert(caught, posted_at=at + 5 * 86400)
    assert text.startswith("[history, 5 d old] :rotating_light: Runaway spend")
    assert "From history" in flat(blocks[:2]) and "caught 2026-09-10T02:50 UTC, 5 d" in flat(blocks)
    text, blocks = render_followup(caught, "Paused 1 key(s)", posted_at=at + 3 * 3600)
    assert text.startswith("[history, 3 h old]") and "From history" in flat(blocks)
    text, blocks = render_parent_update(caught, "Paused", [], posted_at=at + 86400 * 3)
    assert text.startswith("[history, 3 d old]")
    # Posted within the hour (or with no time given): as before.
    for posted_at in (at + 600, None):
        text, blocks = render_alert(caught, posted_at=posted_at)
        assert not text.startswith("[history") and "From history" not in flat(blocks)


def test_docs_block_kit_example_is_what_render_alert_prints() -> None:
    """docs/actions.md shows a batch key's runaway "as the stage posts it": it drifted
    (no ``verbatim`` on mrkdwn, a reason the detector no longer writes) with nothing to
    tell. The alert here is the one that example describes; its blocks must be the doc's."""
    doc = (Path(__file__).parents[2] / "docs" / "actions.md").read_text(encoding="utf-8")
    shown = re.findall(r"```json\n(.*?)```", doc, re.S)
    assert len(shown) == 1, "docs/actions.md: one Block Kit JSON example"
    key = "research-nightly-summarizer"
    example = alert(
        scope={"api_key": key},
        also=[{"team": "research", "feature": "nightly-summarizer"}, {"team": "research"}],
        detected_at="2026-09-10T02:07:00.000000Z",
        targets=[key],
        id=f"anomaly/api_key={key}/1789005600",
        score=1.0,
        reason=(
            f"api_key={key}: spend $412 in the first 12% of Thu 02:00, already 40.2x the "
            "$10.25 expected for all of it, fast and slow windows both high"
        ),
    )
    _, blocks = render_alert(
        example,
        outcome=f"Paused 1 key(s): {key}",
        runbook_url="https://wiki.example.com/runbooks/ai-spend#{kind}",
    )
    assert orjson.loads(orjson.dumps(blocks)) == orjson.loads(shown[0])


def test_a_stop_lifted_by_a_reload_says_so_with_no_empty_window() -> None:
    """The lift's message read "new period, its hard stop lifted" mid-period, over a line
    "– UTC" (the lift has no window)."""
    lift = alert(
        kind="budget", detector="budget", budget="research-daily", action="resume",
        severity="info", scope={"team": "research"}, also=[], window_start="", window_end="",
        observed_usd=None, expected_usd=None, id="budget/research-daily/lifted/1796000000",
        detected_at="2026-11-30T10:13:20.000000Z", targets=["sk-batch"],
        reason="research-daily: removed by a config reload; resuming what its hard stop paused",
    )  # fmt: skip
    text, blocks = render_alert(lift)
    assert "hard stop lifted by a config reload" in text and "new period" not in text
    shown = orjson.dumps(blocks).decode()
    assert "UTC" in shown and "– UTC" not in shown and "·  caught" not in shown
    period = msgspec.structs.replace(lift, id="budget/research-daily/1796000000")
    assert "new period, its hard stop lifted" in render_alert(period)[0]
