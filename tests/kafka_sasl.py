"""Kafka SASL/SCRAM in front of the embedded broker, for tests of client authentication.

The embedded broker (Tansu) keeps SCRAM users in its storage, and memory storage cannot
hold one before authentication is on, so this front does what an Apache Kafka listener
with ``sasl.enabled.mechanisms=SCRAM-SHA-512`` does on a new connection: ``ApiVersions``
passes (the broker answers it), ``SaslHandshake`` and ``SaslAuthenticate`` run RFC 5802
against its own user table, any other request before that closes the connection, and an
authenticated connection is piped to the broker as is. Start the broker with
``advertised_port`` = the front's port so clients come back through it.

It records who authenticated (``principals``: client id and user) and every refusal.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import socket
import struct
import threading
from types import TracebackType

from spendbrake._broker import free_port

_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_ILLEGAL_SASL_STATE, _UNSUPPORTED_MECHANISM, _AUTHENTICATION_FAILED = 34, 33, 58
_ITERATIONS = 4096


class ScramFront:
    """SCRAM-SHA-512 (or -256) on 127.0.0.1:``port``, forwarding to 127.0.0.1:``target``."""

    def __init__(
        self,
        target: int,
        users: dict[str, str],
        *,
        port: int = 0,
        mechanism: str = "SCRAM-SHA-512",
    ) -> None:
        self.target = target
        self.port = port or free_port()
        self.mechanism = mechanism
        self._hash = hashlib.sha512 if mechanism.endswith("512") else hashlib.sha256
        self._users = {name: self._credentials(password) for name, password in users.items()}
        self.principals: list[tuple[str, str]] = []  # (client id, user) per connection
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()

    def _credentials(self, password: str) -> tuple[bytes, bytes, bytes]:
        salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac(self._hash().name, password.encode(), salt, _ITERATIONS)
        stored = self._hash(self._hmac(salted, b"Client Key")).digest()
        return salt, stored, self._hmac(salted, b"Server Key")

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._hash).digest()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> ScramFront:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> ScramFront:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def users(self) -> set[str]:
        with self._lock:
            return {user for _, user in self.principals}

    # -- connections ---------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._conns.add(upstream)
            if not self._authenticate(client, upstream):
                client.close()
                upstream.close()
                return
        except OSError:
            client.close()
            if upstream is not None:
                upstream.close()
            return
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def _authenticate(self, client: socket.socket, upstream: socket.socket) -> bool:
        """Run the SASL exchange; True once the client proved a user's password."""
        mechanism_ok = False
        exchange: dict[str, object] = {}
        while True:
            frame = _read_frame(client)
            if frame is None:
                return False
            api_key, version, correlation = struct.unpack(">hhi", frame[:8])
            (id_len,) = struct.unpack(">h", frame[8:10])
            client_id = frame[10 : 10 + max(id_len, 0)].decode("utf-8", "replace")
            body = frame[10 + max(id_len, 0) :]
            if api_key == _API_VERSIONS:
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
                answer = _read_frame(upstream)
                if answer is None:
                    return False
                client.sendall(struct.pack(">i", len(answer)) + answer)
            elif api_key == _SASL_HANDSHAKE:
                (length,) = struct.unpack(">h", body[:2])
                mechanism_ok = body[2 : 2 + length].decode() == self.mechanism
                error = 0 if mechanism_ok else _UNSUPPORTED_MECHANISM
                enabled = _string(self.mechanism)
                _send(client, correlation, struct.pack(">hi", error, 1) + enabled)
                if not mechanism_ok:
                    self._refuse(client_id, "mechanism")
                    return False
            elif api_key == _SASL_AUTHENTICATE and mechanism_ok:
                (length,) = struct.unpack(">i", body[:4])
                token = body[4 : 4 + length].decode("utf-8", "replace")
                reply, user = self._step(exchange, token)
                error = _AUTHENTICATION_FAILED if reply is None else 0
                message = b"\xff\xff" if reply is not None else _string("authentication failed")
                payload = (reply or "").encode()
                answer = struct.pack(">h", error) + message + struct.pack(">i", len(payload))
                answer += payload + (struct.pack(">q", 0) if version >= 1 else b"")
                _send(client, correlation, answer)
                if reply is None:
                    self._refuse(client_id, "password")
                    return False
                if user is not None:
                    with self._lock:
                        self.principals.append((client_id, user))
                    return True
            else:
                # Kafka closes a connection that asks for anything before authenticating.
                self._refuse(client_id, f"api {api_key} before authentication")
                return False

    def _step(self, exchange: dict[str, object], token: str) -> tuple[str | None, str | None]:
        """One SCRAM message in; (the answer, or None for a failure; the user once done)."""
        if "server_first" not in exchange:
            bare = token.split(",", 2)[2]  # drop the GS2 header "n,,"
            fields = dict(part.split("=", 1) for part in bare.split(","))
            user = fields["n"].replace("=2C", ",").replace("=3D", "=")
            if user not in self._users:
                return None, None
            salt, _, _ = self._users[user]
            nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
            first = f"r={nonce},s={base64.b64encode(salt).decode()},i={_ITERATIONS}"
            exchange.update(user=user, bare=bare, server_first=first, nonce=nonce)
            return first, None
        fields = dict(part.split("=", 1) for part in token.split(","))
        if fields.get("r") != exchange["nonce"]:
            return None, None
        without_proof = token.rsplit(",p=", 1)[0]
        auth = f"{exchange['bare']},{exchange['server_first']},{without_proof}".encode()
        _, stored, server_key = self._users[str(exchange["user"])]
        proof = base64.b64decode(fields["p"])
        signature = self._hmac(stored, auth)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if not hmac.compare_digest(self._hash(client_key).digest(), stored):
            return None, None
        final = "v=" + base64.b64encode(self._hmac(server_key, auth)).decode()
        return final, str(exchange["user"])

    def _refuse(self, client_id: str, why: str) -> None:
        with self._lock:
            self.refused.append(f"{client_id}: {why}")


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _send(sock: socket.socket, correlation: int, body: bytes) -> None:
    frame = struct.pack(">i", correlation) + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exactly(sock, 4)
    if head is None:
        return None
    return _read_exactly(sock, struct.unpack(">i", head)[0])


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
