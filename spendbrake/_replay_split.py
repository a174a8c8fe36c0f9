"""Replay on two cores: the rollup half in a child process, the watch in this one.

Replay's two halves each take a few seconds on the 1M-event benchmark (the streamer's
decode, checks and folds about 4 s of CPU, the watch's reading, looks, closes and budgets
about 4.5) and only talk one way, rollup records per early-look step. So the child runs
``rolled_up`` over the lines (a regular file it reads itself; anything else this process
feeds it) and sends each step back; this process runs the watch on them as they come. The
steps are the ones the one-process replay makes, in the same order, so the alerts and stats
are the same (``tests/cli/test_replay_split.py``).

The child is ``python -m spendbrake._replay_split`` with two pipes (not multiprocessing's
spawn, which re-imports the caller's main module: a script without a ``__main__`` guard
would replay twice). Messages are length-prefixed: first the config, then lines as pickled
lists (a thread feeds them, so a full pipe either way never stalls both), and back, steps as
msgpack of their blocks (``RollupColumns``: columns of ints and the series' values; the child
writes the ints from its arrays as msgpack directly, ``PackedColumns``, read here as
``RollupColumns``). A block's set and its series' values go as numbers the child gives each
tuple the first time it sends it (``_Numbering``), the tuple itself in that message only: this
process decoded every record's strings and hashed them afresh, where the 1M-event benchmark
has 72 tuples. The pipe back holds 1 MiB, so the child runs ahead of a busy watch. A total
past what msgpack holds (2**64 nano-dollars) goes pickled instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import itertools
import os
import pickle
import queue
import stat
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Generator, Iterable, Iterator
from typing import IO, Any

import msgspec

from spendbrake.schemas import Config, RollupColumns, gc_paused
from spendbrake.streamer import FIRST_DEAD, PackedColumns

from ._replay import ReplayStats, RollupPlan, Step, rolled_up

__all__ = ["rolled_up_in_child"]

#: Lines per message to the child, and records per message back.
LINES_PER_MESSAGE = 4096
RECORDS_PER_MESSAGE = 1024
#: The pipe the steps come back through (a message of 1,024 records is about 55 KB).
PIPE_BYTES = 2**20

_STEPS, _STEPS_PICKLED, _DONE, _FAILED = b"S", b"P", b"D", b"E"

#: Tuples the child numbers before it starts afresh (a flood's customers would otherwise
#: all stay numbered in both processes).
MAX_NUMBERED = 1 << 16

Values = tuple[str | None, ...]


class _SentBlock(msgspec.Struct, array_like=True, gc=False):
    """A step's block as the child sends it: its set's dimensions and each record's values as
    the numbers of their tuples (``_Numbering``); its ints in msgpack already
    (``PackedColumns``) or lists (``RollupColumns``, a fold's totals past int64)."""

    dims: int
    window_s: int
    partition: int
    values: list[int]
    starts: Any
    epochs: Any
    metrics: Any


class _ReadBlock(msgspec.Struct, array_like=True, gc=False):
    """A ``_SentBlock`` as this process reads it, before its numbers become tuples."""

    dims: int
    window_s: int
    partition: int
    values: list[int]
    starts: list[int]
    epochs: list[int]
    metrics: list[list[int]]


_encode = msgspec.msgpack.Encoder().encode
#: (start afresh?, the tuples numbered since the last message, the steps)
_decode_steps = msgspec.msgpack.Decoder(
    tuple[bool, list[Values], list[tuple[list[_ReadBlock], float, int]]]
).decode
_decode_stats = msgspec.msgpack.Decoder(ReplayStats).decode


def rolled_up_in_child(
    lines: Iterable[bytes],
    config: Config,
    lateness_s: float,
    plan: RollupPlan,
    stats: ReplayStats,
    max_rejected: int = FIRST_DEAD,
) -> Generator[Step, None, None]:
    """``rolled_up``'s steps, computed in a child process while the caller works on the
    ones already sent. Closing the iterator early stops the child."""
    lines_read_fd, lines_write_fd = os.pipe()
    steps_read_fd, steps_write_fd = os.pipe()
    _widen(steps_write_fd)
    # A regular file is read by the child itself, from where this process stands in it:
    # feeding its lines through a pipe took a thread here that waited for the watch's
    # turns at the interpreter, and the child waited for it.
    file = _regular_file(lines)
    if file is not None:
        # A descriptor of its own (the same open file, offset and all): the caller's may be
        # 0, 1 or 2, which the child's standard streams take over.
        file = (os.dup(file[0]), file[1])
    shared = (lines_read_fd, steps_write_fd) + ((file[0],) if file else ())
    # The child imports what this process can: its sys.path, not just the environment's.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, str(lines_read_fd), str(steps_write_fd)],
        pass_fds=shared,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the steps have a pipe of their own
        env=env,
    )
    os.close(lines_read_fd)
    os.close(steps_write_fd)
    if file is not None:
        os.close(file[0])
    steps_in = os.fdopen(steps_read_fd, "rb")
    feeder = _Feeder(
        () if file else lines,
        os.fdopen(lines_write_fd, "wb"),
        (config, lateness_s, plan, file, max_rejected),
    )
    feeder.start()
    drain = _Drain(steps_in)
    drain.start()
    reader = _Reader()
    try:
        while True:
            message = drain.messages.get()
            if message is None:
                feeder.raise_error()
                raise RuntimeError(
                    f"replay's rollup process ended without a result (exit code {child.wait(5)})"
                )
            if message[:1] == _DONE:
                done = _decode_stats(message[1:])
                stats.lines, stats.valid = done.lines, done.valid
                stats.duplicates, stats.late, stats.dead = done.duplicates, done.late, done.dead
                stats.rejected = done.rejected
                stats.unpriced, stats.unpriced_models = done.unpriced, done.unpriced_models
                return
            if message[:1] == _FAILED:
                feeder.raise_error()
            yield from reader.steps(message)
    finally:
        if child.poll() is None and not drain.ended:
            child.kill()  # the caller stopped early: nothing of the child's is wanted
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        drain.join()  # the child's end of the pipe is closed: the drain has its end
        steps_in.close()
        feeder.stop()


