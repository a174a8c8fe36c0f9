"""Gateway hard-stops: block or unblock an API key or a team at the LLM gateway.

One small seam, like httpx's transports: a :class:`Gateway` has ``block``, ``unblock`` and
``aclose``. Two adapters implement it over one ``httpx.AsyncClient`` each (connections are
reused across calls), and :class:`DryRunGateway` implements it with no I/O at all:

- :class:`LiteLLMGateway`: LiteLLM proxy's admin API (``/key/block`` and friends);
- :class:`WebhookGateway`: one HMAC-signed POST for Portkey, Helicone or an in-house gateway.

Each call is **one attempt**, bounded by ``gateway.timeout_s``, and returns a
:class:`GatewayOutcome`; network and HTTP failures never raise. The durable retry schedule
(attempts that survive restarts, spaced by :func:`actions.backoff_delay`) is the caller's.
Retrying is safe: block and unblock *set* a state rather than toggle it, and blocking a
blocked key succeeds, so a retry after an unknown outcome (a timeout after the gateway
applied the change) cannot act twice. The webhook also carries an ``Idempotency-Key``.

A gateway that answers HTTP 500 to the same call ``CONFIG_ERROR_AFTER`` times in a row is
taken as misconfigured, not merely down: a LiteLLM proxy without a database answers every
admin call 500 forever ("DB not connected"). That outcome has ``config_error`` set and the
cause in its ``detail``, logged once; it stays retryable, since a database that blinked
for a few seconds looks the same, and a pause given up on is a runaway left running (the
act stage then holds the lane and probes it, as for a refused Slack token). While the
gateway keeps answering 500, later calls get it at their first 500, and any other answer
clears it.

Secrets (``gateway.master_key``, ``gateway.secret``) travel only in a request header or as
an HMAC key: they never reach an outcome's ``detail``, a log record, an exception or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import ClassVar, Literal, Protocol

import httpx
import orjson
from pydantic import SecretStr

from spendbrake.schemas import ConfigError, GatewayConfig, visible

__all__ = [
    "DryRunGateway",
    "Gateway",
    "GatewayOutcome",
    "LiteLLMGateway",
    "TargetKind",
    "WebhookGateway",
    "make_gateway",
    "sign_webhook",
    "verify_webhook_signature",
]

log = logging.getLogger(__name__)

TargetKind = Literal["key", "team"]
Action = Literal["block", "unblock"]

#: Answers worth another attempt later: the request timed out at a proxy, is still being
#: processed under the same idempotency key (409, IETF Idempotency-Key draft), arrived too
#: early, or was rate limited; any 5xx joins them. Every other 4xx is permanent.
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_DETAIL_CHARS = 200
_USER_AGENT = "spendbrake-gateway/1"
#: HTTP 500 answers in a row to one call (one idempotency key) before the gateway counts
#: as misconfigured. A restart or a short database outage recovers within a few tries.
CONFIG_ERROR_AFTER = 5
#: Calls whose 500s are being counted; past this the count starts over (memory bound).
_COUNTED_CALLS = 10_000


@dataclass(frozen=True, slots=True)
class GatewayOutcome:
    """What one attempt at the gateway came to.

    ``permanent`` tells the caller whether to schedule another attempt: True when retrying
    cannot help (refused credentials, unknown key or team, malformed request), False when
    it can (timeout, connection error, 429, 5xx). ``status`` is the HTTP status, None when
    no answer came. ``detail`` is one short line for the audit record and Slack, never a
    secret. ``retry_after_s`` is the server's ``Retry-After``, when it sent one.
    ``config_error`` marks a failure that is the gateway's setup, not the target (see the
    module docstring): no pause lands until an operator acts, and every call would fail
    alike, so the caller holds them all and probes. ``unsure``: a failure that does not
    prove nothing was done (no answer after the request went out, a proxy's 502 or 504):
    the call may have landed.
    """

    ok: bool
    permanent: bool
    status: int | None
    detail: str
    dry_run: bool = False
    retry_after_s: float | None = None
    config_error: bool = False
    unsure: bool = False


class Gateway(Protocol):
    """Block or unblock a key or a team; one attempt per call, never raises for I/O."""

    async def block(
        self, kind: TargetKind, target: str, *, idempotency_key: str
    ) -> GatewayOutcome: ...

    async def unblock(
        self, kind: TargetKind, target: str, *, idempotency_key: str
    ) -> GatewayOutcome: ...

    async def aclose(self) -> None: ...


def make_gateway(
    config: GatewayConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Gateway:
    """The gateway ``config`` describes; ``transport`` overrides httpx's (tests, proxies).

    A missing credential fails here, at startup, rather than at the first runaway.
    """
    if config.dry_run:
        return DryRunGateway(config.kind)
    if config.kind == "litellm":
        if config.master_key is None:
            raise ConfigError(
                "gateway.master_key", "required when gateway.kind is litellm (or set dry_run)"
            )
        return LiteLLMGateway(
            config.url, config.master_key, timeout_s=config.timeout_s, transport=transport
        )
    if config.secret is None:
        raise ConfigError(
            "gateway.secret", "required when gateway.kind is webhook (or set dry_run)"
        )
    return WebhookGateway(
        config.url, config.secret, timeout_s=config.timeout_s, transport=transport
    )


class DryRunGateway:
    """Says what it would do and does nothing: no client, no connection, no request."""

    def __init__(self, kind: str = "litellm") -> None:
        self.kind = kind

    async def block(self, kind: TargetKind, target: str, *, idempotency_key: str) -> GatewayOutcome:
        return self._would("block", kind, target)

    async def unblock(
        self, kind: TargetKind, target: str, *, idempotency_key: str
    ) -> GatewayOutcome:
        return self._would("unblock", kind, target)

    async def aclose(self) -> None:
        return None

    def _would(self, action: Action, kind: TargetKind, target: str) -> GatewayOutcome:
        log.info("gateway dry run: would %s %s %s via %s", action, kind, _show(target), self.kind)
        return GatewayOutcome(ok=True, permanent=False, status=None, detail="dry run", dry_run=True)

    def __repr__(self) -> str:
        return f"DryRunGateway(kind={self.kind!r})"


class _HttpGateway:
    """One POST per attempt, its answer or its failure classified into an outcome."""

    def __init__(
        self,
        *,
        secrets: tuple[str, ...],
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
        headers: dict[str, str],
        base_url: str = "",
        config_error_after: int = CONFIG_ERROR_AFTER,
    ) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._timeout_s = timeout_s
        self.config_error_after = config_error_after
        self._http500: dict[str, int] = {}  # idempotency key -> 500 answers in a row
        self._misconfigured = False
        # Redirects are not followed: a POST that gets redirected means gateway.url is wrong,
        # and following it could carry the credential to another host.
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"user-agent": _USER_AGENT, **headers},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> _HttpGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        what: str,
        target: str,
        idempotency_key: str,
    ) -> GatewayOutcome:
        headers = {"content-type": "application/json", **headers}
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            outcome = self._failure(what, exc)
        else:
            outcome = self._count_500s(what, self._answer(what, response), idempotency_key)
        level = logging.INFO if outcome.ok else logging.WARNING
        log.log(level, "gateway %s %s: %s", what, _show(target), outcome.detail)
        return outcome

    def _failure(self, what: str, exc: Exception) -> GatewayOutcome:
        name = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            sent = not isinstance(exc, httpx.ConnectTimeout)
            unknown = "; it may have been applied" if sent else ""
            detail = f"{what}: no answer within {self._timeout_s:g}s ({name}){unknown}"
            return GatewayOutcome(False, False, None, detail, unsure=sent)
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            detail = f"{what}: gateway.url is not a usable http(s) URL ({name})"
            return GatewayOutcome(ok=False, permanent=True, status=None, detail=detail)
        if isinstance(exc, httpx.LocalProtocolError):
            # The request could not even be written (e.g. a control character in a header
            # value); its message may quote the header, so it is not repeated here.
            detail = f"{what}: request refused by the HTTP client ({name}); check gateway settings"
            return GatewayOutcome(ok=False, permanent=True, status=None, detail=detail)
        # Connection errors, dropped connections, bad responses: worth another attempt. Only a
        # refused connection proves nothing was sent; otherwise the outcome is unknown.
        readable = isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)
        reason = self._scrub(str(exc)) if readable else ""
        sent = not isinstance(exc, httpx.ConnectError)
        unknown = " (it may have been applied)" if sent else ""
        detail = f"{what}: {name}" + (f": {reason}" if reason else "") + unknown
        return GatewayOutcome(False, False, None, detail[:_DETAIL_CHARS], unsure=sent)

    def _answer(self, what: str, response: httpx.Response) -> GatewayOutcome:
        status = response.status_code
        if 200 <= status < 300:
            return GatewayOutcome(ok=True, permanent=False, status=status, detail=f"{what}: ok")
        if status in (401, 403):
            # LiteLLM's 401 quotes part of the bearer and its hash: keep the body out.
            detail = f"{what}: HTTP {status}: the gateway refused our credentials"
            return GatewayOutcome(ok=False, permanent=True, status=status, detail=detail)
        if 300 <= status < 400:
            detail = f"{what}: HTTP {status} redirect; check gateway.url"
            return GatewayOutcome(ok=False, permanent=True, status=status, detail=detail)
        retryable = status in _RETRYABLE_STATUS or status >= 500
        message = _error_message(response.content, self._scrub)
        detail = f"{what}: HTTP {status}" + (f": {message}" if message else "")
        return GatewayOutcome(
            ok=False,
            permanent=not retryable,
            status=status,
            detail=detail[:_DETAIL_CHARS],
            retry_after_s=_retry_after_s(response.headers.get("retry-after"))
            if retryable
            else None,
            unsure=status in (502, 504),  # a proxy's: the gateway behind it may have acted
        )

    def _count_500s(self, what: str, outcome: GatewayOutcome, key: str) -> GatewayOutcome:
        """An answer, re-classified as a configuration error once 500s repeat (see above)."""
        if outcome.status != 500:
            self._http500.pop(key, None)
            self._misconfigured = False  # the gateway answered something else: it works
            return outcome
        if len(self._http500) >= _COUNTED_CALLS and key not in self._http500:
            self._http500.clear()
        tries = self._http500[key] = self._http500.get(key, 0) + 1
        if tries < self.config_error_after and not self._misconfigured:
            return outcome
        del self._http500[key]
        message = outcome.detail.partition(": HTTP 500")[2].lstrip(": ")
        if "database" in message.lower() or "db not connected" in message.lower():
            hint = "the proxy has no database (set DATABASE_URL); its admin API needs one"
        else:
            hint = "check the gateway's logs and setup"
        # Once known broken, a call's first 500 says so: "on 1 tries in a row" read as news.
        count = f"on {tries} tries in a row" if not self._misconfigured else "to every call"
        detail = f"{what}: gateway configuration error, HTTP 500 {count}: {hint}" + (
            f" ({message})" if message else ""
        )
        if not self._misconfigured:
            self._misconfigured = True
            log.error("gateway answers 500 to every call: %s", detail)
        return replace(
            outcome, retry_after_s=None, config_error=True, detail=detail[:_DETAIL_CHARS]
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class LiteLLMGateway(_HttpGateway):
    """LiteLLM proxy admin API, authenticated with the proxy's master key.

    ``block``/``unblock`` POST ``{url}/key/block`` or ``/key/unblock`` with ``{"key": target}``,
    and ``/team/block`` or ``/team/unblock`` with ``{"team_id": target}``, with
    ``Authorization: Bearer <master_key>``. ``url`` may carry a path prefix.

    What LiteLLM answers (read in litellm 1.106.2, ``proxy/management_endpoints/
    key_management_endpoints.py`` ``block_key`` and ``team_endpoints.py`` ``block_team``):
    200 with the updated record, also when the key or team was already (un)blocked, since
    the endpoint just sets ``blocked``; 404 ``Key not found.`` or ``Team not found, passed
    team_id=...`` for an unknown target; 400 ``Invalid key format.`` for a key that is
    neither ``sk-...`` nor 64 hex digits; 401 for a wrong or missing master key, 403 for a
    key that is not an admin; 422 for a malformed body; 500 when its database is down.

    The target is sent verbatim. For keys LiteLLM takes the raw virtual key (it hashes
    ``sk-...``) or its token: the 64-hex SHA-256 that LiteLLM logs as
    ``user_api_key_hash``. A key *alias* is not accepted (400, permanent), and neither is the
    SDK's redacted ``sha256:<16 hex>`` form, so events must name keys by their token for a
    pause to land. Teams are named by ``team_id``, not the team alias.
    """

    _PATHS: ClassVar[dict[tuple[Action, TargetKind], str]] = {
        ("block", "key"): "/key/block",
        ("unblock", "key"): "/key/unblock",
        ("block", "team"): "/team/block",
        ("unblock", "team"): "/team/unblock",
    }

    def __init__(
        self,
        url: str,
        master_key: SecretStr | str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = master_key.get_secret_value() if isinstance(master_key, SecretStr) else master_key
        super().__init__(
            secrets=(key,),
            timeout_s=timeout_s,
            transport=transport,
            headers={"authorization": f"Bearer {key}"},
            base_url=url.rstrip("/"),
        )
        self.url = url

    async def block(self, kind: TargetKind, target: str, *, idempotency_key: str) -> GatewayOutcome:
        """Block ``target``; ``idempotency_key`` is not sent (the endpoint is idempotent by
        nature), only used to count this call's 500 answers."""
        return await self._call("block", kind, target, idempotency_key)

    async def unblock(
        self, kind: TargetKind, target: str, *, idempotency_key: str
    ) -> GatewayOutcome:
        """Unblock ``target``; unblocking an unblocked key succeeds too."""
        return await self._call("unblock", kind, target, idempotency_key)

    async def _call(
        self, action: Action, kind: TargetKind, target: str, idempotency_key: str
    ) -> GatewayOutcome:
        field = "key" if kind == "key" else "team_id"
        body = orjson.dumps({field: target})
        path = self._PATHS[action, kind]
        return await self._post(path, body, {}, f"{action} {kind}", target, idempotency_key)

    def __repr__(self) -> str:
        return f"LiteLLMGateway(url={self.url!r})"


class WebhookGateway(_HttpGateway):
    """One signed POST to ``url`` per action, for gateways without a LiteLLM-style API.

    Body (JSON): ``{"action": "block"|"unblock", "kind": "key"|"team", "target": ...,
    "idempotency_key": ..., "sent_at": <unix seconds>}``. Headers: ``Idempotency-Key``,
    ``X-SpendBrake-Timestamp`` (the same unix seconds) and ``X-SpendBrake-Signature:
    sha256=<hex>``, see :func:`verify_webhook_signature` for the receiver's side. Every
    attempt is signed afresh with the current time; ``idempotency_key`` stays the same
    across the caller's retries of one action, so the receiver can drop duplicates.
    ``clock`` returns unix seconds (an argument so tests can send stale signatures).
    """

    def __init__(
        self,
        url: str,
        secret: SecretStr | str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        super().__init__(secrets=(value,), timeout_s=timeout_s, transport=transport, headers={})
        self._secret = value.encode()
        self._clock = clock
        self.url = url

    async def block(self, kind: TargetKind, target: str, *, idempotency_key: str) -> GatewayOutcome:
        return await self._call("block", kind, target, idempotency_key)

    async def unblock(
        self, kind: TargetKind, target: str, *, idempotency_key: str
    ) -> GatewayOutcome:
        return await self._call("unblock", kind, target, idempotency_key)

    async def _call(
        self, action: Action, kind: TargetKind, target: str, idempotency_key: str
    ) -> GatewayOutcome:
        sent_at = int(self._clock())
        body = orjson.dumps(
            {
                "action": action,
                "kind": kind,
                "target": target,
                "idempotency_key": idempotency_key,
                "sent_at": sent_at,
            }
        )
        timestamp = str(sent_at)
        headers = {
            "idempotency-key": idempotency_key,
            "x-spendbrake-timestamp": timestamp,
            "x-spendbrake-signature": sign_webhook(self._secret, timestamp, body),
        }
        return await self._post(
            self.url, body, headers, f"{action} {kind}", target, idempotency_key
        )

    def __repr__(self) -> str:
        return f"WebhookGateway(url={self.url!r})"


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-SpendBrake-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance_s: float = 300,
) -> bool:
    """True when a SpendBrake webhook is authentic and fresh: the receiver's check.

    To receive SpendBrake's block/unblock webhook in your gateway:

    1. Read the raw request body as bytes, before any JSON parsing or re-encoding.
    2. Take ``X-SpendBrake-Timestamp`` (unix seconds, decimal digits) and
       ``X-SpendBrake-Signature`` (``sha256=`` and 64 lowercase hex digits).
    3. Compute HMAC-SHA256 keyed with the shared secret (``gateway.secret``, UTF-8) over
       ``timestamp + "." + body`` and compare it with the header in constant time.
    4. Refuse timestamps more than ``tolerance_s`` (5 minutes) away from your clock, in
       either direction: a captured request cannot be replayed later.
    5. Answer 401 to a request that fails 2-4. Otherwise parse the body, drop a repeated
       ``Idempotency-Key`` by answering it as the first time, and apply ``action`` to the
       ``kind`` (``key`` or ``team``) named ``target``.
    6. Answer 2xx when the target is now in the requested state, *including* when it
       already was; 404 for an unknown target and 400/422 for a malformed body (SpendBrake
       gives up); 408, 409, 425, 429 or 5xx to be retried later with backoff.

    In Python (``now`` is an argument so the check stays a pure function)::

        ok = verify_webhook_signature(
            SECRET, request.headers["X-SpendBrake-Timestamp"], raw_body,
            request.headers["X-SpendBrake-Signature"], now=time.time(),
        )

    >>> body = b'{"action":"block"}'
    >>> sig = sign_webhook(b"s3cret", "1700000000", body)
    >>> verify_webhook_signature(b"s3cret", "1700000000", body, sig, now=1700000100)
    True
    >>> verify_webhook_signature(b"s3cret", "1700000000", body + b" ", sig, now=1700000100)
    False
    >>> verify_webhook_signature(b"s3cret", "1700000000", body, sig, now=1700000400)
    False
    """
    # Malformed headers are refused, never raised on: int() of 4,301+ digits raises
    # ValueError, and a lone surrogate in a header cannot be encoded.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    given = signature.strip()
    if not (given.isascii() and len(given) <= 128):
        return False
    expected = sign_webhook(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), given.encode())


def _error_message(content: bytes, scrub: Callable[[str], str]) -> str:
    """The reason in an error body, secrets scrubbed before any cut: LiteLLM's
    ``{"error": {"message"}}``, FastAPI's ``{"detail": ...}``, or the start of the text."""
    text = scrub(content.decode("utf-8", "replace"))
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = text
    if isinstance(data, dict):
        data = data.get("error", data.get("detail", data))
        if isinstance(data, dict):
            data = data.get("message", data.get("error", data))
        elif isinstance(data, list) and data and isinstance(data[0], dict):
            data = data[0].get("msg", data[0])
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    # Scrubbed again: JSON escapes (\u0073k-...) decode into the secret only now.
    return scrub(" ".join(text.split()))[:_DETAIL_CHARS]


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds, or an HTTP date less the local clock."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _show(target: str) -> str:
    """A target for a log line: a raw ``sk-`` key is shortened, aliases and hashes are not;
    control characters are shown as escapes (a key name is event text)."""
    if target.startswith("sk-") and len(target) > 12:
        return visible(f"{target[:6]}...{target[-4:]}")
    return visible(target)
