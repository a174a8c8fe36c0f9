"""The ``spendbrake worker`` command line that benchmarks and tests start as a subprocess."""

from __future__ import annotations

import sys
from pathlib import Path


def worker_command(config: Path, state_dir: Path, *options: str) -> list[str]:
    """argv of ``spendbrake worker --config CONFIG --state-dir STATE_DIR OPTIONS...``.

    Run as ``python -m spendbrake.cli`` with this interpreter, so a subprocess uses the
    same environment as its parent whether or not the console script is on PATH.
    """
    return [
        sys.executable,
        "-m",
        "spendbrake.cli",
        "worker",
        "--config",
        str(config),
        "--state-dir",
        str(state_dir),
        *options,
    ]
