"""A local file for events the broker has not taken yet.

The producer appends here when its memory queue is full or the broker is
down, and replays the file when the broker is back. The file survives the
process, so a producer that restarts delivers what its predecessor spilled.
Replays may resend a line whose first send had an unknown outcome: the engine
drops duplicates by ``event_id``, so a resend never double counts.

Each spill file has a ``.lock`` beside it that its process ``flock``s for life; the
kernel lets go when the process ends, however it ends. A second process on the same
path (a LiteLLM proxy's ``--num_workers``) writes ``<name>-<pid>.jsonl`` instead, and
``claim_orphans`` is how a later process, or a live one, takes such a file over once
its process has exited: only the one that gets its lock sends it, so two live processes
never send one file twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from spendbrake.schemas import ConfigError


def default_spill_path(topic: str, client_id: str) -> Path:
    base = Path(os.environ.get("SPENDBRAKE_SPILL_DIR", Path.home() / ".spendbrake" / "spill"))
    return base / f"{client_id}-{topic}.jsonl"


class SpillFile:
    """Append-only JSON lines plus a ``.replaying`` file while a replay is under way, and a
    ``.rejected`` file for lines the broker refused as too large (kept for people to read,
    never sent again).

    Holds an exclusive lock so two live producers never share one file; a second
    producer on the same path gets a ``-<pid>`` suffix instead (``-<pid>-<n>`` when that
    is held too). The lock file records the path asked for (``primary``), so that only
    producers of that path claim the file once its process is gone (``claim_orphans``).
    """

    def __init__(self, path: str | Path) -> None:
        """Raises ``ConfigError`` when the folder cannot be made or written (a read-only
        home in a container): without a spill file an outage would lose events."""
        primary = Path(path)
        try:
            primary.parent.mkdir(parents=True, exist_ok=True)
            for candidate in _candidates(primary):
                # A -<pid> name can be another path's own file: take it only if it is ours.
                lock = _lock(candidate, primary, claim=candidate != primary)
                if lock is not None:
                    self._attach(candidate, primary, lock)
                    return
        except OSError as exc:
            raise ConfigError(
                "spill_path",
                f"cannot write a spill file in {primary.parent} ({exc.strerror or exc}); name "
                "a writable folder with SPENDBRAKE_SPILL_DIR (a volume, in a container) or "
                "spill_path=",
            ) from None

    def _attach(self, path: Path, primary: Path, lock: IO[bytes]) -> None:
        self.path = path
        self.primary = primary
        self._lock_handle: IO[bytes] | None = lock
        self.replay_path = path.with_name(path.name + ".replaying")
        self.rejected_path = path.with_name(path.name + ".rejected")
        self._mutex = threading.Lock()
        #: Where the replay file's unsent lines start, and where the last chunk read ends.
        self._replay_offset = 0
        self._chunk_end = 0
        self._handle: IO[bytes] | None = None
        self._pending = self._has_data(self.path) or self._has_data(self.replay_path)

    def claim_orphans(self) -> list[SpillFile]:
        """Take over the spill files of this one's path that no live process holds.

        They are the files of processes that exited (one worker of several, a crash)
        before the broker took everything. Each comes back locked by this process and
        holding events, to replay and then ``discard``; one already empty is removed
        here. A file another process holds (its own, or another claimer's) or whose
        lock records another path is left alone.
        """
        claimed: list[SpillFile] = []
        for path in _siblings(self.primary):
            if path == self.path:
                continue
            lock = _lock(path, self.primary, claim=True)
            if lock is None:
                continue
            spill = object.__new__(SpillFile)
            spill._attach(path, self.primary, lock)
            if spill.pending:
                claimed.append(spill)
            else:
                with contextlib.suppress(OSError):  # left empty files: harmless
                    spill.discard()
        return claimed

    @staticmethod
    def _has_data(path: Path) -> bool:
        try:
            return path.stat().st_size > 0
        except FileNotFoundError:
            return False

    @property
    def pending(self) -> bool:
        """True while spilled events wait for the broker."""
        return self._pending

    def append(self, payloads: list[bytes]) -> None:
        """Write payloads (one JSON object each, no newline).

        Flushed to the OS, not fsynced: a spill survives this process dying,
        not the machine losing power, and ``emit()`` stays fast when it spills.
        """
        if not payloads:
            return
        data = b"\n".join(payloads) + b"\n"
        with self._mutex:
            if self._handle is None:
                self._handle = open(self.path, "ab")  # noqa: SIM115 - closed on replay/close
                if not _ends_a_line(self.path):
                    # A process killed mid-write left half a line: end it, or the next
                    # event would be glued to it and go to the DLQ with it.
                    data = b"\n" + data
            self._handle.write(data)
            self._handle.flush()
            self._pending = True

    def start_replay(self) -> Path | None:
        """Move spilled lines aside for sending; new spills go to a fresh file meanwhile."""
        with self._mutex:
            if self._has_data(self.replay_path):
                return self.replay_path
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if self._has_data(self.path):
                os.replace(self.path, self.replay_path)
                self._replay_offset = 0
                return self.replay_path
            self._pending = False
            return None

    def read_replay(self, chunk: int = 1000) -> Iterator[list[bytes]]:
        """The replay file's lines in chunks, from the first chunk not yet marked sent
        (``chunk_sent``): a replay that failed resumes there, not at the top."""
        with open(self.replay_path, "rb") as handle:
            handle.seek(self._replay_offset)
            position = self._replay_offset
            lines: list[bytes] = []
            for raw in handle:
                position += len(raw)
                line = raw.rstrip(b"\r\n")
                if line:
                    lines.append(line)
                if len(lines) >= chunk:
                    self._chunk_end = position
                    yield lines
                    lines = []
            if lines:
                self._chunk_end = position
                yield lines

    def chunk_sent(self) -> None:
        """The chunk ``read_replay`` yielded last is done with: never read again."""
        self._replay_offset = self._chunk_end

    def reject(self, lines: list[bytes]) -> None:
        """Set aside lines the broker refuses as too large, so they block no replay."""
        with self._mutex, open(self.rejected_path, "ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")

    def finish_replay(self) -> None:
        with self._mutex:
            self.replay_path.unlink(missing_ok=True)
            self._replay_offset = 0
            self._pending = self._has_data(self.path)

    def close(self) -> None:
        with self._mutex:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def release_after_fork(self) -> None:
        """In a forked child: let go of the parent's lock and spill file, leaving them alone.

        The child's copies of the descriptors would hold the parent's lock after the
        parent exits (no later producer could claim its file). Closing the file objects
        could write out a line the parent's thread had half written, or wait for a lock
        that thread held. Each descriptor is pointed at /dev/null instead: whatever closes
        the objects later closes that.
        """
        for handle in (self._handle, self._lock_handle):
            if handle is not None:
                null = os.open(os.devnull, os.O_RDWR)
                try:
                    os.dup2(null, handle.fileno())
                finally:
                    os.close(null)

    def discard(self) -> None:
        """Delete a claimed file that is sent, and a ``-<pid>`` file's lock (its
        ``.rejected`` stays); one that still holds events is only let go, for a later
        claim to send.

        The lock file goes while still locked: ``_lock`` checks that the file it locked
        is still the one at the path, so nobody keeps a lock on a deleted file. The
        path's own lock file stays: an older SDK, which does not check, may open it.
        """
        try:
            with self._mutex:
                if not (self._has_data(self.path) or self._has_data(self.replay_path)):
                    self.path.unlink(missing_ok=True)
                    self.replay_path.unlink(missing_ok=True)
                    if self.path != self.primary:
                        _lock_path(self.path).unlink(missing_ok=True)
        finally:
            self.close()


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _candidates(primary: Path) -> Iterator[Path]:
    """The paths a producer of ``primary`` tries in turn: it, then ``-<pid>``, then
    ``-<pid>-<n>`` (a claimer may be holding a dead process's file of the same pid)."""
    yield primary
    stem, suffix, pid = primary.stem, primary.suffix, os.getpid()
    yield primary.with_name(f"{stem}-{pid}{suffix}")
    for n in itertools.count(1):
        yield primary.with_name(f"{stem}-{pid}-{n}{suffix}")


def _siblings(primary: Path) -> list[Path]:
    """The spill files ``_candidates`` may have made for ``primary`` (any pid) that
    exist, by data file name: any of the data, ``.replaying`` or lock file is there."""
    pattern = re.compile(
        rf"{re.escape(primary.stem)}(?:-\d+(?:-\d+)?)?{re.escape(primary.suffix)}"
        r"(?:\.replaying|\.lock)?"
    )
    names: set[str] = set()
    with os.scandir(primary.parent) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name):
                names.add(entry.name.removesuffix(".replaying").removesuffix(".lock"))
    return [primary.with_name(name) for name in sorted(names)]


def _lock(path: Path, primary: Path, claim: bool = False) -> IO[bytes] | None:
    """Lock ``path``'s lock file without waiting and record ``primary`` in it; None when
    another process, or another handle in this one, holds it.

    With ``claim``, None also when the lock file records another path: a file named like
    one of ours that is another producer's (``spend.events-2.jsonl`` is the spill of
    topic ``spend.events-2``, no ``-<pid>`` file of ``spend.events.jsonl``). A lock file
    that records nothing is an older SDK's, and claimed.
    """
    lock_path = _lock_path(path)
    while True:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        opened = os.fstat(handle.fileno())
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (
            opened.st_dev,
            opened.st_ino,
        ):
            break
        handle.close()  # a claimer deleted it after we opened it: lock the new one
    handle.seek(0)
    owner = handle.read()
    record = os.fsencode(primary.name)
    if claim and owner and owner != record:
        handle.close()
        return None
    if owner != record:
        handle.truncate(0)
        handle.write(record)
        handle.flush()
    return handle


def _ends_a_line(path: Path) -> bool:
    """True for an empty file or one whose last byte is a newline."""
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
