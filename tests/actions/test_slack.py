"""SlackNotifier: the real slack_sdk client against the fake Slack server over TCP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from spendbrake.actions._slack import SlackNotifier
from spendbrake.schemas import SlackConfig

from spendbrake.fakes.slack import FakeSlack

TOKEN = "xoxb-unit"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def notifier(slack: FakeSlack, token: str = TOKEN) -> SlackNotifier:
    config = SlackConfig(token=token, channel="#ai-spend", base_url=slack.base_url)
    return SlackNotifier(config, timeout_s=1.0)


async def test_post_reply_and_update(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        parent = await client.post("hi", BLOCKS, dedupe_key="a#0/post")
        assert parent.ok and parent.ts
        reply = await client.post("more", BLOCKS, dedupe_key="a#1/reply", thread_ts=parent.ts)
        assert reply.ok
        updated = await client.update(parent.ts, "hi (updated)", BLOCKS)
        assert updated.ok
    finally:
        await client.close()
    assert [m["text"] for m in slack.parents()] == ["hi (updated)"]
    assert [m["text"] for m in slack.thread(parent.ts)] == ["more"]
    assert slack.messages[0]["metadata"]["event_payload"] == {"dedupe_key": "a#0/post"}


async def test_a_429_is_waited_out_inside_the_call(slack: FakeSlack) -> None:
    slack.fail_with(429, retry_after=0, times=1)
    client = notifier(slack)
    try:
        outcome = await client.post("hi", BLOCKS, dedupe_key="k")
    finally:
        await client.close()
    assert outcome.ok
    assert slack.calls == ["chat.postMessage", "chat.postMessage"]
    assert len(slack.messages) == 1


async def test_persistent_429_and_500_come_back_as_retryable(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        slack.fail_with(429, retry_after=0, times=3)
        limited = await client.post("hi", BLOCKS, dedupe_key="k")
        slack.fail_with(500, times=2)
        broken = await client.post("hi", BLOCKS, dedupe_key="k")
    finally:
        await client.close()
    assert not limited.ok and not limited.permanent and limited.error == "ratelimited"
    assert not broken.ok and not broken.permanent and broken.error == "http 500"
    assert slack.messages == []


async def test_a_bad_token_is_permanent(slack: FakeSlack) -> None:
    client = notifier(slack, token="xoxb-wrong")
    try:
        outcome = await client.post("hi", BLOCKS, dedupe_key="k")
    finally:
        await client.close()
    assert not outcome.ok and outcome.permanent and outcome.error == "invalid_auth"


async def test_an_unknown_outcome_is_resolved_without_a_second_post(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        first_attempt = time.time()
        slack.hang(2.5)  # Slack records the message, the answer comes after our timeout
        lost = await client.post("hi", BLOCKS, dedupe_key="x#0/post")
        assert not lost.ok and not lost.permanent
        again = await client.post("hi", BLOCKS, dedupe_key="x#0/post", since=first_attempt)
    finally:
        await client.close()
    assert again.ok and again.ts == slack.messages[0]["ts"]
    assert len(slack.messages) == 1


async def test_slack_down_is_retryable_and_up_delivers(slack: FakeSlack) -> None:
    client = notifier(slack)
    try:
        slack.down()
        down = await client.post("hi", BLOCKS, dedupe_key="d")
        slack.up()
        up = await client.post("hi", BLOCKS, dedupe_key="d", since=time.time() - 5)
    finally:
        await client.close()
    assert not down.ok and not down.permanent
    assert up.ok and len(slack.messages) == 1
