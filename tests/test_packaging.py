"""The wheel: one import root, and the SDK working on the base install alone."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What an app that only publishes events must not have to install.
SERVER_ONLY = ("numpy", "river", "httpx", "aiohttp", "slack_sdk", "duckdb", "click", "rich")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("spendbrake-*.whl")
    return path


def test_the_wheel_installs_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"spendbrake"}
    for package in ("schemas", "streamer", "stages", "detectors", "actions", "sdk"):
        assert f"spendbrake/{package}/__init__.py" in names
    assert "spendbrake/schemas/prices.yaml" in names
    assert not any(n.startswith(("bench/", "tests/")) for n in names)


def test_the_sdk_runs_on_the_base_install(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True
    )
    code = (
        "import sys\n"
        "from spendbrake.sdk import SpendProducer, redact_api_key\n"
        "from spendbrake.schemas import validate_event\n"
        "e = validate_event({'event_id': 'e1', 'ts': 1795428000, 'provider': 'openai',"
        " 'model': 'gpt-4o', 'input_tokens': 10, 'output_tokens': 2, 'team': 'search'})\n"
        f"print(e.team, sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))\n"
    )
    # Run outside the checkout, whose spendbrake/ folder would shadow the installed package.
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["search", "[]"]
    cli = subprocess.run(
        [str(env / "bin" / "spendbrake"), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert cli.returncode == 1
    assert "pip install 'spendbrake[server]'" in cli.stderr


def test_the_server_extra_refuses_aiohttp_with_known_smuggling_bugs() -> None:
    """The Slack button endpoint faces the internet (behind a proxy): aiohttp before 3.12.14
    parses requests a proxy may read differently (request smuggling)."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (spec,) = [Requirement(r).specifier for r in extras["server"] if r.startswith("aiohttp")]
    assert "3.12.13" not in spec and "3.9.5" not in spec and "3.12.14" in spec
    assert version("aiohttp") in spec
