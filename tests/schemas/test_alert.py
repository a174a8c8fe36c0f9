"""Reading alert records back: what the detector stage and the worker write is accepted,
anything else is a ValueError naming the field."""

from __future__ import annotations

import re

import msgspec
import orjson
import pytest

from spendbrake.schemas import Alert, AlertRecord, KeyInfo, decode_alert
from spendbrake.streamer._processor import unpriced_model_alert

T = 1_791_158_400.0


def alert(**changes: object) -> Alert:
    fields: dict = {
        "kind": "budget",
        "detector": "budget",
        "scope": {"team": "search", "feature": None},
        "window_start": T,
        "window_end": T + 86400,
        "detected_at": T + 3600,
        "observed_usd": 812.25,
        "expected_usd": None,
        "severity": "critical",
        "reason": "search-daily at 120 %",
        "id": "budget/search-daily/2026-10-05",
        "seq": 2,
        "action": "pause",
        "targets": ["sk-batch"],
        "budget": "search-daily",
        "threshold": 1.2,
        "also": [{"team": "search"}],
        "keys": [KeyInfo("sk-prod", team="search", workload="critical")],
    }
    return Alert(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record",
    [
        alert().to_json(),
        alert(kind="anomaly", action="alert", targets=[], budget=None, threshold=None).to_json(),
        alert(action="resume", severity="info").to_json(),
        orjson.dumps(unpriced_model_alert("openai", "gpt-9", int(T))),
    ],
    ids=["pause", "anomaly", "resume", "unpriced_model"],
)
def test_every_record_we_write_reads_back_as_written(record: bytes) -> None:
    """Typed, with every written field's value; what a record leaves out takes its default
    (an operator alert's extra ``message``, the same text as its reason, is not read)."""
    decoded = decode_alert(record)
    assert isinstance(decoded, AlertRecord)
    written = {k: v for k, v in orjson.loads(record).items() if k != "message"}
    assert {k: v for k, v in msgspec.structs.asdict(decoded).items() if k in written} == written


@pytest.mark.parametrize(
    "alert_",
    [alert(), alert(protected={f"sk-{i}": "critical" if i % 3 else "pinned" for i in range(150)})],
    ids=["pause", "protected"],
)
def test_a_detector_alert_reads_back_field_for_field_in_wire_order(alert_: Alert) -> None:
    """The record type has the wire's fields in ``to_wire``'s order: nothing is lost reading
    one back, and a reader that dumps it (the action stage's outbox file) keeps the order."""
    record = alert_.to_json()
    assert orjson.dumps(msgspec.structs.asdict(decode_alert(record))) == record


#: A pause as the 2026-12-05 release wrote it on spend.alerts (``spendbrake replay``).
RELEASED = (
    b'{"kind":"burn_rate","detector":"budget","scope":{"team":"research","workload":"batch"},'
    b'"also":[],"window_start":"2026-10-01T01:06:00.000000Z","window_end":'
    b'"2026-10-01T02:06:00.000000Z","detected_at":"2026-10-01T02:06:00.000000Z",'
    b'"observed_usd":2.196814,"expected_usd":0.119167,"severity":"critical","action":"pause",'
    b'"targets":["research-nightly-summarizer"],"critical_keys":[],"protected_keys":{},'
    b'"budget":"research-batch-daily","threshold":14.4,"id":'
    b'"budget/research-batch-daily/1790812800","seq":2,"score":1.0,"reason":'
    b'"research-batch-daily is burning its daily budget at 18.4x the even pace"}'
)


def test_a_record_the_released_version_wrote_still_decodes() -> None:
    record = decode_alert(RELEASED)
    assert (record.ref(), record.action, record.targets) == (
        "budget/research-batch-daily/1790812800#2",
        "pause",
        ["research-nightly-summarizer"],
    )
    assert orjson.dumps(msgspec.structs.asdict(record)) == RELEASED


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"targets": "sk-batch"}, "$.targets"),  # once three targets: "s", "k", "-"...
        ({"targets": ["sk-batch", 7]}, "$.targets[1]"),
        ({"seq": -1}, "$.seq"),
        ({"id": ""}, "$.id"),
        ({"severity": "sev1"}, "$.severity"),
        ({"action": "delete"}, "$.action"),
        ({"window_start": None}, "$.window_start"),
        ({"observed_usd": "812"}, "$.observed_usd"),
        ({"scope": ["team"]}, "$.scope"),
        ({"reason": None}, "$.reason"),
    ],
)
def test_a_field_of_the_wrong_shape_is_named(change: dict, where: str) -> None:
    record = orjson.dumps({**alert().to_wire(), **change})
    with pytest.raises(ValueError, match="not an alert record: .*" + re.escape(where)):
        decode_alert(record)


def test_not_json_and_missing_fields_are_value_errors() -> None:
    for record in (b"not json", b"[]", orjson.dumps({"id": "x", "seq": 0})):
        with pytest.raises(ValueError, match="not an alert record"):
            decode_alert(record)
