"""Gateway hard-stops against a real fake gateway over TCP, with real httpx clients."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from spendbrake.actions import (
    GatewayOutcome,
    LiteLLMGateway,
    WebhookGateway,
    backoff_delay,
    make_gateway,
    sign_webhook,
    verify_webhook_signature,
)
from spendbrake.fakes.gateway import BlockCount, FakeGateway
from spendbrake.schemas import ConfigError, GatewayConfig

MASTER = "sk-master-NEVER-SHOW-7f3a9c"
SECRET = "whsec-NEVER-SHOW-0b1e22"
KEY_A = "sk-batch-nightly-aaaa"
KEY_B = "sk-batch-backfill-bbbb"
TIMEOUT_S = 0.5


@pytest.fixture
def fake() -> Iterator[FakeGateway]:
    with FakeGateway(
        master_key=MASTER, secret=SECRET, keys={KEY_A, KEY_B}, teams={"team-batch"}
    ) as gw:
        yield gw


@pytest.fixture
async def litellm(fake: FakeGateway) -> AsyncIterator[LiteLLMGateway]:
    config = GatewayConfig(kind="litellm", url=fake.url, master_key=MASTER, timeout_s=TIMEOUT_S)
    gateway = make_gateway(config)
    assert isinstance(gateway, LiteLLMGateway)
    yield gateway
    await gateway.aclose()


@pytest.fixture
async def webhook(fake: FakeGateway) -> AsyncIterator[WebhookGateway]:
    config = GatewayConfig(kind="webhook", url=fake.webhook_url, secret=SECRET, timeout_s=TIMEOUT_S)
    gateway = make_gateway(config)
    assert isinstance(gateway, WebhookGateway)
    yield gateway
    await gateway.aclose()


# -- LiteLLM -------------------------------------------------------------------------------


async def test_block_and_unblock_key(fake: FakeGateway, litellm: LiteLLMGateway) -> None:
    blocked = await litellm.block("key", KEY_A, idempotency_key="inc-1:block")
    assert blocked == GatewayOutcome(ok=True, permanent=False, status=200, detail="block key: ok")
    assert fake.blocked_keys == {KEY_A}

    unblocked = await litellm.unblock("key", KEY_A, idempotency_key="inc-1:resume")
    assert unblocked.ok and unblocked.status == 200
    assert fake.blocked_keys == set()

    calls = fake.calls
    assert [(c["path"], c["body"], c["authorized"]) for c in calls] == [
        ("/key/block", {"key": KEY_A}, True),
        ("/key/unblock", {"key": KEY_A}, True),
    ]
    assert calls[0]["client_port"] == calls[1]["client_port"]  # one kept-alive connection


async def test_block_and_unblock_team(fake: FakeGateway, litellm: LiteLLMGateway) -> None:
    assert (await litellm.block("team", "team-batch", idempotency_key="k")).ok
    assert fake.blocked_teams == {"team-batch"}
    assert fake.calls[-1]["body"] == {"team_id": "team-batch"}
    assert (await litellm.unblock("team", "team-batch", idempotency_key="k")).ok
    assert fake.blocked_teams == set()


async def test_blocking_twice_succeeds_and_changes_state_once(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    first = await litellm.block("key", KEY_A, idempotency_key="k")
    second = await litellm.block("key", KEY_A, idempotency_key="k")
    assert first.ok and second.ok
    assert fake.block_count(KEY_A) == BlockCount(changed=1, total=2)


async def test_key_token_and_raw_key_name_the_same_key(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    token = hashlib.sha256(KEY_A.encode()).hexdigest()  # LiteLLM's user_api_key_hash
    assert (await litellm.block("key", token, idempotency_key="k")).ok
    assert fake.is_blocked(KEY_A)


async def test_unknown_key_and_team_are_permanent(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    key = await litellm.block("key", "sk-never-issued-zzzz", idempotency_key="k")
    assert (key.ok, key.permanent, key.status) == (False, True, 404)
    assert "Key not found" in key.detail

    team = await litellm.block("team", "team-ghost", idempotency_key="k")
    assert (team.ok, team.permanent, team.status) == (False, True, 404)
    assert "team-ghost" in team.detail
    assert fake.blocked_keys == set() and fake.blocked_teams == set()


async def test_key_alias_is_refused_as_bad_format(litellm: LiteLLMGateway) -> None:
    outcome = await litellm.block("key", "nightly-batch", idempotency_key="k")
    assert (outcome.ok, outcome.permanent, outcome.status) == (False, True, 400)
    assert "Invalid key format" in outcome.detail


async def test_wrong_master_key_is_permanent(fake: FakeGateway) -> None:
    gateway = LiteLLMGateway(fake.url, "sk-not-the-master-key", timeout_s=TIMEOUT_S)
    try:
        outcome = await gateway.block("key", KEY_A, idempotency_key="k")
    finally:
        await gateway.aclose()
    assert (outcome.ok, outcome.permanent, outcome.status) == (False, True, 401)
    assert fake.calls[-1]["authorized"] is False
    assert fake.blocked_keys == set()


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        *[(status, False) for status in (500, 502, 503, 429, 408, 409)],
        *[(status, True) for status in (400, 403, 404, 422)],
    ],
)
async def test_status_decides_retry(
    fake: FakeGateway, litellm: LiteLLMGateway, status: int, permanent: bool
) -> None:
    fake.fail_with(status, times=1)
    failed = await litellm.block("key", KEY_A, idempotency_key="k")
    assert (failed.ok, failed.permanent, failed.status) == (False, permanent, status)
    assert fake.blocked_keys == set()  # a failed answer acted on nothing

    retried = await litellm.block("key", KEY_A, idempotency_key="k")
    assert retried.ok and fake.blocked_keys == {KEY_A}


#: What a LiteLLM proxy without a database answers to /key/block (litellm 1.110,
#: CommonProxyErrors.db_not_connected_error through ProxyException), for ever.
NO_DATABASE = orjson.dumps(
    {
        "error": {
            "message": "DB not connected. This endpoint needs a database; set DATABASE_URL to"
            " a PostgreSQL connection string (postgresql://...) to enable it. See"
            " https://docs.litellm.ai/docs/proxy/virtual_keys",
            "type": "internal_server_error",
            "param": "None",
            "code": "500",
        }
    }
)


async def test_a_gateway_answering_500_forever_is_a_configuration_error_after_n_tries(
    fake: FakeGateway, litellm: LiteLLMGateway, caplog: pytest.LogCaptureFixture
) -> None:
    from spendbrake.actions._gateway import CONFIG_ERROR_AFTER

    fake.fail_with(500, times=None, body=NO_DATABASE)
    outcomes = [
        await litellm.block("key", KEY_A, idempotency_key="pause-a")
        for _ in range(CONFIG_ERROR_AFTER)
    ]
    # Never given up on (a database that blinked looks the same): the caller holds it.
    assert not any(o.permanent for o in outcomes)
    assert [o.config_error for o in outcomes] == [False] * (CONFIG_ERROR_AFTER - 1) + [True]
    last = outcomes[-1]
    assert not last.ok and last.status == 500
    assert "configuration error" in last.detail and "DATABASE_URL" in last.detail
    assert MASTER not in last.detail
    # Known broken: the next call says so at its first 500, and the error is logged once.
    other = await litellm.block("key", KEY_B, idempotency_key="pause-b")
    assert other.config_error and not other.permanent
    assert "HTTP 500 to every call" in other.detail and "1 tries" not in other.detail
    assert len(fake.calls) == CONFIG_ERROR_AFTER + 1
    assert sum("answers 500 to every call" in r.message for r in caplog.records) == 1
    # Fixed (a database attached): it works, and a single 500 is an ordinary retry again.
    fake.clear_faults()
    assert (await litellm.block("key", KEY_A, idempotency_key="pause-c")).ok
    fake.fail_with(500, times=1)
    again = await litellm.unblock("key", KEY_A, idempotency_key="resume-a")
    assert not again.permanent and not again.config_error


async def test_other_5xx_and_interleaved_answers_keep_retrying(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    from spendbrake.actions._gateway import CONFIG_ERROR_AFTER

    fake.fail_with(503, times=None)
    for _ in range(CONFIG_ERROR_AFTER + 2):  # a proxy in front, overloaded: not our setup
        assert not (await litellm.block("key", KEY_A, idempotency_key="k")).permanent
    fake.fail_with(500, times=CONFIG_ERROR_AFTER - 1)
    for _ in range(CONFIG_ERROR_AFTER - 1):
        assert not (await litellm.block("key", KEY_A, idempotency_key="k")).permanent
    assert (await litellm.block("key", KEY_A, idempotency_key="k")).ok


async def test_retry_after_is_passed_on(fake: FakeGateway, litellm: LiteLLMGateway) -> None:
    fake.fail_with(429, retry_after_s=7)
    outcome = await litellm.block("key", KEY_A, idempotency_key="k")
    assert (outcome.permanent, outcome.retry_after_s) == (False, 7.0)


async def test_timeout_after_apply_is_retryable_and_retry_changes_nothing(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    fake.hang(10 * TIMEOUT_S)  # applies the block, then answers too late
    lost = await litellm.block("key", KEY_A, idempotency_key="k")
    assert (lost.ok, lost.permanent, lost.status) == (False, False, None)
    assert "may have been applied" in lost.detail and lost.unsure
    assert fake.is_blocked(KEY_A)  # the unknown outcome was in fact a success

    retried = await litellm.block("key", KEY_A, idempotency_key="k")
    assert retried.ok
    assert fake.block_count(KEY_A) == BlockCount(changed=1, total=2)


async def test_gateway_down_is_retryable_then_up_is_ok(
    fake: FakeGateway, litellm: LiteLLMGateway
) -> None:
    assert (await litellm.block("key", KEY_A, idempotency_key="k")).ok  # pools a connection
    fake.down()
    refused = await litellm.block("key", KEY_B, idempotency_key="k")
    assert (refused.ok, refused.permanent, refused.status) == (False, False, None)
    assert "Connect" in refused.detail and not refused.unsure  # nothing went out

    fake.up()
    assert (await litellm.block("key", KEY_B, idempotency_key="k")).ok
    assert fake.blocked_keys == {KEY_A, KEY_B}


async def test_unusable_url_is_permanent() -> None:
    gateway = LiteLLMGateway("ftp://127.0.0.1:1", MASTER, timeout_s=TIMEOUT_S)
    try:
        outcome = await gateway.block("key", KEY_A, idempotency_key="k")
    finally:
        await gateway.aclose()
    assert (outcome.ok, outcome.permanent, outcome.status) == (False, True, None)


# -- webhook ---------------------------------------------------------------------------


async def test_webhook_signed_request_is_accepted(
    fake: FakeGateway, webhook: WebhookGateway
) -> None:
    outcome = await webhook.block("key", KEY_A, idempotency_key="inc-7:block:key")
    assert outcome.ok and outcome.status == 200
    assert fake.blocked_keys == {KEY_A}
    call = fake.calls[-1]
    assert call["authorized"] and call["idempotency_key"] == "inc-7:block:key"
    body = call["body"]
    assert {k: body[k] for k in ("action", "kind", "target", "idempotency_key")} == {
        "action": "block",
        "kind": "key",
        "target": KEY_A,
        "idempotency_key": "inc-7:block:key",
    }
    assert isinstance(body["sent_at"], int)

    assert (await webhook.unblock("team", "team-batch", idempotency_key="i2")).ok


async def test_webhook_wire_format_matches_the_documented_hmac() -> None:
    """Checked with hashlib/hmac directly, not with our own signing helper."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    gateway = WebhookGateway(
        "http://gw.test/hook", SECRET, transport=httpx.MockTransport(handler), clock=lambda: 1.7e9
    )
    try:
        assert (await gateway.unblock("team", "t1", idempotency_key="idem-1")).ok
    finally:
        await gateway.aclose()
    request = seen[0]
    timestamp = request.headers["x-spendbrake-timestamp"]
    assert timestamp == "1700000000"
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.content, hashlib.sha256)
    assert request.headers["x-spendbrake-signature"] == f"sha256={mac.hexdigest()}"
    assert request.headers["idempotency-key"] == "idem-1"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.content) == {
        "action": "unblock",
        "kind": "team",
        "target": "t1",
        "idempotency_key": "idem-1",
        "sent_at": 1700000000,
    }


