"""The Slack button endpoint: "Resume key", "Snooze 1 h" and "Undo snooze" clicks.

Slack POSTs a click to a Request URL as a form body whose ``payload`` field holds a
``block_actions`` JSON object. Anyone who can reach the URL can POST too, so a click counts
only when it carries Slack's signature: ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256,
keyed with the app's signing secret, of ``v0:{X-Slack-Request-Timestamp}:{raw body}``, and the
timestamp is within 5 minutes of our clock (a captured click cannot be replayed later).

Two layers, like httpx's auth flows and transports:

- :func:`parse_interaction` is pure: headers, raw body, secret and ``now`` in; an
  :class:`Interaction` or a :class:`Rejected` (401 for a missing, stale or wrong signature,
  400 for a signed but malformed payload or an action we do not know) out.
- :class:`InteractionServer` is the I/O edge: an aiohttp server on ``127.0.0.1`` serving
  ``POST /slack/actions``. It hands each accepted click to ``on_interaction`` (which only
  enqueues work: Slack shows the user an error when no answer comes within 3 s) and each
  refusal to ``on_rejected`` so the action stage can audit it. What the callback says
  back goes to the clicker through the click's ``response_url`` (an ephemeral message):
  Slack ignores a message in the HTTP answer to a ``block_actions`` request, so an answer
  there reached nobody.

:func:`sign_request` and :func:`build_payload` make the requests Slack would send, for the
tests and the fake Slack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson
from aiohttp import web
from pydantic import SecretStr
from slack_sdk.signature import Clock, SignatureVerifier

from ._blocks import MAX_BUTTON_TARGETS, RESUME_ACTION_ID, SNOOZE_ACTION_ID, UNSNOOZE_ACTION_ID

__all__ = [
    "MAX_BODY_BYTES",
    "RESPONSE_ORIGINS",
    "RESUME_ACTION_ID",
    "SNOOZE_ACTION_ID",
    "UNSNOOZE_ACTION_ID",
    "Answer",
    "Interaction",
    "InteractionServer",
    "Rejected",
    "build_payload",
    "parse_interaction",
    "sign_request",
]

log = logging.getLogger(__name__)

PATH = "/slack/actions"
#: A block_actions body is a few KiB; anything far larger is not from Slack.
MAX_BODY_BYTES = 64 * 1024
#: Slack's documented limit on a button's ``value``; ours are well under it.
MAX_VALUE_CHARS = 2000
#: Slack's replay window; slack_sdk's SignatureVerifier uses the same 5 minutes.
TOLERANCE_S = 300
_MAX_SCOPE_FIELDS = 16
#: An alert id holds its scope's values (up to 512 characters each): the value's own bound
#: is the only one a name needs (a 540-character id was refused, and its buttons with it).
_MAX_NAME_CHARS = MAX_VALUE_CHARS
_REASON_CHARS = 64
#: Where Slack's ``response_url`` points (commercial and GovSlack). A click's answer goes
#: nowhere else: the URL is the request's, and a request is only as trusted as the secret.
RESPONSE_ORIGINS = ("https://hooks.slack.com", "https://hooks.slack-gov.com")
#: What the clicker reads when the callback failed.
FAILED_TEXT = (
    "SpendBrake could not act on this click (an internal error, in the worker's log). "
    "Click again, or run `spendbrake resume KEY` at a terminal."
)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One authentic button click.

    ``targets`` are the api keys a resume unblocks (empty for a snooze, and for a resume
    with ``every``: every key paused for the incident, too many to list in a button);
    ``scope`` is the alert scope a snooze silences or an unsnooze lets speak again (empty
    for a resume; None: the incident's, too long for the button). ``user`` is the Slack
    user id of whoever clicked, for the audit record. ``response_url`` lets the caller post
    a follow-up into the conversation later (it is valid for 30 minutes).
    """

    action: Literal["resume", "snooze", "unsnooze"]
    alert_id: str
    targets: tuple[str, ...]
    scope: dict[str, str | None] | None
    user: str
    response_url: str | None
    #: Slack's trigger id and action time: the same click delivered twice has the same one.
    click_id: str = ""
    every: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request we refused, and why, in one line fit for an audit record.

    ``status`` is the HTTP answer: 401 for a missing, malformed, stale or wrong signature,
    400 for a signed request whose payload is malformed or names an unknown action, 413 for
    a body over the server's limit. ``reason`` never holds the secret and bounds any
    attacker-chosen text it quotes.
    """

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What the clicker is told: ``text`` (mrkdwn), to them alone, or to the whole channel
    when ``public`` (a snooze silences the scope for everyone: everyone should know)."""

    text: str
    public: bool = False
    #: Block Kit blocks shown instead of ``text`` (which stays the notification's).
    blocks: list[dict[str, Any]] | None = None


