"""A fake Slack Web API on 127.0.0.1, for the real ``slack_sdk`` client (``base_url``).

Enough of the API for alerts and digests: chat.postMessage (with threads and message
metadata), chat.update, conversations.history / .replies / .list, auth.test, the
three steps of ``files_upload_v2``, and a button click's ``response_url`` (its messages
are in ``responses``). It checks bot scopes as Slack documents them per method
(``SCOPES`` here is the fake's own copy of Slack's rules, not the product's list),
and a private channel needs ``groups:history`` where a public one needs
``channels:history``. Faults are set at runtime::

    with FakeSlack(token="xoxb-test", scopes={"chat:write"}, private=True) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        slack.fail_with(429, retry_after=1, times=2)   # Retry-After, nothing done
        slack.fail_with(503)                   # no body (a load balancer's answer)
        slack.fail_with(500, error="fatal_error", apply=True)  # done, then an error
        slack.hang(3.0)          # record the message, answer late: "did it post?"
        slack.down(); slack.up() # refuse connections on the same port, then accept again
        slack.grant("groups:history"); slack.invite()  # the operator fixes the app
        slack.clock = lambda: 1_793_523_600.0  # messages arrive then (history's "oldest")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from ._http import Handler, Server, send_json

__all__ = ["FakeSlack"]

CHANNEL_ID = "C0SPEND"
#: A private channel's id starts with G in older workspaces; Slack's answers say which.
PRIVATE_ID = "G0SPEND"
#: Scopes Slack asks of a bot token per method (api.slack.com/methods), public channel.
SCOPES: dict[str, str | None] = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "conversations.list": "channels:read",
    "conversations.info": "channels:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "auth.test": None,
}
#: The same methods on a private channel.
PRIVATE_SCOPES = {
    "conversations.history": "groups:history",
    "conversations.replies": "groups:history",
    "conversations.list": "groups:read",
    "conversations.info": "groups:read",
}


class FakeSlack:
    """Records every message; thread-safe; works from sync and async code."""

    def __init__(
        self,
        token: str | None = None,
        port: int = 0,
        channel: str = "ai-spend",
        *,
        scopes: set[str] | None = None,
        private: bool = False,
        member: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``scopes``: the bot token's scopes (None: every scope); ``private``: the channel
        is private; ``member``: the bot is in the channel (else posts are refused);
        ``clock``: when a message arrives, for history's ``oldest`` (settable: ``clock``)."""
        self.clock = clock
        self.token = token
        self.channel_name = channel.lstrip("#")
        self.private = private
        self.channel_id = PRIVATE_ID if private else CHANNEL_ID
        self._scopes = None if scopes is None else set(scopes)
        self._member = member
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._calls: list[str] = []
        self._answers: list[tuple[str, int, str | None]] = []
        self._files: dict[str, dict[str, Any]] = {}
        self._responses: list[dict[str, Any]] = []
        self._faults: list[tuple[str, Any]] = []
        self._next_ts = 1_700_000_000.0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._stopping.clear()
        self.up()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.down()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def up(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = Server(("127.0.0.1", self._port), self._serve, serve_get=True)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()

    def down(self) -> None:
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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/"

    @property
    def response_url(self) -> str:
        """A click's ``response_url`` as Slack sends it (``hooks.slack.com/actions/...``)."""
        return f"http://127.0.0.1:{self._port}/actions/T1/1/xyz"

    # -- faults ------------------------------------------------------------------------

    def fail_with(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        times: int | None = 1,
        error: str | None = None,
        apply: bool = False,
        match: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls (None: all until cleared) with ``status``.

        The body is ``{"ok": false, "error": error}``; ``error`` defaults to ``ratelimited``
        for a 429 and to no body at all for a 5xx (what a proxy in front of Slack sends).
        ``apply``: the call takes effect first (Slack's ``fatal_error``: "it's possible
        some aspect of the operation succeeded"). ``match``: only calls whose request body
        contains this text (one incident's messages).
        """
        if error is None and status == 429:
            error = "ratelimited"
        with self._lock:
            self._faults.append(("fail", [status, retry_after, times, error, apply, match]))

    def grant(self, *scopes: str) -> None:
        """Add scopes to the bot token (the app reinstalled with them)."""
        with self._lock:
            if self._scopes is not None:
                self._scopes.update(scopes)

    def revoke(self, *scopes: str) -> None:
        with self._lock:
            if self._scopes is None:
                self._scopes = set(SCOPES.values()) | set(PRIVATE_SCOPES.values())
                self._scopes.discard(None)  # type: ignore[arg-type]
            self._scopes.difference_update(scopes)

    def invite(self) -> None:
        """The bot is invited into the channel (``/invite @bot``)."""
        with self._lock:
            self._member = True

    def kick(self) -> None:
        with self._lock:
            self._member = False

    def hang(self, seconds: float, times: int | None = 1) -> None:
        """Record the next call's effect, then wait ``seconds`` before answering."""
        with self._lock:
            self._faults.append(("hang", [seconds, None, times, None, True, None]))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, raw: bytes) -> tuple[str, Any] | None:
        """The first fault set that applies to a call with this body (used up by it)."""
        with self._lock:
            for index, (kind, spec) in enumerate(self._faults):
                match = spec[5]
                if match is not None and match.encode() not in raw:
                    continue
                if spec[2] is not None:
                    spec[2] -= 1
                    if spec[2] <= 0:
                        self._faults.pop(index)
                return kind, spec
            return None

    # -- records -----------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages]

    @property
    def updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(u) for u in self._updates]

    @property
    def calls(self) -> list[str]:
        """Every Web API method called, in order (failed calls included)."""
        with self._lock:
            return list(self._calls)

    @property
    def answers(self) -> list[tuple[str, int, str | None]]:
        """(method, HTTP status, Slack error or None) of every call answered."""
        with self._lock:
            return list(self._answers)

    @property
    def responses(self) -> list[dict[str, Any]]:
        """The messages posted to ``response_url`` (an ephemeral one is the clicker's)."""
        with self._lock:
            return [dict(r) for r in self._responses]

    def parents(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if not m.get("thread_ts")]

    def thread(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("thread_ts") == ts]

    @property
    def files(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._files.values() if f.get("completed")]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    # -- serving -----------------------------------------------------------------------

    def _serve(self, handler: Handler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        method = split.path.rsplit("/", 1)[-1]
        if split.path.startswith("/upload/"):
            self._upload(split.path.rsplit("/", 1)[-1], raw)
            # As Slack's upload URL answers: plain text, not JSON.
            send_json(handler, 200, f"OK - {len(raw)}".encode(), content_type="text/plain")
            return
        if split.path.startswith("/actions/"):
            # A response_url takes a JSON message, no token, and answers "ok".
            with self._changed:
                self._responses.append(orjson.loads(raw))
                self._changed.notify_all()
            send_json(handler, 200, b"ok", content_type="text/plain")
            return
        args = _args(handler.headers.get("content-type", ""), raw, split.query)
        fault = self._take_fault(raw + split.query.encode())
        with self._changed:
            self._calls.append(method)
            self._changed.notify_all()
        if fault is not None and fault[0] == "fail":
            status, retry_after, _, error, apply, _ = fault[1]
            if apply:
                self._answer(method, args, handler)
            headers = [("Retry-After", f"{retry_after:g}")] if retry_after is not None else []
            body = b"" if error is None else orjson.dumps({"ok": False, "error": error})
            self._note(method, status, error)
            kind = "application/json" if body else "text/html"
            send_json(handler, status, body, headers, content_type=kind)
            return
        answer = self._checked(method, handler) or self._answer(method, args, handler)
        if fault is not None and fault[0] == "hang":
            self._stopping.wait(fault[1][0])
        self._note(method, 200, None if answer.get("ok") else answer.get("error"))
        send_json(handler, 200, orjson.dumps(answer))

    def _note(self, method: str, status: int, error: str | None) -> None:
        with self._changed:
            self._answers.append((method, status, error))
            self._changed.notify_all()

    def _checked(self, method: str, handler: Handler) -> dict[str, Any] | None:
        """Slack's refusal of the token or its scopes for ``method``, if any."""
        if (
            self.token is not None
            and handler.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return {"ok": False, "error": "invalid_auth"}
        with self._lock:
            scopes = None if self._scopes is None else set(self._scopes)
        needed = (PRIVATE_SCOPES.get(method) if self.private else None) or SCOPES.get(method)
        if scopes is not None and needed is not None and needed not in scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(sorted(scopes)),
            }
        return None

    def _answer(self, method: str, args: dict[str, Any], handler: Handler) -> dict[str, Any]:
        with self._changed:
            try:
                if method == "chat.postMessage":
                    return self._post(args)
                if method == "chat.update":
                    return self._update(args)
                if method in ("conversations.history", "conversations.replies"):
                    return self._history(method, args)
                if method == "conversations.list":
                    # A private channel is listed only when asked for (types=private_channel).
                    if self.private and "private_channel" not in str(args.get("types")):
                        return {"ok": True, "channels": []}
                    channel = {"id": self.channel_id, "name": self.channel_name}
                    return {"ok": True, "channels": [channel]}
                if method == "auth.test":
                    return {"ok": True, "user_id": "UBOT", "team": "fake"}
                if method == "files.getUploadURLExternal":
                    file_id = f"F{len(self._files) + 1:06d}"
                    self._files[file_id] = {"id": file_id, "filename": args.get("filename")}
                    host = handler.headers.get("host", f"127.0.0.1:{self._port}")
                    return {
                        "ok": True,
                        "file_id": file_id,
                        "upload_url": f"http://{host}/upload/{file_id}",
                    }
                if method == "files.completeUploadExternal":
                    return self._complete(args)
                return {"ok": False, "error": "unknown_method"}
            finally:
                self._changed.notify_all()

    def _channel(self, value: Any) -> str | None:
        """The channel's id if ``value`` names it and the bot may see it."""
        if value not in (self.channel_id, self.channel_name, f"#{self.channel_name}"):
            return None
        # A bot outside a private channel cannot tell it exists.
        if self.private and not self._member:
            return None
        return self.channel_id

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not self._member:
            return {"ok": False, "error": "not_in_channel"}
        thread_ts = args.get("thread_ts")
        if thread_ts and not any(m["ts"] == thread_ts for m in self._messages):
            return {"ok": False, "error": "thread_not_found"}
        self._next_ts += 1.0
        ts = f"{self._next_ts:.6f}"
        message = {
            "ts": ts,
            "channel": channel,
            "text": args.get("text"),
            "blocks": _json(args.get("blocks")),
            "thread_ts": thread_ts,
            "metadata": _json(args.get("metadata")),
            "received_at": self.clock(),
        }
        self._messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        for message in self._messages:
            if message["ts"] == args.get("ts"):
                message["text"] = args.get("text")
                message["blocks"] = _json(args.get("blocks"))
                self._updates.append({**message, "received_at": self.clock()})
                return {"ok": True, "channel": message["channel"], "ts": message["ts"]}
        return {"ok": False, "error": "message_not_found"}

    def _history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        # History takes an id, never a #name.
        if args.get("channel") != self.channel_id or self._channel(args["channel"]) is None:
            return {"ok": False, "error": "channel_not_found"}
        if not self._member:
            return {"ok": False, "error": "not_in_channel"}
        oldest = float(args.get("oldest") or 0)
        with_metadata = str(args.get("include_all_metadata")).lower() in ("1", "true")
        if method == "conversations.replies":
            parent = args.get("ts")
            found = [m for m in self._messages if parent in (m["ts"], m.get("thread_ts"))]
        else:
            found = [m for m in self._messages if not m.get("thread_ts")]
        found = [m for m in found if _wall(m) >= oldest]
        # Newest first, a page of ``limit`` (Slack's default 100) at a time; the cursor is
        # where the next page starts.
        found.reverse()
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        out = []
        for message in found[start : start + limit]:
            shown = {k: v for k, v in message.items() if k not in ("received_at", "metadata")}
            if with_metadata and message.get("metadata"):
                shown["metadata"] = message["metadata"]
            out.append(shown)
        more = start + limit < len(found)
        answer: dict[str, Any] = {"ok": True, "messages": out, "has_more": more}
        if more:
            answer["response_metadata"] = {"next_cursor": str(start + limit)}
        return answer

    def _upload(self, file_id: str, raw: bytes) -> None:
        with self._changed:
            if file_id in self._files:
                self._files[file_id]["bytes"] = len(raw)
                self._files[file_id]["content"] = raw
            self._changed.notify_all()

    def _complete(self, args: dict[str, Any]) -> dict[str, Any]:
        files = _json(args.get("files")) or []
        for entry in files:
            record = self._files.get(entry.get("id"))
            if record is None:
                return {"ok": False, "error": "file_not_found"}
            record.update(
                completed=True,
                title=entry.get("title"),
                channel=args.get("channel_id"),
                comment=args.get("initial_comment"),
                thread_ts=args.get("thread_ts"),
            )
        if files and args.get("channel_id"):
            # Slack shares the files into the channel (or thread) as one message.
            self._next_ts += 1.0
            self._messages.append(
                {
                    "ts": f"{self._next_ts:.6f}",
                    "channel": self._channel(args.get("channel_id")),
                    "text": args.get("initial_comment") or "",
                    "blocks": None,
                    "thread_ts": args.get("thread_ts"),
                    "metadata": None,
                    "files": [{"id": f.get("id"), "title": f.get("title")} for f in files],
                    "received_at": self.clock(),
                }
            )
        return {"ok": True, "files": [{"id": f.get("id")} for f in files]}


def _wall(message: dict[str, Any]) -> float:
    # Fake ts values count up from 1.7e9; compare "oldest" with the receive time instead.
    return message["received_at"]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _args(content_type: str, raw: bytes, query: str) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(query))
    if raw and "json" in content_type:
        args.update(orjson.loads(raw))
    elif raw:
        args.update(parse_qsl(raw.decode("utf-8", "replace")))
    return args