async def test_webhook_replay_of_an_idempotency_key_acts_once(
    fake: FakeGateway, webhook: WebhookGateway
) -> None:
    assert (await webhook.block("key", KEY_A, idempotency_key="same")).ok
    assert (await webhook.block("key", KEY_A, idempotency_key="same")).ok
    assert fake.block_count(KEY_A) == BlockCount(changed=1, total=1)


async def test_webhook_wrong_secret_is_refused(fake: FakeGateway) -> None:
    gateway = WebhookGateway(fake.webhook_url, "not-the-secret", timeout_s=TIMEOUT_S)
    try:
        outcome = await gateway.block("key", KEY_A, idempotency_key="k")
    finally:
        await gateway.aclose()
    assert (outcome.ok, outcome.permanent, outcome.status) == (False, True, 401)
    assert fake.blocked_keys == set()


async def test_webhook_stale_timestamp_is_refused(fake: FakeGateway) -> None:
    an_hour_ago = time.time() - 3600
    gateway = WebhookGateway(
        fake.webhook_url, SECRET, timeout_s=TIMEOUT_S, clock=lambda: an_hour_ago
    )
    try:
        outcome = await gateway.block("key", KEY_A, idempotency_key="k")
    finally:
        await gateway.aclose()
    assert (outcome.ok, outcome.status) == (False, 401)
    assert fake.blocked_keys == set()


