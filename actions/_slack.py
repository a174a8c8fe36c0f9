"""Slack at the edge: the real ``slack_sdk`` AsyncWebClient, one attempt per call, classified.

Nothing here retries or sleeps: slack_sdk's handlers would repeat a 500 or a dropped
connection that may have posted (a visible duplicate), and would sleep out a 429's
``Retry-After`` inside the call while a more urgent alert waits. Every answer comes back
as a :class:`SlackOutcome` saying what it proves, and the action stage schedules the next
attempt. Nothing here raises for I/O.

Was it posted? Only what the answer proves counts:

- a 429, a 5xx without a Slack error body (a proxy's answer), ``service_unavailable``, a
  refused connection or a connect timeout: nothing was done, send again as is;
- a timeout or a dropped connection after the request went out, or Slack's own
  ``fatal_error`` / ``internal_error`` ("it's possible some aspect of the operation
  succeeded"): **unsure**. Each post carries its dedupe key in its message metadata, so the
  next attempt first looks for it with ``conversations.history`` (``conversations.replies``
  in a thread) on the channel's id and posts only if it is not there. The id comes from
  the answers Slack gives (``channel`` of chat.postMessage), never from conversations.list;
  when it is not known yet, or the token lacks the history scope, the post goes out
  unchecked: a rare visible duplicate rather than a lost alert.
- a refused token, scope or channel (``CONFIG_ERRORS``): no attempt can succeed until an
  operator fixes the config or the Slack app; ``needed`` names what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from spendbrake.schemas import SlackConfig

__all__ = ["CONFIG_ERRORS", "SCOPES", "Failure", "SlackNotifier", "SlackOutcome", "how_to_fix"]

log = logging.getLogger(__name__)

#: Every Slack Web API method the product calls, and the bot token scopes it needs
#: (history: ``channels:history`` in a public channel, ``groups:history`` in a private
#: one). docs/actions.md lists exactly these scopes; tests hold the code and the docs to it.
SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "conversations.history": ("channels:history", "groups:history"),
    "conversations.replies": ("channels:history", "groups:history"),
    # files_upload_v2 (the digest's chart): two Web API calls around a plain upload.
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}

#: Answers no retry can fix until the token, the app's scopes or the channel change.
CONFIG_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "ekm_access_denied",
    }
)
#: Slack's errors that say the call did nothing and may be sent again as it is.
_NOT_DONE = frozenset({"ratelimited", "service_unavailable", "request_timeout"})
#: Slack's errors that say part of the call may have happened.
_MAYBE_DONE = frozenset({"fatal_error", "internal_error"})
_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
#: ``find`` reads messages since the first attempt less this much (this host's clock may run
#: ahead of Slack's: the post's ts is Slack's), a page of this many at a time (Slack's
#: history answers the newest first, ``has_more`` and a cursor for the rest), up to this
#: many pages.
FIND_SKEW_S = 300.0
FIND_PAGE = 200
FIND_PAGES = 50
#: Channel ids as Slack writes them (public C…, private G… in older workspaces).
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
EVENT_TYPE = "spendbrake_alert"

#: How a failed call is handled: ``retry`` (nothing was done: send again), ``unsure`` (it
#: may have taken effect: look before sending again), ``config`` (wait for an operator),
#: ``permanent`` (this request can never succeed).
Failure = Literal["retry", "unsure", "config", "permanent"]


@dataclass(frozen=True, slots=True)
class SlackOutcome:
    ok: bool
    ts: str | None = None
    error: str | None = None
    retry_after: float | None = None
    failure: Failure | None = None
    #: What a ``config`` failure needs: the scope Slack names, the channel, ``slack.token``.
    needed: str | None = None
    #: The channel id Slack answered with.
    channel: str | None = None
    #: Why an unsure post went out without its check (a duplicate is possible).
    unchecked: str | None = None
    #: The method that failed (a post may fail at its check).
    method: str | None = None

    @property
    def permanent(self) -> bool:
        return self.failure == "permanent"


class SlackNotifier:
    """Posts and updates messages in ``slack.channel`` (or an incident's own channel)."""

    def __init__(
        self, config: SlackConfig, *, timeout_s: float = 10.0, channel_id: str | None = None
    ) -> None:
        token = config.token.get_secret_value() if config.token is not None else None
        kwargs: dict[str, Any] = {}
        if config.base_url:
            kwargs["base_url"] = (
                config.base_url if config.base_url.endswith("/") else (config.base_url + "/")
            )
        # No retry handlers: see the module docstring (the default one repeats a dropped
        # connection, which may have posted).
        self.client = AsyncWebClient(
            token=token, timeout=int(max(1, timeout_s)), retry_handlers=[], **kwargs
        )
        self.timeout_s = timeout_s
        self.channel = config.channel
        #: The configured channel's id: given, learned from an answer, or None.
        self.channel_id = channel_id or (
            config.channel if _CHANNEL_ID.match(config.channel) else None
        )

    async def post(
        self,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        dedupe_key: str,
        thread_ts: str | None = None,
        channel: str | None = None,
        since: float | None = None,
    ) -> SlackOutcome:
        """Post (into ``thread_ts`` of ``channel`` if given). ``since``: an earlier attempt,
        started then, may have posted: look for the dedupe key first."""
        unchecked = None
        if since is not None:
            found = await self.find(dedupe_key, since, thread_ts, channel)
            if found.ok and found.ts is not None:
                log.info("slack message %s was already posted (ts %s)", dedupe_key, found.ts)
                return found
            if not found.ok:
                if not _cannot_check(found):
                    return found  # the check itself failed for now: try again later
                unchecked = found.needed or found.error
                log.warning(
                    "slack message %s may already be posted but cannot be checked (%s): "
                    "posting it, a duplicate is possible",
                    dedupe_key,
                    unchecked,
                )
        outcome = await self._call(
            "chat_postMessage",
            channel=channel or self.channel_id or self.channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"dedupe_key": dedupe_key}},
            unfurl_links=False,
        )
        return replace(outcome, unchecked=unchecked) if unchecked else outcome

    async def update(
        self, ts: str, text: str, blocks: list[dict[str, Any]], *, channel: str | None = None
    ) -> SlackOutcome:
        """Rewrite a message: setting the same content twice is harmless, so never unsure."""
        outcome = await self._call(
            "chat_update",
            channel=channel or self.channel_id or self.channel,
            ts=ts,
            text=text,
            blocks=blocks,
        )
        return replace(outcome, failure="retry") if outcome.failure == "unsure" else outcome

    async def find(
        self,
        dedupe_key: str,
        since: float,
        thread_ts: str | None = None,
        channel: str | None = None,
    ) -> SlackOutcome:
        """Look for a message carrying ``dedupe_key`` posted since ``since``: ok with its
        ts, ok with ts None when there is none, not ok when the look failed (``failure``
        ``config`` with ``needed`` when it cannot be done at all)."""
        where = channel or self.channel_id
        if where is None:
            return SlackOutcome(
                False,
                error="channel id not known yet",
                failure="config",
                needed=f"the id of {self.channel}",
                method="conversations.history",
            )
        args: dict[str, Any] = {
            "channel": where,
            "oldest": f"{since - FIND_SKEW_S:.6f}",
            "include_all_metadata": True,
            "limit": FIND_PAGE,
        }
        method = "conversations_history"
        if thread_ts is not None:
            method, args["ts"] = "conversations_replies", thread_ts
        for _ in range(FIND_PAGES):
            outcome, data = await self._request(method, **args)
            if not outcome.ok:
                return outcome
            for message in data.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("dedupe_key") == dedupe_key:
                    return SlackOutcome(True, ts=message.get("ts"), channel=where)
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not (data.get("has_more") and cursor):
                break
            args["cursor"] = cursor
        # Not there (or past FIND_PAGES pages since the first attempt, a channel that busy:
        # a possible duplicate is better than an alert never sent).
        return SlackOutcome(True, channel=where)

    async def thread_has_file(self, thread_ts: str) -> SlackOutcome:
        """ok with ts set to the file message's ts if the thread holds a file (else None)."""
        outcome, data = await self._request(
            "conversations_replies", channel=self.channel_id or self.channel, ts=thread_ts
        )
        if not outcome.ok:
            return outcome
        for message in data.get("messages", []):
            if message.get("files"):
                return SlackOutcome(True, ts=message.get("ts"))
        return SlackOutcome(True)

    async def upload(self, path: Path, *, title: str, thread_ts: str | None = None) -> SlackOutcome:
        """Upload a file to the channel (into a thread if given) with files_upload_v2.

        Slack shares an upload by channel id: call after a post or a find learned it."""
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

    async def _call(self, method: str, **args: Any) -> SlackOutcome:
        return (await self._request(method, **args))[0]

    async def _request(self, method: str, **args: Any) -> tuple[SlackOutcome, dict[str, Any]]:
        name = method.replace("_", ".", 1) if method != "files_upload_v2" else method
        try:
            response = await asyncio.wait_for(
                getattr(self.client, method)(**args), timeout=self.timeout_s * 4
            )
        except SlackApiError as exc:
            outcome = _refusal(exc.response, name, args.get("channel") or self.channel)
            # A config refusal is the caller's to report, once, with what to fix.
            log.log(
                logging.DEBUG if outcome.failure == "config" else logging.WARNING,
                "slack %s failed: %s%s",
                name,
                outcome.error,
                f" (needs {outcome.needed})" if outcome.needed else "",
            )
            return outcome, {}
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Refused, unresolvable, or no connection within the timeout: nothing was sent.
            log.warning("slack %s: no connection (%s)", name, type(exc).__name__)
            return SlackOutcome(
                False, error=f"no connection ({type(exc).__name__})", failure="retry", method=name
            ), {}
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("slack %s: no answer (%s)", name, type(exc).__name__)
            return SlackOutcome(
                False,
                error=f"no answer ({type(exc).__name__}); it may have taken effect",
                failure="unsure",
                method=name,
            ), {}
        data = response.data if isinstance(response.data, dict) else {}
        channel = data.get("channel") if isinstance(data.get("channel"), str) else None
        if channel and (args.get("channel") in (None, self.channel, self.channel_id)):
            self.channel_id = channel  # the configured channel's id, for later checks
        return SlackOutcome(True, ts=data.get("ts"), channel=channel), data


