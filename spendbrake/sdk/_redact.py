"""Keep raw provider secrets out of usage events."""

from __future__ import annotations

import hashlib
import re

# Prefixes of provider API keys: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-),
# Google (AIza), Groq (gsk_), xAI (xai-), and a pasted Authorization header.
_SECRET = re.compile(r"^(?:Bearer\s+)?(?:sk-|sk_|AIza|gsk_|xai-|pk-lf-|sk-lf-)[A-Za-z0-9_\-]{8,}")


def looks_secret(value: str) -> bool:
    return bool(_SECRET.match(value))


def redact_api_key(value: str) -> str:
    """A stable non-reversible stand-in for a raw secret; aliases pass through.

    >>> redact_api_key("search-agent-prod")
    'search-agent-prod'
    >>> redact_api_key("sk-proj-abcdefghijklmnop")
    'sha256:88eab513e591611b'
    """
    if not looks_secret(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
