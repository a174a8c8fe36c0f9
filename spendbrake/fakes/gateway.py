"""A fake LLM gateway on 127.0.0.1: LiteLLM's four admin endpoints and SpendBrake's webhook.

A real HTTP server over TCP (stdlib ``ThreadingHTTPServer`` on a daemon thread), so the
code under test, the demo and the latency benchmark run their real clients: connection
reuse, timeouts, refused connections. Works from sync and async code alike::

    with FakeGateway(master_key="sk-master", keys={"sk-batch-1"}) as gw:
        gateway = LiteLLMGateway(gw.url, "sk-master", timeout_s=1.0)
        gw.hang(2.0)           # apply the next action, answer late: the unknown outcome
        gw.fail_with(503, times=2)
        gw.down(); gw.up()     # refuse connections on the same port, then accept again

It answers as litellm 1.106.2 does (``proxy/management_endpoints/key_management_endpoints.py``,
``team_endpoints.py``, ``auth/user_api_key_auth.py``): 200 with the record, also for a
target already in that state; 401 for a wrong or missing master key; 400 ``Invalid key
format.`` for a key that is neither ``sk-...`` nor 64 hex digits; 404 for an unknown key
or team; 422 for a malformed body. As in LiteLLM, a raw ``sk-`` key and its SHA-256 token
name the same key. ``POST /webhook`` takes SpendBrake's signed webhook
(``actions.verify_webhook_signature``), answers 401 when the signature is bad or stale, and
answers a repeated ``Idempotency-Key`` as the first time without acting again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from spendbrake.actions import verify_webhook_signature

from ._http import Handler, Server, send_json

__all__ = ["BlockCount", "FakeGateway"]

_ROUTES = {
    "/key/block": ("block", "key"),
    "/key/unblock": ("unblock", "key"),
    "/team/block": ("block", "team"),
    "/team/unblock": ("unblock", "team"),
}
# LiteLLM's is_valid_api_key (proxy/utils.py): an sk- key or a 64-hex token, 3-100 chars.
_KEY_FORMAT = re.compile(r"sk-[A-Za-z0-9_-]+|[a-fA-F0-9]{64}")


class BlockCount(NamedTuple):
    """Calls that reached one target's state (answered 2xx; a webhook's replayed
    ``Idempotency-Key`` does not): how many changed it, and how many in all."""

    changed: int
    total: int


def _token(key: str) -> str:
    """LiteLLM's identity of a key: raw ``sk-`` keys are stored as their SHA-256 hex."""
    return hashlib.sha256(key.encode()).hexdigest() if key.startswith("sk-") else key


