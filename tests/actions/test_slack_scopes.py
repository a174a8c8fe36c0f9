"""The Slack scopes docs/actions.md documents are exactly what the product calls.

Three ways: every slack_sdk client method named in the product's source maps (through the
client's own code) to Web API methods that ``SCOPES`` lists, and ``SCOPES`` lists nothing
else; the documented scope list is the union of ``SCOPES``; and the product's Slack flows,
run against a fake Slack that grants only the documented scopes in a private channel, are
never refused a scope."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from functools import cache
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from spendbrake._digest import send_digest
from spendbrake._reload import ConfigReloader
from spendbrake.actions._slack import SCOPES, SlackNotifier
from spendbrake.fakes.slack import FakeSlack
from spendbrake.schemas import Config, SlackConfig

ROOT = Path(__file__).parents[2]
#: The product's code (the fakes stand in for Slack; tests and benches are not shipped).
PRODUCT = ["actions", "streamer", "detectors", "schemas", "spendbrake"]
CLIENT = {name for name in dir(AsyncWebClient) if not name.startswith("_")}


def documented_scopes() -> set[str]:
    """The scopes in docs/actions.md's "Slack app scopes" item (up to its first full stop)."""
    text = (ROOT / "docs" / "actions.md").read_text()
    items = re.findall(r"^- \*\*Slack app scopes\*\*(.*?)\.\s", text, re.M | re.S)
    assert len(items) == 1, "docs/actions.md: one '- **Slack app scopes** ...' item"
    return set(re.findall(r"`([a-z]+:[a-z.]+)`", items[0]))


@cache
def web_api_methods(client_method: str) -> frozenset[str]:
    """The Web API methods a slack_sdk client method calls, read from the client's code."""
    source = inspect.getsource(getattr(AsyncWebClient, client_method))
    found = set(re.findall(r'api_call\(\s*"([\w.]+)"', source))
    for inner in re.findall(r"self\.(\w+)\(", source):
        if inner != client_method and inner in CLIENT and inner != "api_call":
            found |= web_api_methods(inner)
    return frozenset(found)


def client_methods_in_product() -> set[str]:
    names: set[str] = set()
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*.py"):
            if "fakes" in path.parts:
                continue
            names |= set(re.findall(r"\b[a-z]+_[A-Za-z0-9_]+\b", path.read_text())) & CLIENT
    return names


def test_every_slack_method_in_the_code_is_in_the_scope_table_and_nothing_else() -> None:
    called = set().union(*(web_api_methods(m) for m in client_methods_in_product()))
    assert called == set(SCOPES), (called, set(SCOPES))
    assert "conversations.list" not in called  # channels:read is not ours to ask for


def test_the_readme_documents_exactly_the_scopes_the_code_needs() -> None:
    needed = {scope for scopes in SCOPES.values() for scope in scopes}
    assert documented_scopes() == needed


def test_the_product_flows_are_never_refused_a_documented_scope(tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    bad = tmp_path / "bad.yaml"
    with FakeSlack(token="xoxb-s", private=True, scopes=documented_scopes()) as slack:
        config = SlackConfig(token="xoxb-s", channel="#ai-spend", base_url=slack.base_url)

        async def flows() -> None:
            client = SlackNotifier(config, timeout_s=1.0)
            try:
                since = time.time()
                parent = await client.post("hi", [], dedupe_key="a")
                assert parent.ok and parent.ts
                await client.post("r", [], dedupe_key="b", thread_ts=parent.ts, since=since)
                await client.post("p", [], dedupe_key="c", since=since)
                await client.update(parent.ts, "hi!", [], channel=parent.channel)
            finally:
                await client.close()
            ids: dict[str, str] = {}
            report = _report()
            await send_digest(config, report, chart, since=since, channel_ids=ids)
            await send_digest(config, report, chart, since=since, channel_ids=ids)
            # The hot-reload notice about a broken config file.
            bad.write_text("slack: [\n")
            reloader = ConfigReloader(bad, Config(slack=config), [])
            await reloader._post_once(["bad.yaml:1:8: broken"])

        asyncio.run(flows())
    refused = [(m, e) for m, _, e in slack.answers if e is not None]
    assert refused == [], refused
    assert set(slack.calls) <= set(SCOPES), slack.calls
    assert {"conversations.history", "conversations.replies"} <= set(slack.calls)
    assert len(slack.files) == 1


def _report() -> dict:
    from tests.spendbrake.test_digest import _report as digest_report

    return digest_report()
