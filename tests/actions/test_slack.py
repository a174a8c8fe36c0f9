"""SlackNotifier: the real slack_sdk client against the fake Slack server over TCP.

Each answer is classified by what it proves about the message: nothing posted (send
again), maybe posted (look first), a config problem (wait for the fix), or never."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from spendbrake.actions._slack import SlackNotifier
from spendbrake.fakes.slack import CHANNEL_ID, PRIVATE_ID, FakeSlack
from spendbrake.schemas import SlackConfig
from tests.actions.test_slack_scopes import documented_scopes

TOKEN = "xoxb-unit"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]
#: The bot token scopes the README documents.
DOCUMENTED = documented_scopes()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def notifier(
    slack: FakeSlack, token: str = TOKEN, channel: str = "#ai-spend", timeout_s: float = 1.0
) -> SlackNotifier:
    config = SlackConfig(token=token, channel=channel, base_url=slack.base_url)
    return SlackNotifier(config, timeout_s=timeout_s)


async def test_post_reply_and_update(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        parent = await client.post("hi", BLOCKS, dedupe_key="a#0/post")
        assert parent.ok and parent.ts and parent.channel == CHANNEL_ID
        assert client.channel_id == CHANNEL_ID  # learned from the answer, no lookup
        reply = await client.post(
            "more", BLOCKS, dedupe_key="a#1/reply", thread_ts=parent.ts, channel=parent.channel
        )
        assert reply.ok
        updated = await client.update(parent.ts, "hi (updated)", BLOCKS, channel=parent.channel)
        assert updated.ok
    finally:
        await client.close()
    assert [m["text"] for m in slack.parents()] == ["hi (updated)"]
    assert [m["text"] for m in slack.thread(parent.ts)] == ["more"]
    assert slack.messages[0]["metadata"]["event_payload"] == {"dedupe_key": "a#0/post"}
    assert slack.calls == ["chat.postMessage", "chat.postMessage", "chat.update"]


async def test_a_429_comes_back_at_once_with_its_retry_after(slack: FakeSlack) -> None:
    # Not slept out inside the call: the stage decides what goes first after it.
    slack.fail_with(429, retry_after=7, times=1)
    client = notifier(slack)
    try:
        outcome = await client.post("hi", BLOCKS, dedupe_key="k")
    finally:
        await client.close()
    assert (outcome.ok, outcome.failure, outcome.error) == (False, "retry", "ratelimited")
    assert outcome.retry_after == 7.0
    assert slack.calls == ["chat.postMessage"] and slack.messages == []


async def test_what_an_answer_proves_about_the_post(slack: FakeSlack) -> None:
    client = notifier(slack, timeout_s=1.0)
    try:
        slack.fail_with(503)  # no body: a proxy in front of Slack, nothing was posted
        proxy = await client.post("hi", BLOCKS, dedupe_key="p")
        slack.fail_with(500, error="fatal_error", apply=True)  # Slack: it may have happened
        fatal = await client.post("hi", BLOCKS, dedupe_key="f")
        slack.hang(2.5)  # recorded, answered after our timeout
        hung = await client.post("hi", BLOCKS, dedupe_key="h")
        slack.down()
        refused = await client.post("hi", BLOCKS, dedupe_key="r")
        slack.up()
    finally:
        await client.close()
    assert (proxy.failure, proxy.error) == ("retry", "http 503")
    assert (fatal.failure, fatal.error) == ("unsure", "fatal_error")
    assert hung.failure == "unsure"
    assert refused.failure == "retry" and "no connection" in (refused.error or "")
    # One call each (the refused one never arrived): slack_sdk's own handlers would have
    # repeated the 5xx.
    assert slack.calls.count("chat.postMessage") == 3
    assert len(slack.messages) == 2  # the fatal_error one and the hung one


async def test_an_unsure_post_is_found_by_id_and_not_posted_twice(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        assert (await client.post("first", BLOCKS, dedupe_key="x#0/post")).ok  # learns the id
        first_attempt = time.time()
        slack.hang(2.5)
        lost = await client.post("hi", BLOCKS, dedupe_key="x#1/post")
        assert lost.failure == "unsure"
        again = await client.post("hi", BLOCKS, dedupe_key="x#1/post", since=first_attempt)
    finally:
        await client.close()
    assert again.ok and again.ts == slack.messages[1]["ts"]
    assert len(slack.messages) == 2
    assert "conversations.list" not in slack.calls  # the id came from Slack's answer
    assert slack.calls[-1] == "conversations.history"


async def test_an_unsure_reply_is_looked_for_in_its_thread(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        parent = await client.post("parent", BLOCKS, dedupe_key="t#0/post")
        assert parent.ts is not None
        since = time.time()
        slack.fail_with(500, error="internal_error", apply=True)
        lost = await client.post("r", BLOCKS, dedupe_key="t#1/reply", thread_ts=parent.ts)
        again = await client.post(
            "r", BLOCKS, dedupe_key="t#1/reply", thread_ts=parent.ts, since=since
        )
    finally:
        await client.close()
    assert lost.failure == "unsure" and again.ok
    assert len(slack.thread(parent.ts)) == 1
    assert slack.calls[-1] == "conversations.replies"


async def test_a_private_channel_is_checked_with_the_documented_scopes() -> None:
    with FakeSlack(token=TOKEN, private=True, scopes=DOCUMENTED) as slack:
        client = notifier(slack, channel="#ai-spend")
        try:
            assert (await client.post("first", BLOCKS, dedupe_key="a")).channel == PRIVATE_ID
            since = time.time()
            slack.hang(2.5)
            assert (await client.post("hi", BLOCKS, dedupe_key="b")).failure == "unsure"
            again = await client.post("hi", BLOCKS, dedupe_key="b", since=since)
        finally:
            await client.close()
        assert again.ok and not again.unchecked and len(slack.messages) == 2
        assert all(error is None for _, status, error in slack.answers if status == 200)


async def test_without_the_history_scope_an_unsure_post_goes_out_unchecked() -> None:
    # Rather a visible duplicate than a lost alert; the outcome names the missing scope.
    with FakeSlack(token=TOKEN, private=True, scopes={"chat:write", "channels:history"}) as slack:
        client = notifier(slack)
        try:
            await client.post("first", BLOCKS, dedupe_key="a")
            since = time.time()
            slack.hang(2.5)
            await client.post("hi", BLOCKS, dedupe_key="b")
            again = await client.post("hi", BLOCKS, dedupe_key="b", since=since)
        finally:
            await client.close()
        assert again.ok and again.unchecked == "groups:history"
        assert [m["text"] for m in slack.messages] == ["first", "hi", "hi"]


async def test_with_no_channel_id_known_an_unsure_post_goes_out_unchecked(
    slack: FakeSlack,
) -> None:
    client = notifier(slack)
    try:
        since = time.time()
        slack.hang(2.5)  # the very first post: no answer, so no channel id yet
        await client.post("hi", BLOCKS, dedupe_key="b")
        again = await client.post("hi", BLOCKS, dedupe_key="b", since=since)
    finally:
        await client.close()
    assert again.ok and again.unchecked == "the id of #ai-spend"
    assert "conversations.list" not in slack.calls


async def test_a_channel_given_by_id_is_checkable_from_the_first_post(slack: FakeSlack) -> None:
    client = notifier(slack, channel=CHANNEL_ID)
    try:
        since = time.time()
        slack.hang(2.5)
        await client.post("hi", BLOCKS, dedupe_key="b")
        again = await client.post("hi", BLOCKS, dedupe_key="b", since=since)
    finally:
        await client.close()
    assert again.ok and not again.unchecked and len(slack.messages) == 1


async def test_config_refusals_name_what_to_fix() -> None:
    with FakeSlack(token=TOKEN, scopes={"channels:history"}) as slack:
        client = notifier(slack)
        wrong = notifier(slack, token="xoxb-wrong")
        try:
            scope = await client.post("hi", BLOCKS, dedupe_key="a")
            slack.grant("chat:write")
            slack.kick()
            outside = await client.post("hi", BLOCKS, dedupe_key="a")
            token = await wrong.post("hi", BLOCKS, dedupe_key="a")
        finally:
            await client.close()
            await wrong.close()
    assert (scope.failure, scope.error, scope.needed) == ("config", "missing_scope", "chat:write")
    assert (outside.error, outside.needed) == ("not_in_channel", "#ai-spend")
    assert (token.failure, token.error, token.needed) == ("config", "invalid_auth", "slack.token")


async def test_a_bot_outside_a_private_channel_does_not_find_it() -> None:
    with FakeSlack(token=TOKEN, private=True, member=False) as slack:
        client = notifier(slack)
        try:
            outcome = await client.post("hi", BLOCKS, dedupe_key="a")
        finally:
            await client.close()
    assert (outcome.failure, outcome.error, outcome.needed) == (
        "config",
        "channel_not_found",
        "#ai-spend",
    )


async def test_a_message_slack_refuses_is_permanent(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        outcome = await client.update("1.000000", "gone", BLOCKS)
    finally:
        await client.close()
    assert (outcome.failure, outcome.error) == ("permanent", "message_not_found")


async def test_slack_down_is_retryable_and_up_delivers(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        slack.down()
        down = await client.post("hi", BLOCKS, dedupe_key="d")
        slack.up()
        up = await client.post("hi", BLOCKS, dedupe_key="d")
    finally:
        await client.close()
    assert down.failure == "retry"
    assert up.ok and len(slack.messages) == 1


async def test_find_reads_past_the_first_page_and_a_clock_ahead(slack: FakeSlack) -> None:
    """A post whose answer was lost is looked up before sending again: behind 250 newer
    messages (history answers 200 at most a page) and with this host's clock 100 s ahead
    of Slack's, it is still found, so it is not posted twice."""
    client = notifier(slack)
    try:
        ours = await client.post("ours", BLOCKS, dedupe_key="x#0/post")
        for i in range(250):
            await client.post(f"other {i}", BLOCKS, dedupe_key=f"o{i}#0/post")
        found = await client.find("x#0/post", since=time.time() + 100.0)
        missing = await client.find("nobody#0/post", since=time.time())
    finally:
        await client.close()
    assert found.ok and found.ts == ours.ts
    assert missing.ok and missing.ts is None
    assert slack.calls.count("conversations.history") == 4  # two pages a look
