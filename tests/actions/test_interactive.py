"""The Slack button endpoint: pure parsing, then a real server over TCP with httpx."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import orjson
import pytest
from slack_sdk.signature import SignatureVerifier

from spendbrake.actions import (
    Interaction,
    InteractionServer,
    Rejected,
    build_payload,
    parse_interaction,
    sign_request,
)
from spendbrake.fakes.slack import FakeSlack

SECRET = "slack-signing-NEVER-SHOW-8c1d"
NOW = 1_700_000_000
RESUME = {"alert": "inc-42", "targets": ["sk-batch-a", "sk-batch-b"]}
SNOOZE = {"alert": "inc-42", "scope": {"team": "search", "feature": None}}


def parse(headers: dict[str, str], body: bytes, now: float = NOW) -> Interaction | Rejected:
    return parse_interaction(headers, body, signing_secret=SECRET, now=now)


def signed(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return sign_request(secret, body, timestamp)


# --- pure -------------------------------------------------------------------------------


def test_resume_click_reads_targets_user_and_response_url() -> None:
    body = build_payload("spendbrake_resume", RESUME, user="U042", action_ts="1700000001.5")
    result = parse(signed(body), body)
    assert result == Interaction(
        action="resume",
        alert_id="inc-42",
        targets=("sk-batch-a", "sk-batch-b"),
        scope={},
        user="U042",
        response_url="https://hooks.slack.com/actions/T1/1/xyz",
        click_id="trigger.1700000001.5/1700000001.5",
    )


def test_snooze_click_reads_scope_with_null_fields() -> None:
    body = build_payload("spendbrake_snooze", SNOOZE, response_url=None)
    result = parse(signed(body), body)
    assert isinstance(result, Interaction)
    assert (result.action, result.alert_id, result.targets) == ("snooze", "inc-42", ())
    assert result.scope == {"team": "search", "feature": None}
    assert result.response_url is None


def test_undo_snooze_click_reads_the_scope_like_a_snooze() -> None:
    body = build_payload("spendbrake_unsnooze", SNOOZE)
    result = parse(signed(body), body)
    assert isinstance(result, Interaction)
    assert (result.action, result.alert_id) == ("unsnooze", "inc-42")
    assert result.scope == {"team": "search", "feature": None}
    body = build_payload("spendbrake_unsnooze", {"alert": "inc-42", "scope": None})
    result = parse(signed(body), body)
    assert isinstance(result, Interaction) and (result.action, result.scope) == ("unsnooze", None)


def test_header_names_match_case_insensitively() -> None:
    body = build_payload("spendbrake_resume", RESUME)
    lower = {name.lower(): value for name, value in signed(body).items()}
    upper = {name.upper(): value for name, value in signed(body).items()}
    assert isinstance(parse(lower, body), Interaction)
    assert isinstance(parse(upper, body), Interaction)


def test_sign_request_agrees_with_slack_sdk() -> None:
    body = build_payload("spendbrake_snooze", SNOOZE)
    headers = signed(body)
    expected = SignatureVerifier(SECRET).generate_signature(timestamp=str(NOW), body=body)
    assert headers["X-Slack-Signature"] == expected
    assert headers["X-Slack-Request-Timestamp"] == str(NOW)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Slack-Request-Timestamp": str(NOW)}, "missing"),
        ({"X-Slack-Signature": "v0=00"}, "missing"),
        ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, "malformed"),
        ({"X-Slack-Request-Timestamp": f" {NOW}", "X-Slack-Signature": "v0=00"}, "malformed"),
        ({"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0=00"}, "not match"),
    ],
)
def test_missing_or_malformed_signature_is_401(headers: dict[str, str], reason: str) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    result = parse(headers, body)
    assert isinstance(result, Rejected)
    assert result.status == 401
    assert reason in result.reason


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("1" * 5000, "v0=00"),  # int() refuses 4,301+ digits: ValueError
        (str(NOW), "v0=\u00e9" + "0" * 63),  # non-ASCII: compare_digest raises TypeError
        (str(NOW), "v0=\udc80"),  # a lone surrogate, as a server may decode raw bytes
        (str(NOW), "v0=" + "0" * 100_000),
        (str(NOW), "v0=\x00" + "0" * 63),
        ("\u0661\u0667\u0660\u0660", "v0=00"),  # Arabic-Indic digits are isdigit() too
    ],
)
def test_any_malformed_header_is_refused_never_raised(timestamp: str, signature: str) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    result = parse(headers, body)
    assert isinstance(result, Rejected) and result.status == 401, result
    assert len(result.reason) < 200


def test_webhook_verifier_refuses_malformed_headers() -> None:
    from spendbrake.actions import sign_webhook, verify_webhook_signature

    body = b'{"action":"block"}'
    good = sign_webhook(b"s3cret", str(NOW), body)
    for timestamp, signature in (
        ("1" * 5000, good),
        (str(NOW), "sha256=\u00e9"),
        (str(NOW), "sha256=\udc80"),
        ("\u0661" * 10, good),
    ):
        assert verify_webhook_signature(b"s3cret", timestamp, body, signature, now=NOW) is False
    assert verify_webhook_signature(b"s3cret", str(NOW), body, good, now=NOW) is True


def test_wrong_secret_is_401() -> None:
    body = build_payload("spendbrake_resume", RESUME)
    assert parse(signed(body, secret="someone-else"), body) == Rejected(
        401, "signature does not match"
    )


@pytest.mark.parametrize("offset_s", [-600, 600, -301])
def test_stale_or_future_timestamp_is_401_even_when_signed(offset_s: int) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    result = parse(signed(body, timestamp=NOW + offset_s), body)
    assert isinstance(result, Rejected)
    assert result.status == 401
    assert "stale" in result.reason


def test_timestamp_inside_five_minutes_is_accepted() -> None:
    body = build_payload("spendbrake_resume", RESUME)
    assert isinstance(parse(signed(body, timestamp=NOW - 300), body), Interaction)


def test_tampered_body_is_401() -> None:
    body = build_payload("spendbrake_resume", RESUME)
    headers = signed(body)
    tampered = build_payload("spendbrake_resume", {**RESUME, "targets": ["sk-prod-critical"]})
    assert parse(headers, tampered) == Rejected(401, "signature does not match")


def test_non_utf8_body_is_401_not_an_exception() -> None:
    body = b"payload=\xff\xfe"
    assert parse(signed(body), body) == Rejected(401, "signature does not match")


def signed_parse(body: bytes) -> Interaction | Rejected:
    return parse(signed(body), body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "exactly one payload"),
        (b"text=hello", "exactly one payload"),
        (b"payload=a&payload=b", "exactly one payload"),
        (b"payload=%7Bnot-json", "not JSON"),
        (b"payload=%5B1%5D", "not a JSON object"),
        (b"payload=%7B%22type%22%3A%22view_submission%22%7D", "unsupported payload type"),
        (b"payload=%7B%22type%22%3A%22block_actions%22%7D", "no actions"),
    ],
)
def test_malformed_payload_is_400(body: bytes, reason: str) -> None:
    result = signed_parse(body)
    assert isinstance(result, Rejected)
    assert result.status == 400
    assert reason in result.reason


def test_unknown_action_id_is_400_and_quotes_it_bounded() -> None:
    result = signed_parse(build_payload("delete_everything" * 20, RESUME))
    assert isinstance(result, Rejected)
    assert result.status == 400
    assert result.reason.startswith("unknown action_id 'delete_everything")
    assert len(result.reason) < 100


@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        ("spendbrake_resume", "not json"),
        ("spendbrake_resume", '"a string"'),
        ("spendbrake_resume", ""),
        ("spendbrake_resume", orjson.dumps({"alert": "a", "targets": ["k" * 2000]}).decode()),
        ("spendbrake_resume", {"targets": ["sk-1"]}),
        ("spendbrake_resume", {"alert": "", "targets": ["sk-1"]}),
        ("spendbrake_resume", {"alert": "a"}),
        ("spendbrake_resume", {"alert": "a", "targets": []}),
        ("spendbrake_resume", {"alert": "a", "targets": ["sk-1", 7]}),
        ("spendbrake_resume", {"alert": "a", "targets": "sk-1"}),
        ("spendbrake_snooze", {"alert": "a"}),
        ("spendbrake_snooze", {"alert": "a", "scope": ["team"]}),
        ("spendbrake_snooze", {"alert": "a", "scope": {"team": 3}}),
        ("spendbrake_snooze", {"alert": "a", "scope": {f"f{i}": "x" for i in range(17)}}),
    ],
)
def test_bad_button_value_is_400(action_id: str, value: str | dict[str, object]) -> None:
    result = signed_parse(build_payload(action_id, value))
    assert isinstance(result, Rejected)
    assert result.status == 400
    assert result.reason.startswith(action_id)


def test_payload_without_user_is_400() -> None:
    form = urllib.parse.parse_qs(build_payload("spendbrake_resume", RESUME).decode())
    payload = orjson.loads(form["payload"][0])
    del payload["user"]
    body = urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()
    assert signed_parse(body) == Rejected(400, "payload has no user")


def test_empty_secret_is_a_config_error() -> None:
    body = build_payload("spendbrake_resume", RESUME)
    with pytest.raises(ValueError, match="signing_secret"):
        parse_interaction(signed(body), body, signing_secret=" ", now=NOW)


# --- a real server over TCP ---------------------------------------------------------------


class Recorder:
    """The action stage's side of the seam: records what the server hands over."""

    def __init__(self) -> None:
        self.clicks: list[Interaction] = []
        self.rejected: list[tuple[Rejected, str]] = []
        self.reply: str | None = "Resuming 2 keys"
        self.hook: Callable[[], Awaitable[None]] | None = None

    async def on_interaction(self, interaction: Interaction) -> str | None:
        if self.hook is not None:
            await self.hook()
        self.clicks.append(interaction)
        return self.reply

    async def on_rejected(self, rejected: Rejected, remote: str) -> None:
        self.rejected.append((rejected, remote))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """Where a click's ``response_url`` points."""
    with FakeSlack() as fake:
        yield fake


