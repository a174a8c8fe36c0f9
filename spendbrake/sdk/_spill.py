"""A local file for events the broker has not taken yet.

The producer appends here when its memory queue is full or the broker is
down, and replays the file when the broker is back. The file survives the
process, so a producer that restarts delivers what its predecessor spilled.
Replays may resend a line whose first send had an unknown outcome: the engine
drops duplicates by ``event_id``, so a resend never double counts.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def default_spill_path(topic: str, client_id: str) -> Path:
    base = Path(os.environ.get("SPENDBRAKE_SPILL_DIR", Path.home() / ".spendbrake" / "spill"))
    return base / f"{client_id}-{topic}.jsonl"


class SpillFile:
    """Append-only JSON lines plus a ``.replaying`` file while a replay is under way, and a
    ``.rejected`` file for lines the broker refused as too large (kept for people to read,
    never sent again).

    Holds an exclusive lock so two live producers never share one file; a
    second producer on the same path gets a ``-<pid>`` suffix instead.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_handle = self._lock(path)
        if self._lock_handle is None:
            path = path.with_name(f"{path.stem}-{os.getpid()}{path.suffix}")
            self._lock_handle = self._lock(path)
        self.path = path
        self.replay_path = path.with_name(path.name + ".replaying")
        self.rejected_path = path.with_name(path.name + ".rejected")
        self._mutex = threading.Lock()
        #: Where the replay file's unsent lines start, and where the last chunk read ends.
        self._replay_offset = 0
        self._chunk_end = 0
        self._handle: IO[bytes] | None = None
        self._pending = self._has_data(self.path) or self._has_data(self.replay_path)

    @staticmethod
    def _lock(path: Path) -> IO[bytes] | None:
        handle = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

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


def _ends_a_line(path: Path) -> bool:
    """True for an empty file or one whose last byte is a newline."""
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
