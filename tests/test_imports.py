"""Each stage loads only the libraries it uses: a worker is as small as its stages."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from spendbrake import actions, stages, streamer

HEAVY = ("duckdb", "slack_sdk", "aiohttp", "httpx", "river")


def loaded_after(statement: str) -> set[str]:
    """The heavy libraries a fresh interpreter holds after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("import spendbrake.stages", set()),
        ("import spendbrake.stages.ingest", set()),
        ("import spendbrake.stages.detect", set()),
        ("import spendbrake._replay", set()),
        ("import spendbrake.detectors", set()),
        ("import spendbrake.stages.store", {"duckdb"}),
    ],
)
def test_a_stage_loads_only_its_own_libraries(statement: str, allowed: set[str]) -> None:
    assert loaded_after(statement) <= allowed


def test_lazy_names_resolve_and_unknown_names_raise() -> None:
    assert stages.ActionStage.__name__ == "ActionStage"
    assert streamer.StoreBatch.__name__ == "StoreBatch"
    assert actions.make_gateway.__name__ == "make_gateway"
    for package in (stages, streamer, actions):
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            package.nope  # noqa: B018
        assert set(package.__all__) <= set(dir(package)) | set(package._LAZY)


def _module_files() -> dict[str, Path]:
    """Every module of the wheel, by its import name (the folders pyproject maps in)."""
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"spendbrake": "spendbrake", **setuptools["package-dir"]}
    files = {}
    for package, folder in folders.items():
        for path in (root / folder).rglob("*.py"):
            parts = path.relative_to(root / folder).with_suffix("").parts
            files[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return files


def _imported_at_load(name: str, path: Path, modules: set[str]) -> set[str]:
    """Our modules that ``name`` imports when it loads (top level, not TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    body = list(ast.parse(path.read_text()).body)
    for node in body:
        if isinstance(node, ast.Try):
            body.extend(node.body)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.rsplit(".", node.level - 1)[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    return out & modules


def test_no_import_cycle() -> None:
    """A module that needs another while that one is still loading breaks on import order."""
    files = _module_files()
    graph = {name: _imported_at_load(name, path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [name, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
