"""The rollups topic's records: today's bytes kept, and a bad record refused naming its field."""

from __future__ import annotations

import orjson
import pytest

from spendbrake.schemas import (
    RollupRecord,
    WatermarkMark,
    decode_rollup,
    encode_mark,
    encode_rollup,
)

#: Records and the bytes the release before the move to ``schemas`` wrote for them: the
#: store stage, the detect stage and outside readers read these bytes.
RELEASED = [
    (
        RollupRecord(
            ("team", "model"),
            ("search", "gpt-4o"),
            3600,
            1789999200,
            2,
            1,
            (12_345_678_901, 7, 1000, 20, 3, 500, 0, 1),
            {"ok": 6, "error": 1},
            True,
        ),
        b'{"series":{"team":"search","model":"gpt-4o"},"dims":["team","model"],"window_s":3600,'
        b'"window_start":"2026-09-21T14:00:00.000000Z","window_end":"2026-09-21T15:00:00.000000Z",'
        b'"window_start_ts":1789999200,"partition":2,"epoch":1,"cost_usd":12.345678901,'
        b'"cost_nusd":12345678901,"calls":7,"input_tokens":1000,"cache_read_tokens":20,'
        b'"cache_write_tokens":3,"output_tokens":500,"reasoning_tokens":0,"unpriced_calls":1,'
        b'"outcomes":{"ok":6,"error":1},"final":true}',
    ),
    (
        RollupRecord((), (), 60, 1790000040, 0, 0, (0, 0, 0, 0, 0, 0, 0, 0), {}, False),
        b'{"series":{},"dims":[],"window_s":60,"window_start":"2026-09-21T14:14:00.000000Z",'
        b'"window_end":"2026-09-21T14:15:00.000000Z","window_start_ts":1790000040,"partition":0,'
        b'"epoch":0,"cost_usd":0.0,"cost_nusd":0,"calls":0,"input_tokens":0,"cache_read_tokens":0,'
        b'"cache_write_tokens":0,"output_tokens":0,"reasoning_tokens":0,"unpriced_calls":0,'
        b'"outcomes":{},"final":false}',
    ),
    (
        RollupRecord(
            ("api_key", "feature"),
            ('sk-\u00e9"x', None),
            86400,
            1789948800,
            5,
            3,
            (1, 1, 2, 3, 4, 5, 6, 0),
            {},
            False,
        ),
        b'{"series":{"api_key":"sk-\xc3\xa9\\"x","feature":null},"dims":["api_key","feature"],'
        b'"window_s":86400,"window_start":"2026-09-21T00:00:00.000000Z",'
        b'"window_end":"2026-09-22T00:00:00.000000Z","window_start_ts":1789948800,"partition":5,'
        b'"epoch":3,"cost_usd":1e-9,"cost_nusd":1,"calls":1,"input_tokens":2,"cache_read_tokens":3,'
        b'"cache_write_tokens":4,"output_tokens":5,"reasoning_tokens":6,"unpriced_calls":0,'
        b'"outcomes":{},"final":false}',
    ),
]


@pytest.mark.parametrize(("record", "released"), RELEASED)
def test_a_window_is_written_in_the_released_bytes_and_reads_back(
    record: RollupRecord, released: bytes
) -> None:
    assert encode_rollup(record) == released
    assert orjson.dumps(record.to_wire()) == released
    assert decode_rollup(released) == record


def test_a_mark_is_written_in_the_released_bytes_and_reads_back() -> None:
    released = b'{"mark":3,"watermark":1790000123.5}'
    assert encode_mark(WatermarkMark(3, 1790000123.5)) == released
    assert decode_rollup(released) == WatermarkMark(3, 1790000123.5)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (RELEASED[0][1].replace(b'"calls":7', b'"calls":"7"'), "$.calls"),
        (RELEASED[0][1].replace(b'"partition":2,', b""), "`partition`"),
        (b'{"mark":"3","watermark":1790000123.5}', "$.mark"),
        (b'{"mark":3}', "`watermark`"),
    ],
)
def test_a_bad_record_is_refused_naming_its_field(value: bytes, field: str) -> None:
    with pytest.raises(ValueError, match="not a rollup record") as exc:
        decode_rollup(value)
    assert field in str(exc.value)
