"""The Slack digest: when it is due, what it says, and that it arrives once with its chart."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from spendbrake._broker import EmbeddedBroker
from spendbrake._digest import DigestError, digest_message, due_period, send_digest
from spendbrake.fakes.slack import CHANNEL_ID, FakeSlack
from spendbrake.schemas import Config, SlackConfig

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("schedule", "now", "label", "due"),
    [
        ("weekly", _ts(2026, 11, 23, 9), "2026-W47", _ts(2026, 11, 23, 9)),  # Monday, on time
        ("weekly", _ts(2026, 11, 23, 8, 59), "2026-W46", _ts(2026, 11, 16, 9)),  # a minute early
        ("weekly", _ts(2026, 11, 29, 23), "2026-W47", _ts(2026, 11, 23, 9)),  # Sunday
        ("weekly", _ts(2027, 1, 4, 10), "2026-W53", _ts(2027, 1, 4, 9)),  # ISO year of 53 weeks
        ("monthly", _ts(2026, 12, 1, 9), "2026-11", _ts(2026, 12, 1, 9)),
        ("monthly", _ts(2027, 1, 15), "2026-12", _ts(2027, 1, 1, 9)),
        ("monthly", _ts(2026, 3, 1, 8), "2026-01", _ts(2026, 2, 1, 9)),
    ],
)
def test_due_period(schedule: str, now: float, label: str, due: float) -> None:
    assert due_period(schedule, now) == (label, due)


def test_off_is_never_due() -> None:
    assert due_period("off", _ts(2026, 12, 1, 9)) is None


def _report() -> dict:
    rows = [
        {"team": f"team-{i}", "cost_usd": 100.0 - i * 10, "share_pct": 10.0, "trend_pct": 5.0 - i}
        for i in range(8)
    ]
    return {
        "period": {
            "label": "2026-10",
            "prior": "2026-09",
            "start": "2026-10-01T00:00:00.000000Z",
            "end": "2026-11-01T00:00:00.000000Z",
        },
        "by": "team",
        "total": {"cost_usd": 1234.5, "calls": 98765, "trend_pct": 12.0, "cache_hit_ratio": 0.4},
        "rows": rows,
        "caching": {"saved_usd": 56.7},
        "outcomes": [{"outcome": "ticket_resolved", "cost_per_outcome_usd": 4.2}],
        "traces": {"p50_usd": 0.12, "p95_usd": 0.9, "count": 4321},
        "projection": {
            "period_end_usd": 1300.0,
            "year_end_usd": 15000.0,
            "monthly_rate_at_year_end_usd": 1500.0,
            "year": 2026,
        },
        "alerts": {
            "count": 4,
            "by_kind": {"anomaly": 3, "budget": 1},
            "incidents": 3,
            "incidents_by_kind": {"anomaly": 2, "budget": 1},
        },
        "actions": {"count": 1, "by_result": {"block ok": 1}},
    }


def test_message_says_total_trend_top_rows_unit_costs_and_incidents() -> None:
    text, blocks = digest_message(_report())
    assert text == "AI spend 2026-10: $1,234.50 (▲12% vs 2026-09)"
    body = str(blocks)
    for piece in (
        "98,765",
        "40% of input tokens, saved $56.70",
        "$1,300.00 by the period's end; at current growth $1,500.00/month by the year's end",
        "`team-0` $100.00 (10%, ▲5%)",
        "2 other(s) $70.00",
        "$4.20 per ticket resolved",
        "$0.12 per agent task",
        "3 incident(s) alerted (anomaly 2, budget 1); 1 action(s) (block ok 1)",
        "spendbrake report --period 2026-10 --by team",
    ):
        assert piece in body, piece
    assert "team-6" not in body  # past the top rows: counted in "others"
    assert "Trends" not in body  # none this period


def test_message_lists_the_trends_that_were_not_paged() -> None:
    report = _report()
    reason = "api_key=sk-a: creeping up: days averaged +31% over the same days of earlier weeks"
    report["alerts"]["trends"] = [
        {"reason": reason, "scope": {"api_key": "sk-a"}, "kind": "wow", "id": f"wow/{i}"}
        for i in range(7)
    ]
    _, blocks = digest_message(report)
    body = str(blocks)
    assert "*Trends (not paged)*" in body and body.count(reason) == 5
    assert "2 more" in body
    # A reason quotes names from events and the config: "<!here>" pinged the channel.
    report["alerts"]["trends"] = [{"reason": "<!here> daily spent $0.60", "id": "b/1"}]
    body = str(digest_message(report)[1])
    assert "&lt;!here&gt; daily spent" in body and "<!here>" not in body


def test_the_digest_says_its_days_and_each_trends_day_and_counts_incidents(
    tmp_path: Path,
) -> None:
    """On a real store: the header named the period by label alone ("2026-10"), with no days
    or time zone; a trend's "day $264 vs $175" did not say which day; and the incidents
    line counted alert records, an escalation and the unpaged trends included."""
    from spendbrake._report import parse_period, report_from_store
    from tests.spendbrake.test_report import make_store

    report, _ = report_from_store(
        make_store(tmp_path / "s.duckdb"), parse_period("2026-10"), now=_ts(2026, 11, 5)
    )
    _, blocks = digest_message(report)
    assert blocks[0]["text"]["text"] == "AI spend, 2026-10 (Thu 2026-10-01 to Sat 2026-10-31, UTC)"
    body = str(blocks)
    assert "• Thu 10-01: api_key=key-1: creeping up" in body
    assert "1 incident(s) alerted (budget 1); 2 action(s)" in body
    # The period is over: its projection to the period's end is its total, not repeated.
    assert "by the period's end" not in body and "by the year's end" in body


def test_a_trend_against_the_month_spendbrake_was_deployed_in_says_so(tmp_path: Path) -> None:
    """Deployed on Oct 26, the first whole month's digest read "▲248% vs 2026-10" against six
    days of October, and nothing said so. The numbers stay; the headline and the report say
    how much of the prior period was counted."""
    from spendbrake._report import parse_period, report_from_store
    from spendbrake.streamer import StoreBatch, apply_batch, connect_store
    from tests.spendbrake.test_report import rollup

    batch = StoreBatch()
    for day in range(36):  # Oct 26 to Nov 30, $10 a day
        batch.add_rollup(rollup((), (), _ts(2026, 10, 26) + day * 86400, 10.0))
        batch.add_rollup(rollup(("team",), ("search",), _ts(2026, 10, 26) + day * 86400, 10.0))
    con = connect_store(tmp_path / "s.duckdb")
    apply_batch(con, batch, {("rollups", 0): 1})
    con.close()
    report, _ = report_from_store(
        tmp_path / "s.duckdb", parse_period("2026-11"), now=_ts(2026, 12, 2)
    )
    assert report["period"]["prior_days_counted"] == 6
    assert report["notes"][0] == (
        "nothing was counted before 2026-10-26: 2026-10 holds 6 of its 31 days, and trends "
        "against it compare a whole period with that part"
    )
    text, _ = digest_message(report)
    assert text == "AI spend 2026-11: $300.00 (▲400% vs 2026-10, 6 days of it counted)"
    # A prior period the store holds whole says nothing more.
    week, _ = report_from_store(
        tmp_path / "s.duckdb", parse_period("2026-W47"), now=_ts(2026, 12, 2)
    )
    assert week["period"]["prior_days_counted"] is None
    assert not any("nothing was counted" in note for note in week["notes"])
    assert digest_message(week)[0] == "AI spend 2026-W47: $70.00 (=0% vs 2026-W46)"


def test_the_per_task_line_says_from_when_tasks_count_once_weeks_were_dropped(
    tmp_path: Path,
) -> None:
    """``store.trace_weeks: 1`` kept November's last week alone: the month's digest said
    "$0.0010 per agent task (p50; ... 6,933 tasks)" as if over the month, and a week before
    the kept one had no line at all. The line says from when its tasks count, or that none
    were kept."""
    from spendbrake._report import parse_period, report_from_store
    from spendbrake.streamer import (
        StoreBatch,
        TracePartial,
        apply_batch,
        connect_store,
        drop_trace_weeks,
    )
    from tests.spendbrake.test_report import rollup

    batch = StoreBatch()
    for day in range(30):  # November, $10 a day, a task a day
        start = _ts(2026, 11, 1) + day * 86400
        batch.add_rollup(rollup((), (), start, 10.0))
        batch.add_rollup(rollup(("team",), ("search",), start, 10.0))
        partial = TracePartial(f"t{day}", 0, "e", "search", None, None, 10**6, 1, start, start)
        batch.add_trace(partial)
    con = connect_store(tmp_path / "s.duckdb")
    apply_batch(con, batch, {("rollups", 0): 1})
    assert drop_trace_weeks(con, 1)  # keeps the week of Mon 11-30
    con.close()
    month, _ = report_from_store(
        tmp_path / "s.duckdb", parse_period("2026-11"), now=_ts(2026, 12, 2)
    )
    assert month["traces"]["count"] == 1
    assert month["traces_from"] == "2026-11-30T00:00:00.000000Z"
    assert "$0.0010 per agent task (p50; p95 $0.0010, 1 task from Mon 11-30 on)" in str(
        digest_message(month)[1]
    )
    week, _ = report_from_store(
        tmp_path / "s.duckdb", parse_period("2026-W47"), now=_ts(2026, 12, 2)
    )
    assert week["traces"] is None
    assert "per agent task: not kept before Mon 11-30 (store.trace_weeks)" in str(
        digest_message(week)[1]
    )
    # A period the kept weeks hold whole says nothing of it.
    kept, _ = report_from_store(
        tmp_path / "s.duckdb", parse_period("2026-11-30"), now=_ts(2026, 12, 2)
    )
    assert kept["traces_from"] is None
    assert "(p50; p95 $0.0010, 1 task)" in str(digest_message(kept)[1])


def test_amounts_under_ten_cents_keep_two_significant_digits() -> None:
    """A typical agent task's p50 of $0.0010 read "$0.00 per agent task"."""
    report = _report()
    report["traces"] = {"p50_usd": 0.001, "p95_usd": 0.0684, "count": 10}
    report["outcomes"] = [{"outcome": "answer", "cost_per_outcome_usd": 0.4311}]
    body = str(digest_message(report)[1])
    assert "$0.0010 per agent task (p50; p95 $0.068, 10 tasks)" in body
    assert "$0.43 per answer" in body and not re.search(r"\$0\.00(?!\d)", body)