class _At(Clock):
    """slack_sdk's verifier reads time through ``clock.now()``; pin it to our ``now``."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_NAME_CHARS


def parse_interaction(
    headers: Mapping[str, str], body: bytes, *, signing_secret: str, now: float
) -> Interaction | Rejected:
    """Verify a Slack interactive request and read the button click it carries.

    The signature is checked over the raw ``body`` before anything in it is parsed, so an
    unsigned body never reaches the JSON parser. Header names match case-insensitively.
    ``now`` is epoch seconds (an argument, so replays and tests choose the clock).

    >>> body = build_payload("spendbrake_resume", {"alert": "a1", "targets": ["sk-1"]})
    >>> headers = sign_request("s3cret", body, 1_700_000_000)
    >>> parse_interaction(headers, body, signing_secret="s3cret", now=1_700_000_030).targets
    ('sk-1',)
    >>> parse_interaction(headers, body, signing_secret="s3cret", now=1_700_000_600)
    Rejected(status=401, reason='stale timestamp: 600 s from our clock')
    """
    if not signing_secret.strip():
        raise ValueError("signing_secret: must not be empty")
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = lowered.get("x-slack-signature")
    timestamp = lowered.get("x-slack-request-timestamp")
    if not signature or not timestamp:
        return Rejected(401, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
    # slack_sdk calls int() on it, which accepts " 12", "+12" and "1_2"; Slack sends digits.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return Rejected(401, f"malformed X-Slack-Request-Timestamp {_short(timestamp)}")
    skew_s = now - int(timestamp)
    if abs(skew_s) > TOLERANCE_S:
        return Rejected(401, f"stale timestamp: {skew_s:.0f} s from our clock")
    # Slack's signature is "v0=" and 64 hex digits. Anything else is refused here: slack_sdk
    # compares str with hmac.compare_digest, which raises TypeError on non-ASCII text.
    if not (signature.isascii() and signature.isprintable() and len(signature) <= 128):
        return Rejected(401, f"malformed X-Slack-Signature {_short(signature)}")
    verifier = SignatureVerifier(signing_secret, clock=_At(now))
    try:
        valid = verifier.is_valid(body, timestamp, signature)
    except (UnicodeDecodeError, TypeError, ValueError):
        # It decodes the body as UTF-8 (Slack's bodies are ASCII); a refusal, never a 500.
        valid = False
    if not valid:
        return Rejected(401, "signature does not match")
    return _read_payload(body)


def _read_payload(body: bytes) -> Interaction | Rejected:
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=16)
    except ValueError as exc:  # UnicodeDecodeError is one too
        return Rejected(400, f"body is not a form: {type(exc).__name__}")
    payloads = form.get("payload", [])
    if len(payloads) != 1:
        return Rejected(400, "body needs exactly one payload field")
    try:
        payload = orjson.loads(payloads[0])
    except orjson.JSONDecodeError:
        return Rejected(400, "payload is not JSON")
    if not isinstance(payload, dict):
        return Rejected(400, "payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return Rejected(400, f"unsupported payload type {_short(payload.get('type'))}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return Rejected(400, "payload has no actions")
    # A button click carries exactly one action; the first is the one clicked.
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in (RESUME_ACTION_ID, SNOOZE_ACTION_ID, UNSNOOZE_ACTION_ID):
        return Rejected(400, f"unknown action_id {_short(action_id)}")
    user_obj = payload.get("user")
    user = None
    if isinstance(user_obj, dict):
        user = next(
            (user_obj[k] for k in ("id", "username", "name") if _name(user_obj.get(k))), None
        )
    if user is None:
        return Rejected(400, "payload has no user")
    response_url = payload.get("response_url")
    if not isinstance(response_url, str) or not response_url:
        response_url = None
    trigger, action_ts = payload.get("trigger_id"), action.get("action_ts")
    click_id = f"{trigger}/{action_ts}" if _name(trigger) and _name(action_ts) else ""

    raw = action.get("value")
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_VALUE_CHARS:
        return Rejected(400, f"{action_id}: value must be 1-{MAX_VALUE_CHARS} characters")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected(400, f"{action_id}: value is not JSON")
    if not isinstance(value, dict) or not _name(value.get("alert")):
        return Rejected(400, f"{action_id}: value needs an alert id")
    alert_id: str = value["alert"]

    if action_id == RESUME_ACTION_ID:
        if value.get("all") is True and "targets" not in value:
            return Interaction("resume", alert_id, (), {}, user, response_url, click_id, every=True)
        targets = value.get("targets")
        if (
            not isinstance(targets, list)
            or not 0 < len(targets) <= MAX_BUTTON_TARGETS
            or not all(_name(t) for t in targets)
        ):
            return Rejected(
                400, f"{action_id}: targets must be 1-{MAX_BUTTON_TARGETS} api keys, or all: true"
            )
        return Interaction("resume", alert_id, tuple(targets), {}, user, response_url, click_id)

    act: Literal["snooze", "unsnooze"] = "snooze" if action_id == SNOOZE_ACTION_ID else "unsnooze"
    if "scope" in value and value["scope"] is None:  # the incident's: too long to carry
        return Interaction(act, alert_id, (), None, user, response_url, click_id)
    scope = value.get("scope")
    if (
        not isinstance(scope, dict)
        or len(scope) > _MAX_SCOPE_FIELDS
        or not all(_name(k) and (v is None or _name(v)) for k, v in scope.items())
    ):
        return Rejected(400, f"{action_id}: scope must map field names to strings or null")
    return Interaction(act, alert_id, (), dict(scope), user, response_url, click_id)


#: A plain ``str`` is an ephemeral answer; None or "" says nothing.
OnInteraction = Callable[[Interaction], Awaitable["str | Answer | None"]]
OnRejected = Callable[[Rejected, str], Awaitable[None]]


class InteractionServer:
    """``POST /slack/actions`` on ``host:port``, answering Slack within its 3 s budget.

    Each verified click goes to ``on_interaction`` and is answered with an empty 200 (Slack
    reads no message in it); a non-empty text the callback returns is posted to the
    click's ``response_url`` as an ephemeral message, seen by the clicker alone, when the
    callback returns, however late. A callback still running after ``answer_within_s``
    gets its 200 early and is left to finish (``stop`` waits for it); one that raises gets a
    500 (Slack marks the button) and the clicker is told. A ``response_url`` outside
    ``response_origins`` (scheme and host, e.g. ``https://hooks.slack.com``) is not called.
    Each refusal is answered with its status and handed to ``on_rejected(rejected,
    remote)``, where ``remote`` is the peer address plus any ``X-Forwarded-For``
    (spoofable; for the audit trail only).

    ``port=0`` picks a free port; read :attr:`port` after :meth:`start`. ``clock`` returns
    epoch seconds (tests pin it). Slack needs a public HTTPS URL: put a TLS reverse proxy
    or tunnel in front; this server binds loopback by default.

    Usage::

        server = InteractionServer(secret, on_interaction=enqueue, on_rejected=audit)
        await server.start()
        ...
        await server.stop()
    """

    def __init__(
        self,
        signing_secret: str | SecretStr,
        *,
        on_interaction: OnInteraction,
        on_rejected: OnRejected,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = MAX_BODY_BYTES,
        answer_within_s: float = 2.0,
        response_origins: Collection[str] = RESPONSE_ORIGINS,
        response_timeout_s: float = 10.0,
    ) -> None:
        secret = (
            signing_secret.get_secret_value()
            if isinstance(signing_secret, SecretStr)
            else signing_secret
        )
        if not secret.strip():
            raise ValueError("signing_secret: must not be empty")
        self._secret = secret
        self.on_interaction = on_interaction
        self.on_rejected = on_rejected
        self.host = host
        self.requested_port = port
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.answer_within_s = answer_within_s
        self.response_origins = frozenset(o.rstrip("/").lower() for o in response_origins)
        self.response_timeout_s = response_timeout_s
        self._http: httpx.AsyncClient | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._callbacks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"InteractionServer(host={self.host!r}, port={self._port or self.requested_port})"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("InteractionServer: port is known only after start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post(PATH, self._handle)
        # In-flight requests are short (the callback only enqueues); don't hang a shutdown.
        runner = web.AppRunner(app, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._http = httpx.AsyncClient(timeout=self.response_timeout_s, follow_redirects=False)
        self._port = int(runner.addresses[0][1])
        log.info("slack interactive endpoint on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._callbacks:
            # A late callback is finishing an enqueue; give it a moment, then stop it.
            _, pending = await asyncio.wait(self._callbacks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> InteractionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        remote = request.remote or "unknown"
        forwarded = request.headers.get("X-Forwarded-For")
        if forwarded:
            remote = f"{remote} (forwarded for {forwarded[:100]})"
        too_large = Rejected(413, f"body over {self.max_body_bytes} bytes")
        # Refuse on the declared length before reading; read() enforces the limit for
        # chunked bodies with no Content-Length.
        if (request.content_length or 0) > self.max_body_bytes:
            return await self._reject(too_large, remote)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return await self._reject(too_large, remote)
        result = parse_interaction(
            request.headers, body, signing_secret=self._secret, now=self.clock()
        )
        if isinstance(result, Rejected):
            return await self._reject(result, remote)

        acted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._act_and_tell(result, acted))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)
        # Slack hears as soon as the callback is done; the answer to the clicker follows.
        done, _ = await asyncio.wait({acted}, timeout=self.answer_within_s)
        if not done:
            log.warning("slack %s on %s: slow callback, answered", result.action, result.alert_id)
            return web.Response(status=200)
        return web.Response(status=200 if acted.result() else 500)

    async def _act_and_tell(self, click: Interaction, acted: asyncio.Future[bool]) -> None:
        """Run the callback, settle ``acted`` (False: it failed), then tell the clicker."""
        try:
            said = await self.on_interaction(click)
            ok = True
        except Exception:
            log.exception("on_interaction failed for %s on %s", click.action, click.alert_id)
            said, ok = FAILED_TEXT, False
        acted.set_result(ok)
        answer = Answer(said) if isinstance(said, str) else said
        if answer is not None and answer.text:
            await self._respond(click, answer)

    async def _respond(self, click: Interaction, answer: Answer) -> None:
        """A message to the clicker (or the channel) through the click's ``response_url``."""
        url = click.response_url
        if url is None or self._http is None:
            return
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if origin not in self.response_origins:
            log.warning(
                "slack %s: response_url at %s not called (not Slack's)", click.action, origin[:100]
            )
            return
        message: dict[str, Any] = {
            "response_type": "in_channel" if answer.public else "ephemeral",
            "replace_original": False,
            "text": answer.text,
        }
        if answer.blocks:
            message["blocks"] = answer.blocks
        try:
            answer = await self._http.post(
                url, content=orjson.dumps(message), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            log.warning("slack %s: response_url not reached (%s)", click.action, type(exc).__name__)
            return
        if answer.status_code != 200:
            log.warning("slack %s: response_url answered HTTP %d", click.action, answer.status_code)

    async def _reject(self, rejected: Rejected, remote: str) -> web.Response:
        log.warning("slack request from %s refused: %s", remote, rejected.reason)
        try:
            await self.on_rejected(rejected, remote)
        except Exception:  # auditing must not turn a refusal into a 500
            log.exception("on_rejected failed for a %d refusal", rejected.status)
        return web.Response(status=rejected.status, text=rejected.reason)


def sign_request(signing_secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The two headers Slack would send with ``body`` at ``timestamp`` (epoch seconds).

    Computed from Slack's documented recipe, independently of slack_sdk, so tests that use
    it also check the verifier: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``.
    """
    base = b"v0:" + str(timestamp).encode("ascii") + b":" + body
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def build_payload(
    action_id: str,
    value: str | Mapping[str, Any],
    user: str = "U1",
    *,
    response_url: str | None = "https://hooks.slack.com/actions/T1/1/xyz",
    action_ts: str | None = None,
) -> bytes:
    """A form body as Slack sends it for one button click in a channel message.

    ``value`` is the button's value: a mapping is JSON-encoded as our buttons do; a string
    is sent as is (to test malformed values). Each call is a new click (its own
    ``action_ts``) unless ``action_ts`` is given, as Slack's retry of one click would be.
    """
    action_ts = action_ts or f"{time.time():.6f}"
    raw = value if isinstance(value, str) else orjson.dumps(dict(value)).decode()
    name = f"user-{user.lower()}"
    label = {SNOOZE_ACTION_ID: "Snooze 1 h", UNSNOOZE_ACTION_ID: "Undo snooze"}.get(
        action_id, "Resume key"
    )
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": "C1",
            "is_ephemeral": False,
        },
        "trigger_id": f"trigger.{action_ts}",
        "team": {"id": "T1", "domain": "example"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": "C1", "name": "ai-spend"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "SpendBrake alert"},
        "state": {"values": {}},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "spendbrake_actions",
                "text": {"type": "plain_text", "text": label, "emoji": True},
                "value": raw,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
    if response_url is not None:
        payload["response_url"] = response_url
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode("ascii")
