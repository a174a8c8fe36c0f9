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
