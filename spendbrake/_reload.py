"""Hot reload of the operator config in a running worker (file watch and SIGHUP).

A changed file is validated with the same loader as ``spendbrake validate``. A broken one
is rejected: every problem is logged, posted once to the operators' Slack channel, and
the running config stays in force. A valid one is handed to every stage in one
synchronous pass (no await in between, so no record is processed under a mix of old and
new settings); each stage keeps the state that still applies (``SpendWatch.reconfigure``
keeps baselines and budget spend). If a stage refuses, the stages already switched go
back to the old config.

The ``kafka`` section (topics, bootstrap, group) is what the running consumers were built
on: a change to it is applied at the next restart, and said so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spendbrake.schemas import Config, ConfigError, mrkdwn_code

from ._config_loader import ConfigErrors, config_from_bytes, parse_yaml
from ._logs import NOT_HELD

log = logging.getLogger(__name__)


class Reconfigurable(Protocol):
    def reconfigure(self, config: Config) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one look at the file did: ``applied``, ``rejected`` or ``unchanged``."""

    status: str
    lines: tuple[str, ...] = ()


class ConfigReloader:
    """Watches ``path`` and applies valid changes to ``stages``.

    Parameters
    ----------
    path
        The operator YAML file the worker was started with.
    config
        The config in force (as loaded, with command-line overrides applied).
    stages
        Everything with a ``reconfigure(config) -> notes`` method.
    interval_s
        How often the file's size and mtime are compared (SIGHUP looks at once); 0: only
        on SIGHUP.
    overrides
        What the command line changed in a loaded config (``--bootstrap``, ``--group``),
        applied to every reloaded one too.
    """

    def __init__(
        self,
        path: str | Path,
        config: Config,
        stages: Sequence[Reconfigurable],
        interval_s: float = 1.0,
        overrides: Callable[[Config], Config] = lambda config: config,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.stages = list(stages)
        self.interval_s = interval_s
        self.overrides = overrides
        self._stat = self._stat_now()
        self._digest = _digest_of(self._read())
        self._posted: set[str] = set()
        #: Problems whose post failed (Slack down): tried again every ``_POST_RETRY_S`` while
        #: the file is still the rejected one, then dropped (a good reload ends it).
        self._unposted: tuple[str, ...] | None = None
        self._next_post = 0.0
        #: Notes of changes that wait for a restart, as the last applied reload gave them:
        #: each is logged once, not again at every reload until the restart.
        self._waiting: set[str] = set()
        self._wake = asyncio.Event()
        self.generation = 0

    def request(self) -> None:
        """Look at the file now (the SIGHUP handler)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Check the file every ``interval_s`` (or on ``request``) until ``stopping``."""
        while not stopping.is_set():
            self._wake.clear()
            waiters = {
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(stopping.wait()),
            }
            done, pending = await asyncio.wait(
                waiters,
                timeout=self.interval_s if self.interval_s > 0 else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in pending:
                task.cancel()
            if stopping.is_set():
                return
            if self._unposted is not None and time.monotonic() >= self._next_post:
                await self._post_once(self._unposted)
            forced = bool(done)
            stat = self._stat_now()
            if not forced and stat == self._stat:
                continue
            if not forced:
                # An editor may still be writing it: read once it holds still.
                for _ in range(_SETTLE_TRIES):
                    await asyncio.sleep(_SETTLE_S)
                    again = self._stat_now()
                    if again == stat:
                        break
                    stat = again
            self._stat = stat
            result = self.check()
            if result.status == "rejected":
                await self._post_once(result.lines)

    def check(self) -> ReloadResult:
        """Read the file; apply it if it changed and is valid.

        The file is read once: the bytes compared with the config in force are the bytes
        parsed. (Read twice, an in-place write between the reads had a cut-off file applied,
        say with its last budgets missing, and the complete one never: its digest was the
        one recorded.)
        """
        raw = self._read()
        digest = _digest_of(raw)
        if raw is not None and digest not in (self._digest, _EMPTY) and _sets_nothing(raw):
            digest = _EMPTY
        if raw is None or digest in (self._digest, _EMPTY):
            # Unreadable: an editor mid-save (write to a temp file, rename); look again later.
            # Empty: one that truncates, then writes, or a file of comments alone. Never read
            # as "all defaults", which would drop every budget and policy in force.
            if digest == _EMPTY:
                log.info(
                    "config %s sets nothing (empty, or comments alone); the running config "
                    "stays in force (to run on the defaults, restart without --config)",
                    self.path,
                )
            return ReloadResult("unchanged")
        try:
            new = self.overrides(config_from_bytes(raw, str(self.path)))
        except ConfigErrors as exc:
            return self._reject(digest, [str(e) for e in exc.errors])
        except ConfigError as exc:
            return self._reject(digest, [str(exc)])
        notes: list[str] = []
        if new.kafka != self.config.kafka:
            notes.append("kafka: applied at the next restart")
            new = new.model_copy(update={"kafka": self.config.kafka})
        switched: list[Reconfigurable] = []
        try:
            for stage in self.stages:
                notes.extend(stage.reconfigure(new))
                switched.append(stage)
        except Exception as exc:
            for stage in switched:
                stage.reconfigure(self.config)
            return self._reject(digest, [f"{self.path}: {exc}"])
        changed = [
            name
            for name in type(new).model_fields
            if getattr(new, name) != getattr(self.config, name)
        ]
        self.config = new
        waiting = {note for note in notes if "restart" in note}
        notes = [note for note in notes if note not in self._waiting]
        self._waiting = waiting
        self._digest = digest
        self.generation += 1
        log.info(
            "config reloaded from %s (generation %d): %s",
            self.path,
            self.generation,
            f"{', '.join(changed)} changed" if changed else "no setting changed (comments, layout)",
        )
        for note in notes:
            log.info("config reload: %s", note)
        self._posted.clear()  # a mistake made again after a good config is news again
        self._unposted = None  # mended: no need to tell a late Slack about it
        return ReloadResult("applied", tuple(notes))

    def _reject(self, digest: str, lines: list[str]) -> ReloadResult:
        self._digest = digest  # the same broken text is not reported again
        log.error(
            "config %s rejected; the running config stays in force:\n%s",
            self.path,
            "\n".join(lines),
            # Once per distinct text already: a repeat after a good config is news, not
            # a retry loop's repeat to hold back.
            extra={NOT_HELD: True},
        )
        return ReloadResult("rejected", tuple(lines))

    async def _post_once(self, lines: Sequence[str]) -> None:
        """Tell the operators' channel, once per distinct set of problems."""
        slack = self.config.slack
        key = "\n".join(lines)
        if slack.token is None or key in self._posted:
            return
        self._posted.add(key)
        from slack_sdk.web.async_client import AsyncWebClient

        kwargs = {"base_url": slack.base_url.rstrip("/") + "/"} if slack.base_url else {}
        client = AsyncWebClient(
            token=slack.token.get_secret_value(), timeout=int(slack.timeout_s), **kwargs
        )
        # Escaped: a YAML key or value quoted in a message is text, never a mention or link.
        text = (
            f":warning: SpendBrake rejected a change to `{mrkdwn_code(self.path.name)}`; "
            "the running config stays in force.\n```\n"
            + "\n".join(map(mrkdwn_code, lines))
            + "\n```"
        )
        try:
            await client.chat_postMessage(channel=slack.channel, text=text, unfurl_links=False)
            self._unposted = None
        except Exception as exc:  # an operator notice: logged above already, never fatal
            if self._unposted is None:
                log.warning(
                    "could not post the rejected config to Slack (%s); tried again every %.0f s "
                    "while the file stays as it is",
                    exc,
                    _POST_RETRY_S,
                )
            self._posted.discard(key)
            self._unposted = tuple(lines)
            self._next_post = time.monotonic() + _POST_RETRY_S
        finally:
            session = getattr(client, "session", None)
            if session is not None and not session.closed:
                await session.close()

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None


def _digest_of(data: bytes | None) -> str:
    if data is None:
        return _UNREADABLE
    return hashlib.sha256(data).hexdigest() if data.strip() else _EMPTY


def _sets_nothing(raw: bytes) -> bool:
    """A file whose YAML holds no setting (comments, ``---``, ``{}``): as good as empty."""
    try:
        data, _ = parse_yaml(raw.decode("utf-8"))
    except (UnicodeDecodeError, ConfigError):
        return False  # not empty: the loader names the problem
    return data is None or data == {}


_UNREADABLE = "<unreadable>"
_EMPTY = "<empty>"
#: A changed file is read once its size and mtime held still for this long.
_SETTLE_S = 0.2
#: A rejected config's Slack post that failed is tried again this often.
_POST_RETRY_S = 60.0
_SETTLE_TRIES = 25