def origin(slack: FakeSlack) -> str:
    return slack.response_url.split("/actions/")[0]


@pytest.fixture
async def server(recorder: Recorder, slack: FakeSlack) -> AsyncIterator[InteractionServer]:
    srv = InteractionServer(
        SECRET,
        on_interaction=recorder.on_interaction,
        on_rejected=recorder.on_rejected,
        clock=lambda: NOW,
        answer_within_s=2.0,
        response_origins=[origin(slack)],
    )
    await srv.start()
    yield srv
    await srv.stop()


async def responses(slack: FakeSlack, count: int = 1) -> list[dict[str, object]]:
    """The messages posted to the response_url, once ``count`` arrived (or 5 s passed)."""
    await asyncio.to_thread(slack.wait_for, lambda: len(slack.responses) >= count)
    return slack.responses


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


async def post(
    client: httpx.AsyncClient, server: InteractionServer, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    return await client.post(server.url, content=body, headers=form)


async def test_server_binds_loopback_on_a_free_port_and_hides_the_secret(
    server: InteractionServer,
) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}/slack/actions"
    assert SECRET not in repr(server)


async def test_port_before_start_is_an_error(recorder: Recorder) -> None:
    srv = InteractionServer(
        SECRET, on_interaction=recorder.on_interaction, on_rejected=recorder.on_rejected
    )
    with pytest.raises(RuntimeError, match="after start"):
        _ = srv.port
    await srv.stop()  # stopping a server never started is harmless