class _Reader:
    """The steps in the child's messages (``_send``), the tuples it numbered kept by number;
    a failure's traceback, raised."""

    def __init__(self) -> None:
        #: The child's tuples by number, their strings interned: the watch's series keys and
        #: budget scopes hash and compare them once, not each record's copy.
        self.known: list[Values] = []

    def steps(self, message: bytes) -> list[Step]:
        tag, body = message[:1], message[1:]
        if tag == _STEPS:
            # Thousands of small lists with no cycle among them: the collector, woken by
            # their count, would walk the watch's heap for nothing (0.47 s on 300k events
            # of the replay benchmark, 0.11 with it paused).
            with gc_paused():
                fresh, new, sent = _decode_steps(body)
                self._learn(fresh, new)
                get = self.known.__getitem__
                return [
                    (
                        [
                            RollupColumns(
                                get(b.dims),
                                b.window_s,
                                b.partition,
                                list(map(get, b.values)),
                                b.starts,
                                b.epochs,
                                b.metrics,
                            )
                            for b in blocks
                        ],
                        mark,
                        read,
                    )
                    for blocks, mark, read in sent
                ]
        if tag == _STEPS_PICKLED:
            fresh, new, steps = pickle.loads(body)
            self._learn(fresh, new)
            return steps  # type: ignore[no-any-return]
        raise RuntimeError(f"replay's rollup process failed:\n{body.decode(errors='replace')}")

    def _learn(self, fresh: bool, new: list[Values]) -> None:
        if fresh:
            self.known.clear()
        intern = sys.intern
        self.known.extend(tuple(None if v is None else intern(v) for v in t) for t in new)


