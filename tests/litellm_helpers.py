"""Register a LiteLLM logger for one test and remove it from every list after.

LiteLLM copies ``litellm.callbacks`` into its own lists on the first call and
skips a later logger whose class name is already there, so unregistering
must cover all of them or a second test in the process is never called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@contextlib.contextmanager
def registered(litellm: Any, logger: Any) -> Iterator[Any]:
    litellm.callbacks = [*litellm.callbacks, logger]
    try:
        yield logger
    finally:
        for name in CALLBACK_LISTS:
            callbacks = getattr(litellm, name)
            while logger in callbacks:
                callbacks.remove(logger)