async def test_resume_click_reaches_the_callback_and_the_clicker_hears_back(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder, slack: FakeSlack
) -> None:
    """Slack reads no message in the HTTP answer to a block_actions request (it answered
    ``in_channel`` text there, which nobody saw): the answer goes to the response_url."""
    body = build_payload("spendbrake_resume", RESUME, user="U042", response_url=slack.response_url)
    response = await post(client, server, body, signed(body))
    assert response.status_code == 200 and response.content == b""
    assert await responses(slack) == [
        {"response_type": "ephemeral", "replace_original": False, "text": "Resuming 2 keys"}
    ]
    [click] = recorder.clicks
    assert (click.action, click.targets, click.user) == (
        "resume",
        ("sk-batch-a", "sk-batch-b"),
        "U042",
    )
    assert recorder.rejected == []


async def test_snooze_click_carries_the_scope_and_empty_text_answers_empty_200(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder, slack: FakeSlack
) -> None:
    recorder.reply = None
    body = build_payload("spendbrake_snooze", SNOOZE, response_url=slack.response_url)
    response = await post(client, server, body, signed(body))
    assert response.status_code == 200
    assert response.content == b""
    [click] = recorder.clicks
    assert click.action == "snooze"
    assert click.scope == {"team": "search", "feature": None}
    await server.stop()  # every callback and its answer are done
    assert slack.responses == []  # nothing to say, nothing posted


