"""Action records on spend.actions: the typed record writes the bytes the dict did, and
reads back what the act stage and ``spendbrake resume`` write."""

from __future__ import annotations

import re

import orjson
import pytest

from spendbrake.schemas import ActionRecord, decode_action

#: A ``spendbrake resume`` audit as the 2026-12-05 release wrote it (dict + audit_wire).
RELEASED = (
    b'{"id":"resume/manual/key/sk-batch@1790812800.250","action":"unblock","lane":"gateway",'
    b'"alert":"manual#0","incident":"manual","kind":"manual","scope":{"key":"sk-batch"},'
    b'"target":"sk-batch","reason":"false alarm","source":"cli:ops","result":"ok",'
    b'"detail":"unblocked","attempts":1,"requested_at":"2026-10-01T00:00:00.250000Z",'
    b'"at":"2026-10-01T00:00:01.500000Z"}'
)


def test_a_record_the_released_version_wrote_reads_back_and_writes_the_same_bytes() -> None:
    record = decode_action(RELEASED)
    assert (record.action, record.target, record.source) == ("unblock", "sk-batch", "cli:ops")
    assert (record.requested_at, record.at) == (1790812800.25, 1790812801.5)
    assert record.to_json() == RELEASED


def test_a_record_never_attempted_has_no_request_time() -> None:
    record = ActionRecord(
        id="x/post", action="post", result="skipped", detail="scope snoozed", at=1790812801.5
    )
    wire = orjson.loads(record.to_json())
    assert wire["requested_at"] is None and wire["at"] == "2026-10-01T00:00:01.500000Z"
    assert decode_action(record.to_json()) == record


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"attempts": "1"}, "$.attempts"),
        ({"scope": ["key"]}, "$.scope"),
        ({"result": None}, "$.result"),
        ({"at": "yesterday"}, "at:"),
        ({"at": None}, "$.at"),
    ],
)
def test_a_field_of_the_wrong_shape_is_named(change: dict, where: str) -> None:
    record = orjson.dumps({**orjson.loads(RELEASED), **change})
    with pytest.raises(ValueError, match="not an action record: .*" + re.escape(where)):
        decode_action(record)


def test_not_json_and_not_an_object_are_value_errors() -> None:
    for record in (b"not json", b"[]", b'{"id": "x"}'):
        with pytest.raises(ValueError, match="not an action record"):
            decode_action(record)
