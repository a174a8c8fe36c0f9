"""The plumbing the fake servers share: a threaded HTTP/1.1 server whose connections can be
cut, and a JSON answer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


def send_json(
    handler: Handler,
    status: int,
    payload: bytes,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> None:
    try:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(payload)))
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except OSError:  # the client gave up (timeout) or down() cut the connection
        handler.close_connection = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients' connection reuse is exercised
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle and delayed ACKs
    # add ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True
    server: Server

    def do_POST(self) -> None:
        self.server.serve(self)

    def do_GET(self) -> None:
        if getattr(self.server, "serve_get", False):
            self.server.serve(self)
        else:
            send_json(self, 405, orjson.dumps({"detail": "Method Not Allowed"}))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo own the terminal


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging handler must not hold up down() or stop()
    allow_reuse_address = True  # up() rebinds the port down() released

    def __init__(
        self, address: tuple[str, int], serve: Callable[[Handler], None], serve_get: bool = False
    ) -> None:
        self.serve = serve
        self.serve_get = serve_get
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Close kept-alive connections too, or pooled clients would still get answers."""
        with self._open_lock:
            open_sockets, self._open = list(self._open), set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)
