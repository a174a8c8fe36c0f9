"""The ``spendbrake`` console script: names the extra to install if the CLI's libraries are missing.

The base install is the producer SDK alone; the command line comes with ``[server]``.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as cli
    except ModuleNotFoundError as exc:
        sys.exit(
            f"spendbrake: the command line needs {exc.name!r}, which the base install (the "
            "producer SDK) leaves out: pip install 'spendbrake[server]'"
        )
    cli()
