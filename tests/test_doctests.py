"""The ``>>>`` examples in the package's docstrings run, imported by their package names.

Collected by name rather than by ``--doctest-modules`` on the folders: the folders map to
``spendbrake.*`` only through the install, and pytest would import them by path as
top-level ``schemas``, ``detectors`` ... (a second copy of every module). Every module of
the package, ``spendbrake``'s own (the SDK, replay, reports) included.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

ROOTS = (
    "spendbrake",
    "spendbrake.schemas",
    "spendbrake.streamer",
    "spendbrake.detectors",
    "spendbrake.actions",
)


def modules_with_examples() -> list[str]:
    """The modules whose source holds a ``>>>`` line (found without importing them)."""
    names: set[str] = set()
    for root in ROOTS:
        package = importlib.import_module(root)
        names.add(root)
        names.update(m.name for m in pkgutil.walk_packages(package.__path__, root + "."))
    found = []
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as source:  # type: ignore[arg-type]
            if any(line.lstrip().startswith(">>> ") for line in source):
                found.append(name)
    return found


MODULES = modules_with_examples()


def test_the_walk_finds_the_examples() -> None:
    # A walk that found nothing would pass every case below by having none.
    assert len(MODULES) >= 30
    assert "spendbrake.detectors._recent" in MODULES and "spendbrake.schemas._time" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    examples = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    assert examples, f"{name}: its >>> lines are in no docstring doctest reads"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert not result.failed, f"{name}: {result.failed} example(s) failed (output above)"
