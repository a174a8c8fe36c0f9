"""Partition snapshots in a local (or shared) directory.

Layout per input partition: ``<root>/<topic>/p<N>/``

- ``snapshot.json``: open windows, counters, the next input offset, and the
  byte length of each dedupe bucket file. Written atomically (temp file,
  fsync, rename): a reader sees the old snapshot or the new one, never half.
- ``dedupe/<hour>.ids``: seen event ids, one JSON array per checkpoint. Bytes past
  the length recorded in the snapshot (a crash between append and rename) are
  cut off on restore.
- ``lock``: held (flock) by the one worker that owns the partition, so a
  partition that moves in a rebalance is only read once its old owner let go. Its
  holder writes who it is into it (pid, host, since when): a worker waiting for it
  names the holder in its log.

Workers that share partitions across machines need this directory on a
shared volume; on one machine, any number of workers can share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from spendbrake.schemas import StateUnreadable, format_ts, gc_paused

log = logging.getLogger(__name__)

#: How often a worker waiting for a partition's lock says so, naming the lock and its holder.
LOCK_NOTE_S = 30.0


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class PartitionStore:
    """Snapshot files of one input partition."""

    def __init__(self, root: str | Path, topic: str, partition: int) -> None:
        self.dir = Path(root) / topic / f"p{partition}"
        self.dedupe_dir = self.dir / "dedupe"
        self._lock: IO[bytes] | None = None

    async def acquire(self, timeout_s: float | None = None) -> None:
        """Wait until no other worker holds this partition's state, then hold it, and write
        who holds it into the lock file.

        With no ``timeout_s`` (the ingest stage) it waits for as long as the holder holds
        on, logging every ``LOCK_NOTE_S`` the lock file and its holder; with one
        (``--reset-partition``) it raises ``TimeoutError`` after that long. Cancelling it
        leaves nothing held.
        """
        self.dedupe_dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "lock"
        handle = open(path, "ab")  # noqa: SIM115 - held until release()
        loop = asyncio.get_running_loop()
        started = noted = loop.time()
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = loop.time()
                    if timeout_s is not None and now - started > timeout_s:
                        raise TimeoutError(
                            f"partition state {self.dir} is still locked by {self.holder()}"
                        ) from None
                    if timeout_s is None and now - noted >= LOCK_NOTE_S:
                        noted = now
                        log.warning(
                            "partition state %s: waiting for its lock %s for %.0fs, held by %s "
                            "(a worker still saving it after a rebalance, or one that hangs: "
                            "stop that process to let it go); its events are not counted "
                            "until then",
                            self.dir,
                            path,
                            now - started,
                            self.holder(),
                        )
                    await asyncio.sleep(0.05)
        except BaseException:
            handle.close()
            raise
        with contextlib.suppress(OSError):  # who holds it is for the log only
            os.ftruncate(handle.fileno(), 0)
            since = format_ts(time.time())
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode())
            handle.flush()
        self._lock = handle

    def holder(self) -> str:
        """Who holds (or last held) the lock, as its holder wrote it."""
        try:
            text = (self.dir / "lock").read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[:200] or "another worker (one that does not say which)"

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def load(self) -> tuple[dict[str, Any], dict[int, list[str]]] | None:
        """The last snapshot and its dedupe buckets, or None for a fresh partition.

        Raises ``StateUnreadable`` for a snapshot that does not parse or a dedupe file
        shorter than the snapshot says: the events it remembered would be counted again.
        """
        with gc_paused():
            return self._load()

    def _load(self) -> tuple[dict[str, Any], dict[int, list[str]]] | None:
        path = self.dir / "snapshot.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            snapshot = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise self.unreadable(path, f"not valid JSON: {exc}") from None
        lengths = snapshot.get("dedupe_lengths", {}) if type(snapshot) is dict else None
        if type(lengths) is not dict or type(snapshot.get("rollups")) is not dict:
            raise self.unreadable(path, "not a partition snapshot")
        buckets: dict[int, list[str]] = {}
        for name, length in lengths.items():
            ids_path = self.dedupe_dir / f"{name}.ids"
            try:
                with open(ids_path, "r+b") as handle:
                    data = handle.read(length)
                    if len(data) < length:
                        raise self.unreadable(
                            ids_path, f"{len(data)} bytes where the snapshot recorded {length}"
                        )
                    handle.truncate(length)
            except FileNotFoundError:
                raise self.unreadable(ids_path, "missing; the snapshot refers to it") from None
            ids: list[str] = []
            try:
                for line in data.splitlines():
                    ids.extend(orjson.loads(line))
                bucket = int(name)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                raise self.unreadable(ids_path, f"not a dedupe id file: {exc}") from None
            buckets[bucket] = ids
        return snapshot, buckets

    def unreadable(self, path: Path, reason: str) -> StateUnreadable:
        partition = self.dir.name.removeprefix("p")
        return StateUnreadable(
            path,
            reason,
            f"restore {self.dir} from a backup, or run one worker with --reset-partition "
            f"{partition} to set it aside and rebuild the partition from the events topic "
            "(exact while the topic still holds all of that partition)",
        )

    def set_aside(self, now: float) -> Path | None:
        """Move this partition's state out of the way (``--reset-partition``); None if none.

        Call with the lock held. Nothing is deleted: the old files stay beside it, for a
        post-mortem or a restore.
        """
        if not (self.dir / "snapshot.json").exists():
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        aside = self.dir.with_name(f"{self.dir.name}.reset-{stamp}")
        aside.mkdir()
        # The lock file stays: it is what other workers wait on.
        for name in ("snapshot.json", "dedupe"):
            if (self.dir / name).exists():
                (self.dir / name).rename(aside / name)
        self.dedupe_dir.mkdir()
        return aside

    def save(
        self, snapshot: dict[str, Any], new_ids: dict[int, list[str]], live_buckets: list[int]
    ) -> None:
        """Append new dedupe ids, then replace the snapshot atomically."""
        lengths: dict[str, int] = {}
        for bucket in live_buckets:
            path = self.dedupe_dir / f"{bucket}.ids"
            ids = new_ids.get(bucket)
            if ids:
                with open(path, "ab") as handle:
                    handle.write(orjson.dumps(ids) + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            lengths[str(bucket)] = path.stat().st_size if path.exists() else 0
        snapshot = {**snapshot, "dedupe_lengths": lengths}
        # msgspec, not orjson: a window total past 2**64 nano-dollars (about $18B) stays an
        # exact int, where orjson refuses to write it and reads it back as a float.
        write_atomic(self.dir / "snapshot.json", msgspec.json.encode(snapshot))
        # Buckets past the horizon are no longer in the snapshot: drop their files.
        keep = {f"{b}.ids" for b in live_buckets}
        for path in self.dedupe_dir.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