def test_team_and_outcome_names_cannot_mention_or_link_in_the_digest() -> None:
    report = _report()
    report["rows"][0]["team"] = "<!channel>`<http://x|click>"
    report["rows"][1]["team"] = "ops\u202eexe"
    report["outcomes"][0]["outcome"] = "<@U123>"
    _, blocks = digest_message(report)
    from tests.actions.test_blocks import _mrkdwn_objects

    assert all(o.get("verbatim") is True for o in _mrkdwn_objects(blocks)), blocks
    texts = [f["text"] for b in blocks for f in b.get("fields", [])]
    texts += [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    shown = "\n".join(texts)
    assert "<" not in shown and ">" not in shown and "\u202e" not in shown, shown
    assert "`&lt;!channel&gt;\u02cb&lt;http://x|click&gt;`" in shown  # one code span
    assert "ops\\u202eexe" in shown and "per &lt;@U123&gt;" in shown


def test_digest_arrives_once_with_its_chart_in_the_thread(tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(PNG)
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        config = SlackConfig(token="xoxb-d", base_url=slack.base_url)
        ids: dict[str, str] = {}  # what the state dir keeps between runs
        first = asyncio.run(
            send_digest(config, _report(), chart, channel="#finance", since=0, channel_ids=ids)
        )
        again = asyncio.run(
            send_digest(config, _report(), chart, channel="#finance", since=0, channel_ids=ids)
        )
        assert ids == {"#finance": CHANNEL_ID}  # learned from the first post's answer
        assert "conversations.list" not in slack.calls
        assert (first.posted, first.chart_uploaded) == (True, True)
        assert (again.posted, again.chart_uploaded, again.ts) == (False, False, first.ts)
        parents = slack.parents()
        assert len(parents) == 1 and parents[0]["text"].startswith("AI spend 2026-10")
        files = slack.files
        assert len(files) == 1 and files[0]["content"] == PNG
        assert files[0]["thread_ts"] == first.ts


def test_a_slack_failure_is_an_error_that_names_the_call(tmp_path: Path) -> None:
    with FakeSlack(token="xoxb-d") as slack:
        slack.fail_with(status=500, times=None)
        config = SlackConfig(token="xoxb-d", base_url=slack.base_url)
        ids = {"#ai-spend": CHANNEL_ID}
        with pytest.raises(DigestError, match="conversations"):
            asyncio.run(send_digest(config, _report(), None, since=0, channel_ids=ids))
        with pytest.raises(DigestError, match=r"chat\.postMessage to #ai-spend failed: http 500"):
            asyncio.run(send_digest(config, _report(), None, since=None))
    # A channel the bot is not in: named, with what to do (it said "channel_not_found").
    with FakeSlack(token="xoxb-d", channel="ai-spend") as slack:
        config = SlackConfig(token="xoxb-d", base_url=slack.base_url)
        with pytest.raises(DigestError) as refused:
            asyncio.run(send_digest(config, _report(), None, channel="#finops", since=None))
    assert str(refused.value) == (
        "slack chat.postMessage to #finops failed: channel_not_found (invite the bot to "
        "#finops, or name a channel it is in)"
    )


def _config_file(tmp_path: Path, slack: FakeSlack, schedule: str = "off") -> Path:
    path = tmp_path / "spendbrake.yaml"
    path.write_text(
        f"slack: {{token: xoxb-d, base_url: '{slack.base_url}', channel: '#ai-spend'}}\n"
        f"digest: {{schedule: {schedule}, channel: '#finance'}}\n"
    )
    return path


def test_digest_command_posts_the_report_and_its_chart(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spendbrake.cli import main
    from tests.spendbrake.test_report import make_store

    store = make_store(tmp_path / "s.duckdb")
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        config = _config_file(tmp_path, slack)
        args = ["digest", "--period", "2026-10", "--store", str(store), "--config", str(config)]
        args += ["--state-dir", str(tmp_path / "state")]  # where the channel's id is kept
        first = CliRunner().invoke(main, args)
        assert first.exit_code == 0, first.output
        assert "digest 2026-10 posted to #finance" in first.output
        again = CliRunner().invoke(main, args)
        assert again.exit_code == 0 and "already in #finance" in again.output, again.output
        (parent,) = slack.parents()
        # The numbers are the store's: $40 in October, +100% vs September's $20.
        assert parent["text"] == "AI spend 2026-10: $40.00 (▲100% vs 2026-09)"
        assert "`search` $30.00 (75%, ▲200%)" in str(parent["blocks"])
        (chart,) = slack.files
        assert (
            chart["content"].startswith(b"\x89PNG\r\n\x1a\n") and chart["thread_ts"] == parent["ts"]
        )
        forced = CliRunner().invoke(main, [*args, "--force"])
        assert forced.exit_code == 0 and len(slack.parents()) == 2 and len(slack.files) == 2


def test_digest_command_errors_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spendbrake.cli import main

    with FakeSlack(token="xoxb-d") as slack:
        config = _config_file(tmp_path, slack)
        missing = tmp_path / "none.duckdb"
        args = ["digest", "--period", "2026-10", "--store", str(missing), "--config", str(config)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and f"error: no store at {missing}" in result.output
    empty = tmp_path / "empty.yaml"
    empty.write_text("slack: {channel: '#x'}\n")
    result = CliRunner().invoke(main, ["digest", "--period", "2026-10", "--config", str(empty)])
    assert result.exit_code == 1 and "slack.token is not set" in result.output
    # The period is checked first: a typo is named before a missing setting.
    result = CliRunner().invoke(main, ["digest", "--period", "2026-13", "--config", str(empty)])
    assert result.exit_code == 1 and result.output.startswith("error: period '2026-13'")


def test_schedule_sends_each_due_digest_once_across_a_restart(tmp_path: Path) -> None:
    from spendbrake._config_loader import load_config
    from spendbrake._digest import DigestScheduler
    from tests.spendbrake.test_report import make_store

    store = make_store(tmp_path / "s.duckdb")
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        config = load_config(_config_file(tmp_path, slack, schedule="monthly"))
        state = tmp_path / "state"

        async def ticks() -> list:
            scheduler = DigestScheduler(config, store, state)
            # Before October's is due, the latest due one is September's (the schedule
            # was just turned on): sent once, then October's when it falls due.
            september = await scheduler.tick(_ts(2026, 11, 1, 8))
            october = await scheduler.tick(_ts(2026, 11, 1, 9, 5))
            later = await scheduler.tick(_ts(2026, 11, 2))
            restarted = DigestScheduler(config, store, state)
            return [september, october, later, await restarted.tick(_ts(2026, 11, 3))]

        september, october, later, restarted = asyncio.run(ticks())
        assert len(september) == 1 and len(october) == 1 and october[0].chart_uploaded
        assert later == [] and restarted == []
        assert [p["text"][:17] for p in slack.parents()] == [
            "AI spend 2026-09:",
            "AI spend 2026-10:",
        ]
        assert len(slack.files) == 2


def test_schedule_finds_a_digest_posted_by_hand_after_the_period_ended(tmp_path: Path) -> None:
    """`spendbrake digest --period 2026-10` on November 1 at 08:30, before the 09:00 schedule:
    the scheduler finds that post and does not send a second copy. A digest posted by hand
    while the month ran (part of it) does not stand for the whole month's."""
    from click.testing import CliRunner

    from spendbrake._config_loader import load_config
    from spendbrake._digest import DigestScheduler
    from spendbrake.cli import main
    from tests.spendbrake.test_report import make_store

    store = make_store(tmp_path / "s.duckdb")
    for by_hand_at, scheduled in ((_ts(2026, 11, 1, 8, 30), False), (_ts(2026, 10, 20), True)):
        state = tmp_path / f"state-{by_hand_at:.0f}"
        with FakeSlack(token="xoxb-d", channel="finance") as slack:
            path = _config_file(tmp_path, slack, schedule="monthly")
            args = ["digest", "--period", "2026-10", "--store", str(store), "--config", str(path)]
            slack.clock = lambda at=by_hand_at: at
            by_hand = CliRunner().invoke(main, [*args, "--state-dir", str(state)])
            assert by_hand.exit_code == 0, by_hand.output
            slack.clock = lambda: _ts(2026, 11, 1, 9)
            scheduler = DigestScheduler(load_config(path), store, state)
            (result,) = asyncio.run(scheduler.tick(_ts(2026, 11, 1, 9)))
            assert result.posted is scheduled, by_hand_at
            assert len(slack.parents()) == 1 + scheduled
            assert result.ts == slack.parents()[-1]["ts"]


def test_schedule_sends_the_periods_missed_while_slack_was_down(tmp_path: Path) -> None:
    """Slack down from November 1 09:05 to December 2: on its return October's digest goes
    out, then November's, each recorded once."""
    from spendbrake._config_loader import load_config
    from spendbrake._digest import DigestScheduler
    from spendbrake.streamer import StoreBatch, apply_batch, connect_store
    from tests.spendbrake.test_report import make_store, rollup

    store = make_store(tmp_path / "s.duckdb")
    batch = StoreBatch()
    batch.add_rollup(rollup((), (), _ts(2026, 11, 3), 7.0))
    batch.add_rollup(rollup(("team",), ("search",), _ts(2026, 11, 3), 7.0))
    batch.add_rollup(rollup(("team", "model"), ("search", "m1"), _ts(2026, 11, 3), 7.0))
    con = connect_store(store)
    apply_batch(con, batch, {("rollups", 0): 2})
    con.close()
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        config = load_config(_config_file(tmp_path, slack, schedule="monthly"))
        state = tmp_path / "state"

        async def ticks() -> list:
            scheduler = DigestScheduler(config, store, state)
            sent = [await scheduler.tick(_ts(2026, 11, 1, 8))]  # September's: on time
            slack.down()
            sent.append(await scheduler.tick(_ts(2026, 11, 1, 9, 5)))
            sent.append(await scheduler.tick(_ts(2026, 11, 20)))
            slack.up()
            sent.append(await DigestScheduler(config, store, state).tick(_ts(2026, 12, 2)))
            return sent

        september, down, still_down, back = asyncio.run(ticks())
        assert [p["text"][:17] for p in slack.parents()] == [
            "AI spend 2026-09:",
            "AI spend 2026-10:",
            "AI spend 2026-11:",
        ]
        assert len(september) == 1 and down == [] and still_down == []
        assert [r.posted for r in back] == [True, True]
        assert len(slack.files) == 3
        assert sorted(orjson.loads((state / "digest" / "sent.json").read_bytes())) == [
            "2026-09/team",
            "2026-10/team",
            "2026-11/team",
        ]


@pytest.mark.parametrize(
    ("schedule", "now", "sent", "labels"),
    [
        # A new deployment (or a new grouping): the latest period alone, no backlog.
        ("monthly", _ts(2026, 12, 2), [], ["2026-11"]),
        ("monthly", _ts(2026, 12, 2), ["2026-09/feature"], ["2026-11"]),
        ("weekly", _ts(2026, 12, 2), ["2026-09/team"], ["2026-W48"]),
        # Every period missed since the record began, oldest first.
        ("monthly", _ts(2026, 12, 2), ["2026-09/team"], ["2026-10", "2026-11"]),
        ("monthly", _ts(2026, 12, 2), ["2026-09/team", "2026-11/team"], ["2026-10"]),
        (
            "weekly",
            _ts(2026, 12, 7, 9),
            ["2026-W45/team"],
            ["2026-W46", "2026-W47", "2026-W48", "2026-W49"],
        ),
        ("weekly", _ts(2027, 1, 11, 9), ["2026-W52/team"], ["2026-W53", "2027-W01"]),
        # At most CATCH_UP periods back, however old the record.
        ("monthly", _ts(2026, 12, 2), ["2025-01/team"], ["2026-09", "2026-10", "2026-11"]),
        ("weekly", _ts(2026, 12, 7, 9), ["2026-W30/team"], [f"2026-W{w}" for w in range(45, 50)]),
        ("monthly", _ts(2026, 12, 2), ["2026-11/team"], []),
        ("off", _ts(2026, 12, 2), [], []),
    ],
)
def test_which_due_periods_the_schedule_sends(
    schedule: str, now: float, sent: list[str], labels: list[str]
) -> None:
    from spendbrake._digest import unsent_periods

    chosen = unsent_periods(schedule, now, 9, "team", set(sent))
    assert [label for label, _ in chosen] == labels
    assert [due for _, due in chosen] == sorted(due for _, due in chosen)


def test_digest_command_after_the_period_ended_does_not_take_a_partial_one_for_it(
    tmp_path: Path,
) -> None:
    """A digest of October posted by hand on October 20 held part of the month: once the
    month is over, `spendbrake digest --period 2026-10` posts the whole one without --force
    (and finds that one on a second run)."""
    from click.testing import CliRunner

    from spendbrake.cli import main
    from tests.spendbrake.test_report import make_store

    store = make_store(tmp_path / "s.duckdb")
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        config = _config_file(tmp_path, slack)
        args = ["digest", "--period", "2026-10", "--store", str(store), "--config", str(config)]
        args += ["--state-dir", str(tmp_path / "state")]
        slack.clock = lambda: _ts(2026, 10, 20)
        assert CliRunner().invoke(main, args).exit_code == 0
        slack.clock = lambda: _ts(2026, 11, 2)
        whole = CliRunner().invoke(main, args)
        assert whole.exit_code == 0 and "posted to #finance" in whole.output, whole.output
        again = CliRunner().invoke(main, args)
        assert "already in #finance" in again.output, again.output
        assert len(slack.parents()) == 2


async def _commit_ends(bootstrap: str, group: str, topic: str) -> None:
    """Commit ``group`` at the end of partitions 0 and 1 of ``topic``: an ingest that has
    counted everything."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from spendbrake.schemas import KafkaConfig
    from spendbrake.stages.stage import fetched_ends

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(tps)
        # Where the log really ends: Tansu's ListOffsets answers short (``fetched_ends``).
        ends = await fetched_ends(
            KafkaConfig(bootstrap_servers=bootstrap), dict(await consumer.end_offsets(tps))
        )
        await consumer.commit(ends)
    finally:
        await consumer.stop()


def _monthly_digest_config(
    broker: EmbeddedBroker, topics: dict[str, str], slack: FakeSlack, path: Path
) -> Config:
    """A monthly digest to #finance from the store at ``path``, on the test's own topics."""
    return Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": topics,
                # Its own group: the default one's members in other tests on this broker
                # made the tests' commits fail (UnknownMemberId) under load.
                "group_id": topics["events"],
            },
            "slack": {"token": "xoxb-d", "base_url": slack.base_url, "channel": "#ai-spend"},
            "digest": {"schedule": "monthly", "channel": "#finance"},
            "store": {"path": str(path)},
        }
    )


def test_schedule_waits_for_the_store_to_hold_the_whole_period(
    broker, make_topic, tmp_path: Path
) -> None:
    """A worker back from downtime: the ingest is still counting its backlog (nothing of
    the events topic committed) and the marks written with the rollups say October 20. The
    October digest waits; once every input's mark is past November 1 plus the lateness, it
    goes out."""
    from aiokafka import AIOKafkaProducer

    from spendbrake.schemas import WatermarkMark, encode_mark
    from spendbrake.stages import Worker, WorkerSettings
    from tests.spendbrake.test_report import make_store
    from tests.streamer.kafka_io import publish_raw

    names = ("events", "rollups", "traces", "alerts", "actions")
    topics = {name: make_topic(name, partitions=2) for name in names}
    path = make_store(tmp_path / "s.duckdb")

    async def marks(watermark: float) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            for target in (0, 1):
                for mark in (0, 1):
                    value = encode_mark(WatermarkMark(mark, watermark))
                    await producer.send_and_wait(topics["rollups"], value, partition=target)
        finally:
            await producer.stop()

    async def run(slack: FakeSlack) -> tuple[list, list, list]:
        config = _monthly_digest_config(broker, topics, slack, path)
        backlog = [b'{"event_id": "e%d"}' % i for i in range(20)]  # on both partitions
        await publish_raw(broker.bootstrap_servers, topics["events"], backlog)
        await marks(_ts(2026, 10, 20))
        settings = WorkerSettings(state_dir=tmp_path / "state", flush_interval_s=0.1)
        worker = Worker(config, settings, ["store"])
        store, (scheduler,) = worker.stages["store"], worker.others
        assert scheduler.complete == store.complete_until
        worker.others.clear()  # ticked here, at chosen times, not by its own loop
        task = asyncio.create_task(worker.run())
        try:
            due = _ts(2026, 11, 1, 9, 5)
            while len(store.marks) < 4:  # a guard below bounds this wait
                await asyncio.sleep(0.1)
            waiting = await scheduler.tick(due)
            partial = await store.complete_until()
            await marks(_ts(2026, 11, 1) + 601)
            while await store.complete_until() < _ts(2026, 11, 1) + 601:
                await asyncio.sleep(0.1)
            sent = await scheduler.tick(due)
            # The ingest commits the whole backlog: nothing more to wait for, whatever the
            # marks (a quiet partition's stays where its last event put it).
            await _commit_ends(broker.bootstrap_servers, config.kafka.group_id, topics["events"])
            while await store.complete_until() != math.inf:
                await asyncio.sleep(0.1)
            return waiting, [partial], sent
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)

    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        waiting, (partial,), sent = asyncio.run(asyncio.wait_for(run(slack), 120))
        assert waiting == [] and partial == _ts(2026, 10, 20)
        assert len(sent) == 1 and sent[0].posted
        assert [p["text"][:17] for p in slack.parents()] == ["AI spend 2026-10:"]