def _cannot_check(found: SlackOutcome) -> bool:
    """A check that no retry makes possible (the id is unknown, the token lacks the
    history scope): post unchecked rather than hold the alert. A channel or token that
    is refused outright would refuse the post too, so that one waits for the fix."""
    return found.failure == "config" and (
        found.error == "missing_scope" or found.error == "channel id not known yet"
    )


def _refusal(response: Any, method: str, channel: str) -> SlackOutcome:
    """Classify an HTTP or Slack error answer (see the module docstring)."""
    # A Web API answer is a SlackResponse; a file upload's is the raw HTTP response.
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    data = getattr(response, "data", None)
    body = data if isinstance(data, dict) else {}
    headers = getattr(response, "headers", None) or {}
    retry_after = _seconds(headers.get("Retry-After") or headers.get("retry-after"))
    error = body.get("error")
    if status == 429 or error == "ratelimited":
        return SlackOutcome(
            False, error="ratelimited", retry_after=retry_after, failure="retry", method=method
        )
    if error in CONFIG_ERRORS:
        if error == "missing_scope":
            needed = str(body.get("needed") or "a scope")
        elif error in _TOKEN_ERRORS:
            needed = "slack.token"
        else:
            needed = channel
        return SlackOutcome(False, error=error, failure="config", needed=needed, method=method)
    if error in _MAYBE_DONE:
        return SlackOutcome(
            False, error=error, retry_after=retry_after, failure="unsure", method=method
        )
    if status >= 500 or error in _NOT_DONE:
        # A 5xx without Slack's own error body comes from in front of Slack: not done.
        return SlackOutcome(
            False,
            error=error or f"http {status}",
            retry_after=retry_after,
            failure="retry",
            method=method,
        )
    return SlackOutcome(
        False, error=str(error or f"http {status}"), failure="permanent", method=method
    )


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 86400 else None


def how_to_fix(error: str | None, needed: str | None) -> str:
    """What the operator does about a config refusal (``SlackOutcome.failure == "config"``):
    the log line of a held message and the digest's error say the same."""
    if error == "missing_scope":
        return f"add the {needed} scope to the Slack app and reinstall it"
    if error in ("channel_not_found", "not_in_channel", "is_archived"):
        return f"invite the bot to {needed}, or name a channel it is in"
    return "set slack.token to a valid bot token"
