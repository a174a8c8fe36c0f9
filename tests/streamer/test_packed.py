"""``PackedColumns``: a block whose numbers are msgpack already reads back as the
``RollupColumns`` of the same numbers, whatever their widths and the block's length."""

from __future__ import annotations

import io
import random

import msgspec
import numpy as np
import pytest

from spendbrake import _replay_split
from spendbrake._replay import ReplayStats, rolled_up
from spendbrake.schemas import RollupColumns
from spendbrake.streamer._packed import IntColumns, PackedColumns
from tests.cli.test_replay_split import CONFIG
from tests.streamer.test_columnar import PLAN, _lines

_read = msgspec.msgpack.Decoder(RollupColumns).decode
_encode = msgspec.msgpack.encode
#: The edges of msgpack's int widths, and int64's.
EDGES = [0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, 32768, -32768, -32769, 65535, 65536,
         2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**63 - 1, -(2**63)]  # fmt: skip


@pytest.mark.parametrize("rows", [1, 15, 16, 300, 65535, 65536])
def test_a_packed_block_reads_as_its_columns(rows: int) -> None:
    rng = random.Random(rows)
    # Per column, values up to one edge (the width is each column's own), one edge each.
    columns = np.array(
        [[rng.randrange(-abs(e), abs(e) + 1) if e else 0 for e in EDGES[:10]] for _ in range(rows)],
        dtype=np.int64,
    )
    columns[rng.randrange(rows)] = EDGES[-10:]
    ints = IntColumns(columns)
    for a, b in [(0, rows), (rows // 3, rows // 3 + 1), (rows // 2, rows)]:
        values = [("v", None)] * (b - a)
        packed = PackedColumns(("x", "y"), 60, 2, values, *ints.block(a, b))
        part = columns[a:b].T.tolist()
        want = RollupColumns(("x", "y"), 60, 2, values, part[0], part[1], part[2:])
        assert _read(_encode(packed)) == want


def test_the_child_sends_the_steps_one_process_reads() -> None:
    """``rolled_up(packed=True)``'s steps, sent and read as the parent does, are the steps of
    ``rolled_up()``."""
    lines = _lines()
    plain = list(rolled_up(lines, CONFIG, 600.0, PLAN, ReplayStats()))
    packed = list(rolled_up(lines, CONFIG, 600.0, PLAN, ReplayStats(), packed=True))
    assert any(isinstance(b, PackedColumns) for blocks, _, _ in packed for b in blocks)
    read = msgspec.msgpack.Decoder(list[tuple[list[RollupColumns], float, int]]).decode
    assert read(_encode(packed)) == plain
    # With the plan's metrics (the watch's): the same blocks, their first two metrics only.
    two = rolled_up(lines, CONFIG, 600.0, PLAN._replace(metrics=2), ReplayStats(), packed=True)
    for got, want in zip(read(_encode(list(two))), plain, strict=True):
        for block in want[0]:
            block.metrics = block.metrics[:2]
        assert got == want


def test_a_message_past_what_msgpack_holds_is_pickled_as_the_watch_reads_it() -> None:
    """A total past 2**64 nano-dollars sends its message pickled: its packed blocks go as
    ``RollupColumns`` too."""
    ints = IntColumns(np.array([[0, 0, 5, 1, 2, 0, 0, 0, 0, 0]], dtype=np.int64))
    packed = PackedColumns(("team",), 3600, 0, [("search",)], *ints.block(0, 1))
    ordinary = RollupColumns(
        ("team",), 3600, 0, [("search",)], [0], [0], [[5], [1], [2], *[[0]] * 5]
    )
    huge = RollupColumns(("team",), 3600, 0, [("search",)], [0], [0], [[2**70], *[[1]] * 7])
    pipe = io.BytesIO()
    _replay_split._send(pipe, [([packed, huge], 1.5, 7)], _replay_split._Numbering())
    pipe.seek(0)
    message = _replay_split._read(pipe)
    assert message is not None and message[:1] == _replay_split._STEPS_PICKLED
    assert _replay_split._Reader().steps(message) == [([ordinary, huge], 1.5, 7)]