def test_verify_webhook_signature() -> None:
    secret, ts, body = b"s3cret", "1700000000", b'{"action":"block","target":"k"}'
    sig = sign_webhook(secret, ts, body)
    now = 1_700_000_060.0

    assert verify_webhook_signature(secret, ts, body, sig, now=now)
    assert not verify_webhook_signature(secret, ts, body.replace(b"block", b"unblo"), sig, now=now)
    assert not verify_webhook_signature(b"other", ts, body, sig, now=now)
    assert not verify_webhook_signature(secret, "1700000001", body, sig, now=now)
    assert not verify_webhook_signature(secret, ts, body, sig.removeprefix("sha256="), now=now)
    assert not verify_webhook_signature(secret, ts, body, "sha256=" + "0" * 64, now=now)
    assert not verify_webhook_signature(secret, ts, body, "", now=now)
    # stale or from the future, outside the tolerance; inside it is fine
    assert not verify_webhook_signature(secret, ts, body, sig, now=1_700_000_301.0)
    assert not verify_webhook_signature(secret, ts, body, sig, now=1_699_999_699.0)
    assert verify_webhook_signature(secret, ts, body, sig, now=1_700_000_301.0, tolerance_s=400)
    for bad_ts in ("", " 1700000000", "+1700000000", "1_700_000_000", "1.7e9", "１７"):
        assert not verify_webhook_signature(
            secret, bad_ts, body, sign_webhook(secret, "0", body), now=now
        )


