"""How every benchmark prints its result (one JSON object, or a figure a line), and the
memory figure they share."""

from __future__ import annotations

from typing import Any

import orjson


def show(result: dict[str, Any], as_json: bool) -> None:
    """``result`` as one JSON object (``--json``), else ``name  value`` lines, aligned, with
    the figures a run did not measure (None) left out."""
    if as_json:
        print(orjson.dumps(result).decode())
        return
    width = max(map(len, result), default=0) + 2
    for key, value in result.items():
        if value is not None:
            print(f"{key:{width}s}{value}")


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). ``getrusage`` would report the parent's
    peak when it is larger: Linux carries ``ru_maxrss`` over fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
