"""docker-compose.yml: structure always, and the compose tool's own check where one is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_wires_kafka_and_the_worker() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka, worker = spec["services"]["kafka"], spec["services"]["spendbrake"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "broker,controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # single-node KRaft
    assert worker["environment"]["SPENDBRAKE_BOOTSTRAP"] == "kafka:9092"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["command"][:2] == ["spendbrake", "worker"]
    mounted = worker["volumes"][0].split(":")[0]
    assert (ROOT / mounted).exists()
    assert (ROOT / "Dockerfile").exists()


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def _acls(script: str) -> list[tuple[str, frozenset[str], str, str, str]]:
    """(principal, operations, resource kind, name, pattern) of each kafka-acls.sh line."""
    import shlex

    out = []
    for line in script.splitlines():
        if "kafka-acls.sh" not in line:
            continue
        words = shlex.split(line.replace("$$", "$"))
        value = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
        operations = frozenset(words[i + 1] for i, w in enumerate(words) if w == "--operation")
        kind = "topic" if "--topic" in value else "group"
        out.append(
            (
                value["--allow-principal"],
                operations,
                kind,
                value["--" + kind],
                value.get("--resource-pattern-type", "literal"),
            )
        )
    return out


def _allowed(acls: list, principal: str, operation: str, kind: str, name: str) -> bool:
    return any(
        who == principal
        and (operation in ops or "All" in ops)
        and what == kind
        and (name.startswith(resource) if pattern == "prefixed" else name == resource)
        for who, ops, what, resource, pattern in acls
    )


def test_prometheus_can_reach_the_worker_metrics() -> None:
    """Served on the container's own loopback (the default), /metrics reached nothing."""
    worker = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["spendbrake"]
    command = worker["command"]
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert "127.0.0.1:9464:9464" in worker["ports"]  # the host's loopback only


def test_kafka_needs_scram_everywhere_it_is_reachable_and_binds_the_host_to_loopback() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = spec["services"]["kafka"]
    env = _env(kafka)
    listeners = _listeners(env["KAFKA_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols) == set(listeners)
    mechanism = env["KAFKA_SASL_ENABLED_MECHANISMS"]
    assert mechanism == "SCRAM-SHA-512"
    for name, (host, _) in listeners.items():
        if protocols[name] == "PLAINTEXT":  # no identity: only the container's own loopback
            assert host == "127.0.0.1", name
        else:
            assert protocols[name] in ("SASL_PLAINTEXT", "SASL_SSL"), name
            jaas = f"KAFKA_LISTENER_NAME_{name}_{mechanism.replace('-', '___')}_SASL_JAAS_CONFIG"
            assert "ScramLoginModule required" in env[jaas], name
    assert all(str(p).startswith("127.0.0.1:") for p in kafka["ports"])  # the host: loopback
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"  # i.e. the loopback listeners only
    voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[1]
    assert voter == "127.0.0.1:{}".format(listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]][1])
    bootstrap = "{}:{}".format(*listeners["BOOTSTRAP"])
    assert f"--bootstrap-server {bootstrap}" in kafka["healthcheck"]["test"][1]


def test_only_the_worker_may_write_alerts_and_actions_producers_only_events() -> None:
    from spendbrake.schemas import Config

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    init, worker = spec["services"]["kafka-init"], spec["services"]["spendbrake"]
    assert init["network_mode"] == "service:kafka"  # reaches the loopback BOOTSTRAP listener
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    script = init["command"][0]
    acls = _acls(script)
    me = "User:" + _env(worker)["SPENDBRAKE_KAFKA_USERNAME"]
    producer = "User:spendbrake-producer"
    for user in (me, producer):  # both are SCRAM users of the enabled mechanism
        assert f'--entity-name {user[5:]} --add-config "SCRAM-SHA-512=[password=' in script
    topics = Config().kafka.topics
    for topic in topics.names():
        for op in ("Write", "Read", "Describe", "Create"):
            assert _allowed(acls, me, op, "topic", topic), (op, topic)
    assert _allowed(acls, me, "Read", "group", Config().kafka.group_id)
    assert _allowed(acls, producer, "Write", "topic", topics.events)
    for topic in set(topics.names()) - {topics.events}:
        assert not _allowed(acls, producer, "Write", "topic", topic), topic
        assert not _allowed(acls, producer, "Read", "topic", topic), topic
    assert {who for who, *_ in acls} == {me, producer}
    assert not any(_allowed(acls, producer, "Read", "group", g) for g in ("spendbrake", "x"))


def test_the_worker_authenticates_with_a_password_that_has_no_default() -> None:
    from spendbrake._config_loader import load_config

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = _env(spec["services"]["spendbrake"])
    for service in ("spendbrake", "kafka-init"):
        for name, value in _env(spec["services"][service]).items():
            if "PASSWORD" in name:
                assert value.startswith("${") and ":?" in value, (service, name)
    password = "from-the-operators-shell"
    env["SPENDBRAKE_KAFKA_PASSWORD"] = password
    config = load_config(ROOT / "examples" / "spendbrake.yaml", env=env)
    kafka = config.kafka
    assert (kafka.bootstrap_servers, kafka.security_protocol) == ("kafka:9092", "SASL_PLAINTEXT")
    args = kafka.client_args()
    assert args["sasl_mechanism"] == "SCRAM-SHA-512" and args["sasl_plain_password"] == password
    assert password not in repr(config)
    internal = _listeners(_env(spec["services"]["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    assert "{}:{}".format(*internal["INTERNAL"]) == kafka.bootstrap_servers


def test_compose_config_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin or docker-compose on this machine")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
