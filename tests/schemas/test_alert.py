"""Reading alert records back: what the detector stage and the worker write is accepted,
anything else is a ValueError naming the field."""

from __future__ import annotations

import re

import orjson
import pytest
from spendbrake.schemas import Alert, KeyInfo, decode_alert
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
    assert decode_alert(record) == orjson.loads(record)


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
