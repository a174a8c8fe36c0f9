"""The ``>>>`` examples in the packages' docstrings run, imported by their package names.

Collected by name rather than by ``--doctest-modules`` on the folders: the folders map to
``spendbrake.*`` only through the install, and pytest would import them by path as
top-level ``schemas``, ``detectors`` ... (a second copy of every module).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = (
    "spendbrake.schemas",
    "spendbrake.streamer",
    "spendbrake.stages",
    "spendbrake.detectors",
    "spendbrake.actions",
)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(path)]
    return sorted(names)


MODULES = _modules()


def test_every_package_has_examples() -> None:
    found = sum(
        len(doctest.DocTestFinder().find(importlib.import_module(name))) for name in MODULES
    )
    assert found >= 10, found


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
