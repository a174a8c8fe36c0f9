"""How every benchmark prints its result: one JSON object, or a figure a line."""

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
