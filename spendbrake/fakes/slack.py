"""A fake Slack Web API on 127.0.0.1, for the real ``slack_sdk`` client (``base_url``).

Enough of the API for alerts and digests: chat.postMessage (with threads and message
metadata), chat.update, conversations.history / .replies / .list, auth.test, and the
three steps of ``files_upload_v2``. Faults are set at runtime::

    with FakeSlack(token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        slack.fail_with(429, retry_after=1, times=2)   # or 500
        slack.hang(3.0)          # record the message, answer late: "did it post?"
        slack.down(); slack.up() # refuse connections on the same port, then accept again
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


class FakeSlack:
    """Records every message; thread-safe; works from sync and async code."""

    def __init__(self, token: str | None = None, port: int = 0, channel: str = "ai-spend") -> None:
        self.token = token
        self.channel_name = channel.lstrip("#")
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._calls: list[str] = []
        self._files: dict[str, dict[str, Any]] = {}
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

    # -- faults ------------------------------------------------------------------------

    def fail_with(self, status: int, *, retry_after: float | None = None, times: int | None = 1):
        """Answer the next ``times`` calls (None: all until cleared) with ``status``."""
        with self._lock:
            self._faults.append(("fail", [status, retry_after, times]))

    def hang(self, seconds: float, times: int | None = 1) -> None:
        """Record the next call's effect, then wait ``seconds`` before answering."""
        with self._lock:
            self._faults.append(("hang", [seconds, None, times]))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self) -> tuple[str, Any] | None:
        with self._lock:
            if not self._faults:
                return None
            kind, spec = self._faults[0]
            if spec[2] is not None:
                spec[2] -= 1
                if spec[2] <= 0:
                    self._faults.pop(0)
            return kind, spec

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
        with self._lock:
            return list(self._calls)

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
        args = _args(handler.headers.get("content-type", ""), raw, split.query)
        fault = self._take_fault()
        with self._changed:
            self._calls.append(method)
            self._changed.notify_all()
        if fault is not None and fault[0] == "fail":
            status, retry_after, _ = fault[1]
            headers = [("Retry-After", f"{retry_after:g}")] if retry_after is not None else []
            error = "ratelimited" if status == 429 else "fatal_error"
            send_json(handler, status, orjson.dumps({"ok": False, "error": error}), headers)
            return
        if (
            self.token is not None
            and handler.headers.get("authorization") != f"Bearer {self.token}"
        ):
            send_json(handler, 200, orjson.dumps({"ok": False, "error": "invalid_auth"}))
            return
        answer = self._answer(method, args, handler)
        if fault is not None and fault[0] == "hang":
            self._stopping.wait(fault[1][0])
        send_json(handler, 200, orjson.dumps(answer))

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
                    return {"ok": True, "channels": [{"id": CHANNEL_ID, "name": self.channel_name}]}
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
        if value in (CHANNEL_ID, self.channel_name, f"#{self.channel_name}"):
            return CHANNEL_ID
        return None

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
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
            "received_at": time.time(),
        }
        self._messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        for message in self._messages:
            if message["ts"] == args.get("ts"):
                message["text"] = args.get("text")
                message["blocks"] = _json(args.get("blocks"))
                self._updates.append({**message, "received_at": time.time()})
                return {"ok": True, "channel": message["channel"], "ts": message["ts"]}
        return {"ok": False, "error": "message_not_found"}

    def _history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if self._channel(args.get("channel")) is None:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(args.get("oldest") or 0)
        with_metadata = str(args.get("include_all_metadata")).lower() in ("1", "true")
        if method == "conversations.replies":
            parent = args.get("ts")
            found = [m for m in self._messages if parent in (m["ts"], m.get("thread_ts"))]
        else:
            found = [m for m in self._messages if not m.get("thread_ts")]
        found = [m for m in found if _wall(m) >= oldest]
        out = []
        for message in reversed(found):
            shown = {k: v for k, v in message.items() if k not in ("received_at", "metadata")}
            if with_metadata and message.get("metadata"):
                shown["metadata"] = message["metadata"]
            out.append(shown)
        return {"ok": True, "messages": out, "has_more": False}

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
                    "received_at": time.time(),
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
