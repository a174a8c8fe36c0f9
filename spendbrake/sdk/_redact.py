"""Keep raw secrets out of usage events, in every string field the SDK sends.

Callers put the wrong thing in the wrong field: an ``Authorization`` header in
``api_key``, a key in a tag, a token pasted as the customer. Each secret-shaped token is
replaced by a stable stand-in, ``sha256:`` and 16 hex digits of its hash, so the same key
still groups as one series and the raw value never leaves the process. Names that only
look a little like keys (``search-agent-prod``, ``sk-batch-1``) pass through.

Shapes, by prefix: OpenAI and Anthropic (``sk-``, ``sk-proj-``, ``sk-ant-``), Stripe-style
``sk_``/``rk_``, Langfuse (``pk-lf-``), Hugging Face (``hf_``), AWS access key ids
(``AKIA``/``ASIA``…), Slack (``xoxb-``, ``xoxp-``, ``xapp-``…), GitHub (``ghp_``…,
``github_pat_``), GitLab (``glpat-``), Google (``AIza``), Groq (``gsk_``), xAI (``xai-``),
Replicate (``r8_``), Perplexity (``pplx-``), JWTs (``eyJ….eyJ….``), each with or without
``Bearer`` before it and spaces around it; and runs of 32 or more hex digits (Azure OpenAI
keys are 32), except a 64-digit SHA-256 (LiteLLM's key token, which its ``/key/block``
takes) and except in ``event_id`` and ``trace_id``, where 32 hex digits are an id.

A stand-in (23 characters) can be longer than the token it replaces (from 11), so
redaction keeps the contract's limits itself: text it lengthened past ``MAX_STR_LEN``
is cut there (the secret is gone by then), and an id so lengthened becomes ``fit_id``'s
stand-in, so that two ids never become one. The event ``emit()`` sends stays valid.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from spendbrake.schemas import MAX_STR_LEN, fit_id

__all__ = ["looks_secret", "redact_api_key", "redact_event", "redact_text"]

_PREFIXED = (
    r"sk-[A-Za-z0-9_\-]{8,}"
    r"|(?:sk|rk)_[A-Za-z0-9_]{8,}"
    r"|pk-lf-[A-Za-z0-9_\-]{8,}"
    r"|hf_[A-Za-z0-9]{16,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"
    r"|xox[abposre]-[A-Za-z0-9\-]{8,}"
    r"|xapp-[A-Za-z0-9\-]{8,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_\-]{16,}"
    r"|AIza[A-Za-z0-9_\-]{20,}"
    r"|gsk_[A-Za-z0-9]{16,}"
    r"|xai-[A-Za-z0-9]{16,}"
    r"|r8_[A-Za-z0-9]{16,}"
    r"|pplx-[A-Za-z0-9]{16,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
)
_HEX = r"[0-9A-Fa-f]{32,}"
# A token is a whole word: not inside a longer name such as "team-sk-..." or "abc123...".
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![A-Za-z0-9_\-.])", r"(?![A-Za-z0-9_\-])"
_BEARER = r"(?:[Bb][Ee][Aa][Rr][Ee][Rr]\s+)?"
_WITH_HEX = re.compile(f"{_BEARER}{_EDGE_BEFORE}(?P<token>{_PREFIXED}|{_HEX}){_EDGE_AFTER}")
_NO_HEX = re.compile(f"{_BEARER}{_EDGE_BEFORE}(?P<token>{_PREFIXED}){_EDGE_AFTER}")
# The same tokens found fast (no Bearer, every token is 11+ characters): the check that
# runs on every event, in the caller's thread; the patterns above only rewrite a hit.
_LONG_WORD = r"(?=[A-Za-z0-9_\-]{11})"
_FIND = re.compile(f"{_EDGE_BEFORE}{_LONG_WORD}(?:{_PREFIXED}|{_HEX}){_EDGE_AFTER}")
_FIND_NO_HEX = re.compile(f"{_EDGE_BEFORE}{_LONG_WORD}(?:{_PREFIXED}){_EDGE_AFTER}")
#: Ids: a W3C trace id or a uuid4().hex is 32 hex digits and no secret.
_ID_FIELDS = frozenset({"event_id", "trace_id"})
_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")
#: Fields left alone: fixed vocabularies and the event time.
_SKIP_FIELDS = frozenset({"workload", "ts"})
_TEXT_FIELDS = (
    "provider",
    "model",
    "team",
    "feature",
    "api_key",
    "customer",
    "environment",
    "outcome",
)


def _stand_in(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _replace(match: re.Match[str]) -> str:
    token = match.group("token")
    if _SHA256_HEX.fullmatch(token):
        return match.group()  # a SHA-256 digest names a key; it is not one
    return _stand_in(token)


def redact_text(value: str, *, hex_secrets: bool = True) -> str:
    """``value`` with every secret-shaped token replaced by its stand-in.

    >>> redact_text("Authorization: bearer sk-proj-abcdefghijklmnop")
    'Authorization: sha256:88eab513e591611b'
    >>> redact_text("search-agent-prod")
    'search-agent-prod'
    """
    if (_FIND if hex_secrets else _FIND_NO_HEX).search(value) is None:
        return value
    return (_WITH_HEX if hex_secrets else _NO_HEX).sub(_replace, value)


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds a secret-shaped token (spaces and ``Bearer`` allowed)."""
    return redact_text(value) != value


def redact_api_key(value: str) -> str:
    """A stable non-reversible stand-in for a raw secret; aliases pass through.

    Spaces around it and a ``Bearer`` in front do not change the stand-in: a key is
    one series however the caller passed it.

    >>> redact_api_key("search-agent-prod")
    'search-agent-prod'
    >>> redact_api_key("sk-proj-abcdefghijklmnop")
    'sha256:88eab513e591611b'
    >>> redact_api_key("  Bearer sk-proj-abcdefghijklmnop ")
    'sha256:88eab513e591611b'
    """
    redacted = redact_text(value)
    if redacted == value:
        return value
    match = _WITH_HEX.fullmatch(value.strip())
    return _replace(match) if match is not None else redacted


def redact_event(event: Any) -> None:
    """Redact every string field of a ``UsageEvent`` in place: attribution fields, tag
    keys and values, and unknown extra fields (nested ones too)."""
    # One search over all the text first: almost every event has no secret at all, and
    # this runs in the caller's thread, on each LLM call.
    text = "\n".join([getattr(event, name) or "" for name in _TEXT_FIELDS])
    if event.tags:
        text += "\n".join(["", *event.tags, *event.tags.values()])
    ids = f"{event.event_id}\n{event.trace_id or ''}"
    if not event.extras and not _FIND.search(text) and not _FIND_NO_HEX.search(ids):
        return
    for name in event.__struct_fields__:
        if name in _SKIP_FIELDS:
            continue
        value = getattr(event, name)
        if name == "api_key" and value is not None:
            event.api_key = redact_api_key(value)[:MAX_STR_LEN]
        elif name in _ID_FIELDS and value is not None:
            setattr(event, name, fit_id(redact_text(value, hex_secrets=False)))
        elif isinstance(value, str):
            redacted = redact_text(value)
            if redacted is not value:
                setattr(event, name, redacted[:MAX_STR_LEN])
        elif name == "tags" and value:
            event.tags = {
                redact_text(k)[:MAX_STR_LEN]: redact_text(v)[:MAX_STR_LEN] for k, v in value.items()
            }
        elif name == "extras" and value:
            event.extras = type(value)(_redact_value(value))  # still Extras; no length limit


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {_redact_value(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value