class _Numbering:
    """The child's numbers for the tuples it has sent (sets' dimensions, series' values), in
    the order sent; those numbered since the last message go with the next one."""

    def __init__(self, limit: int = MAX_NUMBERED) -> None:
        self.limit = limit
        self.numbers: dict[Values, int] = {}
        self.new: list[Values] = []
        self.fresh = False

    def begin(self) -> None:
        """Before a message: past ``limit`` tuples, start afresh (the reader too)."""
        if len(self.numbers) > self.limit:
            self.numbers.clear()
            self.fresh = True

    def taken(self) -> tuple[bool, list[Values]]:
        """(start afresh?, the tuples new since the last message), for the message."""
        out = (self.fresh, self.new)
        self.fresh, self.new = False, []
        return out

    def block(self, block: RollupColumns | PackedColumns) -> _SentBlock:
        return _SentBlock(
            self._number(tuple(block.dims)),
            block.window_s,
            block.partition,
            self._numbered(block.values),
            block.starts,
            block.epochs,
            block.metrics,
        )

    def _numbered(self, values: list[Values]) -> list[int]:
        numbers = list(map(self.numbers.get, values))
        if None in numbers:
            numbers = [
                self._number(v) if n is None else n for n, v in zip(numbers, values, strict=True)
            ]
        return numbers  # type: ignore[return-value]

    def _number(self, key: Values) -> int:
        number = self.numbers.get(key)
        if number is None:
            number = self.numbers[key] = len(self.numbers)
            self.new.append(key)
        return number


_HEADER = struct.Struct("<Q")


def _write(out: IO[bytes], payload: bytes) -> None:
    out.write(_HEADER.pack(len(payload)))
    out.write(payload)
    out.flush()


def _read(source: IO[bytes]) -> bytes | None:
    """The next message; None at the end of the pipe (a message cut short counts as none)."""
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = source.read(size)
    return payload if len(payload) == size else None