async def test_a_response_url_that_is_not_slacks_is_never_called(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    """The URL comes in the request: a click signed with a leaked secret must not make the
    worker POST to any address it names (only ``response_origins`` are called)."""
    with FakeSlack() as elsewhere:
        body = build_payload("spendbrake_resume", RESUME, response_url=elsewhere.response_url)
        assert (await post(client, server, body, signed(body))).status_code == 200
        await server.stop()
        assert len(recorder.clicks) == 1 and elsewhere.responses == []


async def test_missing_signature_is_401_and_audited(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    response = await post(client, server, body, {})
    assert response.status_code == 401
    assert recorder.clicks == []
    [(rejected, remote)] = recorder.rejected
    assert rejected.status == 401
    assert "missing" in rejected.reason
    assert remote.startswith("127.0.0.1")


async def test_forwarded_for_is_kept_in_the_audit_remote(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    response = await post(client, server, body, {"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 401
    [(_, remote)] = recorder.rejected
    assert remote == "127.0.0.1 (forwarded for 203.0.113.9)"


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "tampered"])
async def test_forged_stale_or_tampered_request_is_401_and_audited(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder, case: str
) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    if case == "wrong_secret":
        headers = signed(body, secret="guessed-secret")
    elif case == "stale":  # a captured click replayed 10 minutes later
        headers = signed(body, timestamp=NOW - 600)
    else:
        headers = signed(body)
        body = body.replace(b"sk-batch-a", b"sk-batch-z")
    response = await post(client, server, body, headers)
    assert response.status_code == 401
    assert SECRET not in response.text
    assert recorder.clicks == []
    [(rejected, _)] = recorder.rejected
    assert rejected.status == 401


async def test_non_ascii_signature_bytes_are_401_not_500(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = build_payload("spendbrake_resume", RESUME)
    headers = {
        "X-Slack-Request-Timestamp": str(NOW),
        "X-Slack-Signature": ("v0=" + "\u00e9" * 64).encode("utf-8"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = await client.post(server.url, content=body, headers=headers)
    assert response.status_code == 401
    assert recorder.clicks == [] and recorder.rejected[0][0].status == 401


async def test_malformed_payload_is_400_and_audited(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = b"payload=%7Bnot-json"
    response = await post(client, server, body, signed(body))
    assert response.status_code == 400
    assert recorder.clicks == []
    assert [r.status for r, _ in recorder.rejected] == [400]


async def test_unknown_action_id_is_400(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = build_payload("spendbrake_delete_all", RESUME)
    response = await post(client, server, body, signed(body))
    assert response.status_code == 400
    assert "unknown action_id" in response.text
    assert recorder.clicks == []


async def test_oversized_body_is_413_before_any_parsing(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = b"payload=" + b"a" * (70 * 1024)
    response = await post(client, server, body, signed(body))
    assert response.status_code == 413
    [(rejected, _)] = recorder.rejected
    assert rejected.status == 413


async def test_oversized_chunked_body_is_413(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read() enforces the cap
        for _ in range(80):
            yield b"a" * 1024

    response = await client.post(server.url, content=chunks())
    assert response.status_code == 413
    assert [r.status for r, _ in recorder.rejected] == [413]


async def test_get_is_405_and_other_paths_404(
    server: InteractionServer, client: httpx.AsyncClient
) -> None:
    assert (await client.get(server.url)).status_code == 405
    body = build_payload("spendbrake_resume", RESUME)
    other = f"http://127.0.0.1:{server.port}/slack/events"
    assert (await client.post(other, content=body, headers=signed(body))).status_code == 404


async def test_callback_failure_is_500_and_the_clicker_is_told(
    server: InteractionServer,
    client: httpx.AsyncClient,
    recorder: Recorder,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        raise RuntimeError("outbox closed")

    recorder.hook = boom
    body = build_payload("spendbrake_resume", RESUME, response_url=slack.response_url)
    with caplog.at_level(logging.ERROR, logger="spendbrake.actions._interactive"):
        response = await post(client, server, body, signed(body))
    assert response.status_code == 500
    assert "outbox closed" not in response.text
    assert "on_interaction failed" in caplog.text
    [told] = await responses(slack)
    assert "could not act on this click" in str(told["text"])
    assert "outbox closed" not in str(told["text"])


async def test_slow_callback_gets_an_early_empty_200_and_still_finishes(
    recorder: Recorder, client: httpx.AsyncClient, slack: FakeSlack
) -> None:
    release = asyncio.Event()

    async def wait_for_release() -> None:
        await release.wait()

    recorder.hook = wait_for_release
    async with InteractionServer(
        SECRET,
        on_interaction=recorder.on_interaction,
        on_rejected=recorder.on_rejected,
        clock=lambda: NOW,
        answer_within_s=0.05,
        response_origins=[origin(slack)],
    ) as srv:
        body = build_payload("spendbrake_resume", RESUME, response_url=slack.response_url)
        response = await post(client, srv, body, signed(body))
        assert response.status_code == 200
        assert response.content == b""
        assert recorder.clicks == []  # the callback cannot finish before release
        release.set()
    # stop() waited for the late callback, and its answer still reached the clicker.
    assert [c.alert_id for c in recorder.clicks] == ["inc-42"]
    assert [r["text"] for r in slack.responses] == ["Resuming 2 keys"]


async def test_failing_audit_callback_still_answers_the_refusal(
    server: InteractionServer, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    async def broken(rejected: Rejected, remote: str) -> None:
        raise RuntimeError("audit topic down")

    server.on_rejected = broken
    body = build_payload("spendbrake_resume", RESUME)
    response = await post(client, server, body, {})
    assert response.status_code == 401