def _error(message: str, type_: str, param: str | None, code: int) -> dict[str, Any]:
    """LiteLLM's ProxyException body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": str(code)}}


class _Reply(NamedTuple):
    status: int
    body: dict[str, Any] | list[Any]
    authorized: bool
    changed: bool = False
    headers: tuple[tuple[str, str], ...] = ()


class FakeGateway:
    """LiteLLM's block/unblock admin API plus a signed webhook, with state and fault modes.

    ``keys``/``teams``: the targets the gateway knows (raw ``sk-`` keys or tokens); None
    means every target is known. ``master_key`` None accepts any bearer; ``secret`` None
    refuses every webhook. ``strict_key_format`` applies LiteLLM's key-format check (400 for
    an alias); turn it off to let a demo pause keys named by alias. ``clock`` (unix seconds)
    judges webhook freshness. Everything is thread-safe.
    """

    def __init__(
        self,
        *,
        master_key: str | None = "sk-master",
        secret: str | bytes | None = None,
        keys: Iterable[str] | None = None,
        teams: Iterable[str] | None = None,
        strict_key_format: bool = True,
        port: int = 0,
        tolerance_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.master_key = master_key
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.strict_key_format = strict_key_format
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._names: dict[str, str] = {}  # token -> the name it was first given
        self._known_keys: set[str] | None = None
        if keys is not None:
            self._known_keys = {self._name(k) for k in keys}
        self._known_teams = None if teams is None else set(teams)
        self._blocked: dict[str, set[str]] = {"key": set(), "team": set()}
        self._counts: dict[tuple[str, str, str], list[int]] = {}
        self._calls: list[dict[str, Any]] = []
        self._replies: dict[str, _Reply] = {}  # webhook Idempotency-Key -> first reply
        self._fail: tuple[int, int | None, bytes | None, float | None] | None = None
        self._hang: tuple[float, int | None] | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeGateway:
        """Listen on 127.0.0.1 (a free port the first time when ``port`` is 0)."""
        self._stopping.clear()
        self.up()
        return self

    def stop(self) -> None:
        """Stop serving, release handlers still hanging, close every connection."""
        self._stopping.set()
        self.down()

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def up(self) -> None:
        """Accept connections again, on the same port as before."""
        with self._lock:
            if self._server is not None:
                return
            server = Server(("127.0.0.1", self._port), self._serve)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-gateway-{self._port}",
                daemon=True,
            )
            self._thread.start()

    def down(self) -> None:
        """Refuse new connections and cut open ones: clients see a connection error."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL for ``LiteLLMGateway`` (``gateway.url``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def webhook_url(self) -> str:
        """Endpoint for ``WebhookGateway`` (``gateway.url`` with ``kind: webhook``)."""
        return f"{self.url}/webhook"

    # -- faults ------------------------------------------------------------------------

    def fail_with(
        self,
        status: int = 500,
        times: int | None = 1,
        *,
        body: bytes | str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests (None: all) with ``status``, acting on nothing."""
        _check_times(times)
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._fail = (status, times, raw, retry_after_s)

    def hang(self, seconds: float, times: int | None = 1) -> None:
        """Apply the next ``times`` requests, then wait ``seconds`` before answering."""
        _check_times(times)
        with self._lock:
            self._hang = (seconds, times)

    def clear_faults(self) -> None:
        with self._lock:
            self._fail = self._hang = None

    # -- what happened -----------------------------------------------------------------

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every request, oldest first: ``time``, ``path``, ``body`` (parsed JSON, else text),
        ``authorized``, ``status``, ``changed``, ``fault`` (None, ``fail``, ``hang``),
        ``idempotency_key``, ``client_port`` (one port across calls: a reused connection).
        A ``fail`` fault answers before authentication, so its ``authorized`` is False."""
        with self._lock:
            return [dict(call) for call in self._calls]

    @property
    def blocked_keys(self) -> frozenset[str]:
        """Blocked keys, each under the name it was first given (as configured or as sent)."""
        with self._lock:
            return frozenset(self._names.get(t, t) for t in self._blocked["key"])

    @property
    def blocked_teams(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._blocked["team"])

    def is_blocked(self, target: str, kind: str = "key") -> bool:
        """Whether ``target`` is blocked; a raw ``sk-`` key and its token are the same key."""
        with self._lock:
            return (_token(target) if kind == "key" else target) in self._blocked[kind]

    def block_count(self, target: str, kind: str = "key") -> BlockCount:
        """Accepted block calls for ``target``: those that changed its state, and all of them."""
        return self._count("block", kind, target)

    def unblock_count(self, target: str, kind: str = "key") -> BlockCount:
        return self._count("unblock", kind, target)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` holds (re-checked on every request); False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    async def wait_for_async(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def _count(self, action: str, kind: str, target: str) -> BlockCount:
        ident = _token(target) if kind == "key" else target
        with self._lock:
            changed, total = self._counts.get((action, kind, ident), (0, 0))
            return BlockCount(changed, total)

    # -- serving -----------------------------------------------------------------------

    def _name(self, key: str) -> str:
        token = _token(key)
        self._names.setdefault(token, key)
        return token

    def _take_fault(self) -> tuple[str, Any] | None:
        with self._lock:
            if self._fail is not None:
                status, times, body, retry_after = self._fail
                self._fail = (
                    None if times == 1 else (status, times and times - 1, body, retry_after)
                )
                return "fail", (status, body, retry_after)
            if self._hang is not None:
                seconds, times = self._hang
                self._hang = None if times == 1 else (seconds, times and times - 1)
                return "hang", seconds
        return None

    def _serve(self, handler: Handler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        path = urlsplit(handler.path).path
        fault = self._take_fault()
        if fault is not None and fault[0] == "fail":
            status, body, retry_after = fault[1]
            payload = (
                body
                if body is not None
                else orjson.dumps(
                    _error(f"fake gateway fault: HTTP {status}", "fake_fault", None, status)
                )
            )
            extra = (("retry-after", f"{retry_after:g}"),) if retry_after is not None else ()
            self._record(path, raw, handler, _Reply(status, {}, authorized=False), "fail")
            send_json(handler, status, payload, extra)
            return
        with self._lock:
            reply = self._apply(path, raw, handler)
            self._record(path, raw, handler, reply, fault[0] if fault else None)
        if fault is not None:  # a hang: the action is applied, the answer comes late
            self._stopping.wait(fault[1])
        send_json(handler, reply.status, orjson.dumps(reply.body), reply.headers)

    def _record(
        self, path: str, raw: bytes, handler: Handler, reply: _Reply, fault: str | None
    ) -> None:
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        with self._changed:
            self._calls.append(
                {
                    "time": self._clock(),
                    "path": path,
                    "body": body,
                    "authorized": reply.authorized,
                    "status": reply.status,
                    "changed": reply.changed,
                    "fault": fault,
                    "idempotency_key": handler.headers.get("idempotency-key"),
                    "client_port": handler.client_address[1],
                }
            )
            self._changed.notify_all()

    def _apply(self, path: str, raw: bytes, handler: Handler) -> _Reply:
        if path == "/webhook":
            return self._webhook(raw, handler)
        route = _ROUTES.get(path)
        if route is None:
            return _Reply(404, {"detail": "Not Found"}, authorized=False)
        action, kind = route
        bearer = handler.headers.get("authorization", "")
        authorized = self.master_key is None or bearer == f"Bearer {self.master_key}"
        if not authorized:
            return _Reply(401, _auth_error(bearer), authorized=False)
        field = "key" if kind == "key" else "team_id"
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _Reply(422, _validation_error("json_invalid", [], "JSON decode error"), True)
        target = data.get(field) if isinstance(data, dict) else None
        if not isinstance(target, str):
            return _Reply(
                422, _validation_error("missing", ["body", field], "Field required"), True
            )
        return self._act(action, kind, target, litellm=True)

    def _act(self, action: str, kind: str, target: str, *, litellm: bool) -> _Reply:
        """Set the state of an authorized, well-formed request's target (LiteLLM's order of
        checks: key format, then existence)."""
        if kind == "key":
            valid = 3 <= len(target) <= 100 and _KEY_FORMAT.fullmatch(target)
            if litellm and self.strict_key_format and not valid:
                return _Reply(
                    400, _error("Invalid key format.", "bad_request_error", "key", 400), True
                )
            ident = self._name(target)
            if self._known_keys is not None and ident not in self._known_keys:
                return _Reply(404, _error("Key not found.", "not_found_error", "key", 404), True)
            record: dict[str, Any] = {"token": ident, "key_alias": None}
        else:
            ident = target
            if self._known_teams is not None and target not in self._known_teams:
                detail = {"error": f"Team not found, passed team_id={target}"}
                return _Reply(404, {"detail": detail}, authorized=True)
            record = {"team_id": target}
        blocked = self._blocked[kind]
        changed = (ident not in blocked) if action == "block" else (ident in blocked)
        if action == "block":
            blocked.add(ident)
        else:
            blocked.discard(ident)
        counts = self._counts.setdefault((action, kind, ident), [0, 0])
        counts[0] += changed
        counts[1] += 1
        return _Reply(200, {**record, "blocked": action == "block"}, True, changed)

    def _webhook(self, raw: bytes, handler: Handler) -> _Reply:
        timestamp = handler.headers.get("x-spendbrake-timestamp", "")
        signature = handler.headers.get("x-spendbrake-signature", "")
        if self._secret is None or not verify_webhook_signature(
            self._secret, timestamp, raw, signature, now=self._clock(), tolerance_s=self.tolerance_s
        ):
            return _Reply(401, {"error": "bad or stale signature"}, authorized=False)
        key = handler.headers.get("idempotency-key")
        if key is not None and key in self._replies:
            first = self._replies[key]
            return first._replace(changed=False)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _Reply(400, {"error": "body is not JSON"}, authorized=True)
        if not (
            isinstance(data, dict)
            and data.get("action") in ("block", "unblock")
            and data.get("kind") in ("key", "team")
            and isinstance(data.get("target"), str)
            and data["target"]
        ):
            return _Reply(422, {"error": "need action, kind and target"}, authorized=True)
        reply = self._act(data["action"], data["kind"], data["target"], litellm=False)
        if key is not None and 200 <= reply.status < 300:
            self._replies[key] = reply
        return reply


def _check_times(times: int | None) -> None:
    if times is not None and times < 1:
        raise ValueError(f"times: must be >= 1 or None (every request), got {times}")


def _auth_error(bearer: str) -> dict[str, Any]:
    """LiteLLM's 401: it quotes the end of the key it got and that key's hash."""
    if not bearer:
        return _error("Authentication Error, No api key passed in.", "auth_error", "None", 401)
    key = bearer.removeprefix("Bearer ").strip()
    shown = f"sk-...{key[-4:]}" if len(key) >= 8 else "sk-..."
    message = (
        f"Authentication Error, Invalid proxy server token passed. Received API Key = {shown}, "
        f"Key Hash (Token) ={_token(key)}. Unable to find token in cache or "
        "`LiteLLM_VerificationTokenTable`"
    )
    return _error(message, "auth_error", "None", 401)


def _validation_error(kind: str, loc: list[str], msg: str) -> dict[str, Any]:
    """FastAPI's 422 body."""
    return {"detail": [{"type": kind, "loc": loc, "msg": msg}]}