class _Drain(threading.Thread):
    """Reads the child's messages as they come into ``messages`` (None once the pipe has
    ended), so the child never waits on a full pipe while the watch is busy: its steps come
    a fold at a time, and a pipe holds about one fold's."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__(name="spendbrake-replay-drain", daemon=True)
        self.source = source
        self.messages: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.ended = False

    def run(self) -> None:
        try:
            while (message := _read(self.source)) is not None:
                if message[:1] == _DONE:
                    self.ended = True
                self.messages.put(message)
        except (OSError, ValueError):  # the pipe broke: its end says why
            pass
        finally:
            self.messages.put(None)


class _Feeder(threading.Thread):
    """Sends the child its setup, the lines in lists, then None; keeps the error the lines
    raised, for the reader to raise in their place."""

    def __init__(self, lines: Iterable[bytes], out: IO[bytes], setup: Any) -> None:
        super().__init__(name="spendbrake-replay-feeder", daemon=True)
        self.lines = lines
        self.out = out
        self.setup = setup
        self.error: BaseException | None = None
        self.stopping = False

    def run(self) -> None:
        try:
            self._send(self.setup)
            read = iter(self.lines)
            while not self.stopping:
                try:
                    chunk = list(itertools.islice(read, LINES_PER_MESSAGE))
                except BaseException as exc:  # the lines' own (a file that cannot be read)
                    self.error = exc
                    return  # closing the pipe without the end: the child stops
                if not chunk:
                    self._send(None)
                    return
                self._send(chunk)
        except OSError:  # the child is gone (a broken pipe): its end says why
            pass
        finally:
            with contextlib.suppress(OSError):
                self.out.close()  # the child sees the end of its input

    def _send(self, value: Any) -> None:
        _write(self.out, pickle.dumps(value, pickle.HIGHEST_PROTOCOL))

    def stop(self) -> None:
        self.stopping = True
        self.join(5)

    def raise_error(self) -> None:
        self.join(5)
        if self.error is not None:
            raise self.error


def _child(lines_in: IO[bytes], steps_out: IO[bytes]) -> int:
    """The child's whole life: setup and lines in, steps out, then its counts (or its
    traceback). Exit code 0 unless the parent stopped reading or feeding early."""
    try:
        setup = _read(lines_in)
        if setup is None:
            return 1
        config, lateness_s, plan, file, max_rejected = pickle.loads(setup)
        lines: Iterable[bytes] = _received(lines_in)
        if file is not None:
            # A 1 MiB buffer: a read per 3,000 lines, not per 27 (a third of reading's time).
            source = os.fdopen(file[0], "rb", buffering=1 << 20)
            source.seek(file[1])
            lines = source
        stats = ReplayStats()
        numbering = _Numbering()
        pending: list[Step] = []
        held = 0
        # Blocks in msgpack already: the numbers never become int objects here.
        steps = rolled_up(lines, config, lateness_s, plan, stats, True, max_rejected)
        for step in steps:
            pending.append(step)
            held += sum(len(block.values) for block in step[0]) + 1
            if held >= RECORDS_PER_MESSAGE:
                _send(steps_out, pending, numbering)
                pending, held = [], 0
        if pending:
            _send(steps_out, pending, numbering)
        _write(steps_out, _DONE + _encode(stats))
        return 0
    except (_InputEnded, BrokenPipeError):
        return 1  # the parent stopped feeding or reading: it knows why
    except BaseException:
        with contextlib.suppress(OSError):
            _write(steps_out, _FAILED + traceback.format_exc().encode())
        return 1


def _widen(fd: int) -> None:
    """Let the child run ahead by as many steps as a pipe can hold (Linux: 1 MiB by default,
    64 KiB unless asked, which kept it waiting whenever this process was busy)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or the limit is lower
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _regular_file(lines: Iterable[bytes]) -> tuple[int, int] | None:
    """(descriptor, position) of a binary file object on a regular file; None for anything
    else (a pipe, stdin from a terminal, a list of lines)."""
    if not isinstance(lines, io.BufferedReader):
        return None
    try:
        fd = lines.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not lines.seekable():
            return None
        return fd, lines.tell()
    except (OSError, ValueError):
        return None


class _InputEnded(Exception):
    """The parent closed the lines' pipe before their end."""


def _received(lines_in: IO[bytes]) -> Iterator[bytes]:
    loads = pickle.loads
    while True:
        message = _read(lines_in)
        if message is None:
            raise _InputEnded
        chunk = loads(message)
        if chunk is None:
            return
        yield from chunk


def _send(out: IO[bytes], steps: list[Step], numbering: _Numbering) -> None:
    numbering.begin()
    sent = [([numbering.block(b) for b in blocks], mark, read) for blocks, mark, read in steps]
    fresh, new = numbering.taken()
    try:
        message = _STEPS + _encode((fresh, new, sent))
    except OverflowError:  # a total past 2**64: exact in a pickle, of blocks as the watch reads
        steps = [([_unpacked(b) for b in blocks], mark, read) for blocks, mark, read in steps]
        message = _STEPS_PICKLED + pickle.dumps((fresh, new, steps), pickle.HIGHEST_PROTOCOL)
    _write(out, message)


def _unpacked(block: RollupColumns | PackedColumns) -> RollupColumns:
    """The block as a ``RollupColumns`` (a ``PackedColumns`` holds msgpack, not lists)."""
    if isinstance(block, PackedColumns):
        return _read_block(_encode(block))
    return block


_read_block = msgspec.msgpack.Decoder(RollupColumns).decode


if __name__ == "__main__":
    steps = os.fdopen(int(sys.argv[2]), "wb")
    code = _child(os.fdopen(int(sys.argv[1]), "rb"), steps)
    try:
        steps.close()
    except OSError:  # the parent stopped reading: nothing left to tell it
        code = 1
    sys.exit(code)