# -- dry run, config -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["litellm", "webhook"])
async def test_dry_run_makes_no_http_call(fake: FakeGateway, kind: str) -> None:
    config = GatewayConfig(kind=kind, url=fake.url, dry_run=True)  # no credentials needed
    gateway = make_gateway(config)
    try:
        outcome = await gateway.block("key", KEY_A, idempotency_key="k")
        assert (await gateway.unblock("team", "team-batch", idempotency_key="k")).dry_run
    finally:
        await gateway.aclose()
    assert outcome == GatewayOutcome(
        ok=True, permanent=False, status=None, detail="dry run", dry_run=True
    )
    assert fake.calls == []


def test_missing_credentials_fail_at_startup() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.master_key"):
        make_gateway(GatewayConfig(kind="litellm"))
    with pytest.raises(ConfigError, match=r"gateway\.secret"):
        make_gateway(GatewayConfig(kind="webhook", master_key=MASTER))


# -- secrets ---------------------------------------------------------------------------


async def test_secrets_never_reach_details_reprs_or_logs(
    fake: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    wrong_master = "sk-wrong-master-NEVER-SHOW-QZQZ"
    escaped = "".join(f"\\u{ord(c):04x}" for c in MASTER)
    litellm = LiteLLMGateway(fake.url, MASTER, timeout_s=TIMEOUT_S)
    wrong = LiteLLMGateway(fake.url, wrong_master, timeout_s=TIMEOUT_S)
    hook = WebhookGateway(fake.webhook_url, SECRET, timeout_s=TIMEOUT_S)
    outcomes: list[GatewayOutcome] = []
    try:
        for body in (
            f"proxy echo: Authorization: Bearer {MASTER}",
            orjson.dumps({"error": {"message": f"bad token {MASTER}"}}),
            f'{{"detail": "{escaped}"}}',
            "x" * 190 + MASTER,  # a secret across the cut of a long detail
        ):
            fake.fail_with(500, body=body)
            outcomes.append(await litellm.block("key", KEY_A, idempotency_key="k"))
        fake.fail_with(400, body=f"echo {MASTER}")
        outcomes.append(await litellm.block("key", KEY_A, idempotency_key="k"))
        outcomes.append(await wrong.block("key", KEY_A, idempotency_key="k"))  # 401 quotes it
        fake.fail_with(503, body=f"hmac key was {SECRET}")
        outcomes.append(await hook.block("key", KEY_A, idempotency_key="k"))
        fake.hang(10 * TIMEOUT_S)
        outcomes.append(await litellm.block("key", KEY_B, idempotency_key="k"))
        fake.down()
        outcomes.append(await litellm.block("key", KEY_B, idempotency_key="k"))
        outcomes.append(await hook.block("key", KEY_B, idempotency_key="k"))
    finally:
        for gateway in (litellm, wrong, hook):
            await gateway.aclose()

    assert [o.ok for o in outcomes] == [False] * len(outcomes)
    assert {o.status for o in outcomes} == {500, 400, 401, 503, None}
    texts = [o.detail for o in outcomes] + [repr(o) for o in outcomes]
    texts += [repr(g) for g in (litellm, wrong, hook)]
    texts += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert caplog.records  # failures are logged...
    for secret in (MASTER, wrong_master, SECRET, wrong_master[-4:]):
        leaks = [text for text in texts if secret in text]
        assert leaks == [], f"{secret!r} leaked"  # ...without a secret in any of them


# -- the fake from sync code -----------------------------------------------------------


def test_fake_works_from_sync_code_and_other_threads() -> None:
    with FakeGateway(master_key=None, strict_key_format=False) as gw:
        poster = threading.Thread(
            target=httpx.post, args=(f"{gw.url}/key/block",), kwargs={"json": {"key": "alias-1"}}
        )
        poster.start()
        assert gw.wait_for(lambda: "alias-1" in gw.blocked_keys, timeout=5)
        poster.join()
        assert httpx.get(f"{gw.url}/key/block").status_code == 405
        assert httpx.post(f"{gw.url}/key/block", content=b"{").status_code == 422
        assert httpx.post(gw.webhook_url, json={}).status_code == 401  # no secret: refuse all


# -- backoff ---------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "cap"), [(0.5, 60.0), (1.0, 5.0), (0.1, 0.1)])
def test_backoff_delay_stays_within_full_jitter_bounds(base: float, cap: float) -> None:
    rng = random.Random(1)
    for attempt in range(30):
        ceiling = min(cap, base * 2**attempt)
        for _ in range(50):
            assert 0.0 <= backoff_delay(attempt, base=base, cap=cap, rng=rng) <= ceiling


def test_backoff_delay_repeats_with_a_seeded_rng() -> None:
    first = [backoff_delay(a, rng=random.Random(42)) for a in range(10)]
    again = [backoff_delay(a, rng=random.Random(42)) for a in range(10)]
    other = [backoff_delay(a, rng=random.Random(43)) for a in range(10)]
    assert first == again and first != other


def test_backoff_delay_edges() -> None:
    assert 0.0 <= backoff_delay(10_000) <= 60.0  # no float overflow
    assert backoff_delay(3, cap=0.0) == 0.0
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1)
