"""Secret shapes become stand-ins; names that only resemble keys stay readable."""

from __future__ import annotations

import pytest

from spendbrake.sdk import redact_api_key
from spendbrake.sdk._redact import redact_text


@pytest.mark.parametrize(
    "name",
    [
        "search-agent-prod",
        "sk-batch-1",
        "research-nightly-summarizer",
        "team-sk-abcdefghijkl",
        "gpt-4o-2024-08-06",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "sha256:88eab513e591611b",
        "cus_Nffrfeuf",
        "550e8400-e29b-41d4-a716-446655440000",
        "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",  # a SHA-256
    ],
)
def test_names_pass_through(name: str) -> None:
    assert redact_api_key(name) == redact_text(name) == name


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-AbCdEf0123456789xyz",
        "sk-ant-api03-AbCdEf0123456789",
        "hf_AbCdEfGhIjKlMnOpQrStUv",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-123456789012-AbCdEfGhIjKl",
        "xoxp-1234-5678-9012-abcdef",
        "0123456789abcdef0123456789abcdef",
        "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "AIzaSyAbCdEfGhIjKlMnOpQrStUvWxYz0123456",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
    ],
)
def test_secret_shapes_have_one_stand_in_however_written(secret: str) -> None:
    stand_in = redact_api_key(secret)
    assert stand_in.startswith("sha256:") and len(stand_in) == 23
    for written in (f"Bearer {secret}", f"bearer {secret}", f"  {secret} ", f"BEARER  {secret}"):
        assert redact_api_key(written) == stand_in
    assert redact_text(f"header=Authorization: Bearer {secret}; retry") == (
        f"header=Authorization: {stand_in}; retry"
    )