def test_a_digest_due_at_a_start_goes_out_without_saying_it_waits(
    broker, make_topic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store already holds October and the ingest has counted every event. At a start
    the schedule logged "digest 2026-10 waits for the store to catch up (spend counted to
    nothing yet)" and sent it a minute later: asked before the store stage had taken its
    partitions, and then once more with no earlier answer to compare with. Now the store
    says it cannot tell yet (the schedule asks again in a second, saying nothing), and its
    first answer once started counts what the ingest has committed."""
    from spendbrake.stages import Worker, WorkerSettings
    from tests.spendbrake.test_report import make_store
    from tests.streamer.kafka_io import publish_raw

    names = ("events", "rollups", "traces", "alerts", "actions")
    topics = {name: make_topic(name, partitions=2) for name in names}
    path = make_store(tmp_path / "s.duckdb")

    async def run(slack: FakeSlack) -> tuple[list, list]:
        config = _monthly_digest_config(broker, topics, slack, path)
        events = [b'{"event_id": "e%d"}' % i for i in range(20)]  # on both partitions
        await publish_raw(broker.bootstrap_servers, topics["events"], events)
        await _commit_ends(broker.bootstrap_servers, config.kafka.group_id, topics["events"])
        settings = WorkerSettings(state_dir=tmp_path / "state", flush_interval_s=0.1)
        worker = Worker(config, settings, ["store"])
        store, (scheduler,) = worker.stages["store"], worker.others
        worker.others.clear()  # ticked here, at chosen times, not by its own loop
        due = _ts(2026, 11, 1, 9, 5)
        starting = await scheduler.tick(due)  # the stage has not started
        task = asyncio.create_task(worker.run())
        try:
            while not (store.consumer and store.consumer.assignment()):  # bounded below
                await asyncio.sleep(0.05)
            return starting, await scheduler.tick(due)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)

    caplog.set_level(logging.INFO, logger="spendbrake._digest")
    with FakeSlack(token="xoxb-d", channel="finance") as slack:
        starting, sent = asyncio.run(asyncio.wait_for(run(slack), 120))
    assert "waits for the store" not in caplog.text, caplog.text
    assert starting == []
    assert len(sent) == 1 and sent[0].posted
    assert [p["text"][:17] for p in slack.parents()] == ["AI spend 2026-10:"]
