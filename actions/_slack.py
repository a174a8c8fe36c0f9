"""Slack at the edge: the real ``slack_sdk`` AsyncWebClient, one attempt per call, classified.

slack_sdk's own handlers retry a 429 after its ``Retry-After``, a 5xx and a dropped
connection a few times within the call; anything left over comes back as a
:class:`SlackOutcome` for the action stage's durable retry. Nothing here raises for I/O.

A post is not idempotent at Slack, so each one carries a dedupe key in its message
metadata; a repeat of a post whose outcome is unknown (``since`` = its first attempt)
first looks in the channel (or thread) for a message carrying that key, and returns it
instead of posting twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from spendbrake.schemas import SlackConfig

__all__ = ["SlackNotifier", "SlackOutcome"]

log = logging.getLogger(__name__)

#: Answers retrying cannot fix: the config or the message is wrong.
_PERMANENT = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "message_not_found",
        "cant_update_message",
        "invalid_metadata_format",
    }
)
EVENT_TYPE = "spendbrake_alert"


@dataclass(frozen=True, slots=True)
class SlackOutcome:
    ok: bool
    ts: str | None = None
    permanent: bool = False
    error: str | None = None
    retry_after: float | None = None


class SlackNotifier:
    """Posts and updates messages in ``slack.channel``."""

    def __init__(self, config: SlackConfig, *, timeout_s: float = 10.0) -> None:
        token = config.token.get_secret_value() if config.token is not None else None
        kwargs: dict[str, Any] = {}
        if config.base_url:
            kwargs["base_url"] = (
                config.base_url if config.base_url.endswith("/") else (config.base_url + "/")
            )
        self.client = AsyncWebClient(
            token=token,
            timeout=int(max(1, timeout_s)),
            retry_handlers=[
                AsyncRateLimitErrorRetryHandler(max_retry_count=2),
                AsyncServerErrorRetryHandler(max_retry_count=1),
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
            ],
            **kwargs,
        )
        self.timeout_s = timeout_s
        self.channel = config.channel
        #: The channel id Slack answered with: history lookups need an id, not a #name.
        self.channel_id: str | None = None

    async def post(
        self,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        dedupe_key: str,
        thread_ts: str | None = None,
        since: float | None = None,
    ) -> SlackOutcome:
        if since is not None:
            found = await self._find(dedupe_key, thread_ts, since)
            if isinstance(found, SlackOutcome):
                return found  # the lookup itself failed: try again later
            if found is not None:
                log.info("slack message %s was already posted (ts %s)", dedupe_key, found)
                return SlackOutcome(True, ts=found)
        return await self._call(
            "chat_postMessage",
            channel=self.channel_id or self.channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"dedupe_key": dedupe_key}},
            unfurl_links=False,
        )

    async def update(self, ts: str, text: str, blocks: list[dict[str, Any]]) -> SlackOutcome:
        return await self._call(
            "chat_update", channel=self.channel_id or self.channel, ts=ts, text=text, blocks=blocks
        )

    async def find(
        self, dedupe_key: str, since: float, thread_ts: str | None = None
    ) -> SlackOutcome:
        """Look for a message carrying ``dedupe_key`` since ``since``: ok with its ts, ok
        with ts None when there is none, not ok when Slack did not answer."""
        found = await self._find(dedupe_key, thread_ts, since)
        return found if isinstance(found, SlackOutcome) else SlackOutcome(True, ts=found)

    async def thread_has_file(self, thread_ts: str) -> SlackOutcome:
        """ok with ts set to the file message's ts if the thread holds a file (else None)."""
        outcome = await self._call(
            "conversations_replies", channel=self.channel_id or self.channel, ts=thread_ts
        )
        if not outcome.ok:
            return outcome
        for message in self._last.get("messages", []):
            if message.get("files"):
                return SlackOutcome(True, ts=message.get("ts"))
        return SlackOutcome(True)

    async def upload(self, path: Path, *, title: str, thread_ts: str | None = None) -> SlackOutcome:
        """Upload a file to the channel (into a thread if given) with files_upload_v2."""
        if self.channel_id is None:
            found = await self._call("conversations_list", limit=1000, exclude_archived=True)
            if not found.ok:
                return found
        return await self._call(
            "files_upload_v2",
            channel=self.channel_id or self.channel,
            file=str(path),
            filename=path.name,
            title=title,
            thread_ts=thread_ts,
        )

    async def close(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None and not session.closed:
            await session.close()

    async def _find(
        self, dedupe_key: str, thread_ts: str | None, since: float
    ) -> str | SlackOutcome | None:
        """The ts of a message carrying ``dedupe_key`` posted since ``since``, if any."""
        if self.channel_id is None:
            # No post has succeeded yet in this process: ask Slack for the channel's id.
            found = await self._call("conversations_list", limit=1000, exclude_archived=True)
            if not found.ok:
                return found
        args: dict[str, Any] = {
            "channel": self.channel_id or self.channel,
            "oldest": f"{since - 1:.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        method = "conversations_history"
        if thread_ts is not None:
            method, args["ts"] = "conversations_replies", thread_ts
        outcome = await self._call(method, **args)
        if not outcome.ok:
            return outcome
        for message in self._last.get("messages", []):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("dedupe_key") == dedupe_key:
                return message.get("ts")
        return None

    async def _call(self, method: str, **args: Any) -> SlackOutcome:
        self._last: dict[str, Any] = {}
        try:
            response = await asyncio.wait_for(
                getattr(self.client, method)(**args), timeout=self.timeout_s * 4
            )
        except SlackApiError as exc:
            # A Web API answer is a SlackResponse; a file upload's is the raw HTTP response.
            response = exc.response
            status = getattr(response, "status_code", None) or getattr(response, "status", 0)
            body = response if hasattr(response, "get") else {}
            error = str(body.get("error") or f"http {status}")
            headers = getattr(response, "headers", None) or {}
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
            permanent = error in _PERMANENT or (
                400 <= status < 500 and status != 429 and error not in ("ratelimited",)
            )
            if status == 429:
                error = "ratelimited"
            elif status >= 500:
                error = f"http {status}"
            log.warning("slack %s failed: %s", method, error)
            return SlackOutcome(
                False,
                permanent=permanent and status < 500,
                error=error,
                retry_after=float(retry_after) if retry_after else None,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("slack %s: no answer (%s)", method, type(exc).__name__)
            return SlackOutcome(
                False, error=f"no answer ({type(exc).__name__}); it may have posted"
            )
        data = response.data if isinstance(response.data, dict) else {}
        self._last = data
        if method == "chat_postMessage" and data.get("channel"):
            self.channel_id = data["channel"]
        elif method == "conversations_list":
            name = self.channel.lstrip("#")
            for channel in data.get("channels", []):
                if channel.get("name") == name or channel.get("id") == self.channel:
                    self.channel_id = channel["id"]
        return SlackOutcome(True, ts=data.get("ts"))
