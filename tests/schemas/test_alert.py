"""The alert record: one type the detectors build and the action stage reads. What it writes
is the contract's bytes; what is written (by this release or the one before) reads back as
written; anything else is a ValueError naming the field."""

from __future__ import annotations

import re

import msgspec
import orjson
import pytest

from spendbrake.actions import apply_policies
from spendbrake.schemas import (
    Alert,
    Config,
    KeyInfo,
    KeyRule,
    KeysConfig,
    decode_alert,
    encode_alert,
    format_ts,
)
from spendbrake.streamer._processor import unpriced_model_alert
from tests.actions.test_policy import anomaly

T = 1_791_158_400.0


def alert(**changes: object) -> Alert:
    fields: dict = {
        "kind": "budget",
        "detector": "budget",
        "scope": {"team": "search", "feature": None},
        "window_start": format_ts(T),
        "window_end": format_ts(T + 86400),
        "detected_at": format_ts(T + 3600),
        "observed_usd": 812.25,
        "expected_usd": None,
        "severity": "critical",
        "reason": "search-daily at 120 %",
        "id": "budget/search-daily/2026-10-05",
        "seq": 2,
        "action": "pause",
        "targets": ["sk-batch"],
        "critical_keys": ["sk-prod"],
        "protected_keys": {"sk-prod": "critical"},
        "budget": "search-daily",
        "threshold": 1.2,
        "also": [{"team": "search"}],
    }
    return Alert(**{**fields, **changes})


#: What the release before this one wrote for ``_anomaly()`` after the policy step (its
#: ``Alert`` held epoch seconds and unrounded money, and ``to_wire`` formatted them).
WRITTEN_BEFORE = (
    b'{"kind":"anomaly","detector":"baseline","scope":{"api_key":"sk-batch"},"also":[{"team":'
    b'"search"},{}],"window_start":"1970-01-01T00:00:00.000000Z","window_end":'
    b'"1970-01-01T01:00:00.000000Z","detected_at":"1970-01-01T00:10:00.293500Z","observed_usd":'
    b'11.8,"expected_usd":3.612346,"severity":"critical","action":"pause","targets":["sk-batch"],'
    b'"critical_keys":["sk-prod"],"protected_keys":{"sk-eval":"alert-only","sk-prod":"critical"},'
    b'"budget":null,"threshold":null,"id":"anomaly/team=research/0","seq":0,"score":0.6123,'
    b'"reason":"runaway"}'
)


def as_written_now(before: bytes) -> bytes:
    """A record of before 2026-12-06 as written since: the same, with the fields added
    since (``opened_at``, ``held_keys``; ``more_targets``, ``part`` on 2026-12-07) at their
    defaults, before ``budget``."""
    assert before.count(b'"budget":') == 1
    added = b'"opened_at":"","held_keys":{},"more_targets":0,"part":0,"budget":'
    return before.replace(b'"budget":', added)


def _anomaly() -> tuple[Alert, list[KeyInfo]]:
    raised = anomaly(
        scope={"api_key": "sk-batch"},
        also=[{"team": "search"}, {}],
        detected_at=format_ts(600.2934999),
        observed_usd=11.80000049999,
        expected_usd=3.6123456789,
        score=0.61234999,
    )
    known = [
        KeyInfo("sk-batch", team="search"),
        KeyInfo("sk-prod", team="search"),
        KeyInfo("sk-eval"),
    ]
    return raised, known


def test_a_detector_alert_is_written_as_the_release_before_wrote_it() -> None:
    """Times as ``format_ts`` writes them, money to 6 places, score to 4, the protected keys
    the policy named, in the record's field order; the keys handed beside it are not written."""
    rules = KeysConfig(
        rules=[
            KeyRule(api_key="sk-batch", workload="batch"),
            KeyRule(api_key="sk-prod", workload="critical"),
            KeyRule(api_key="sk-eval", workload="batch", pausable=False),
        ]
    )
    raised, known = _anomaly()
    written = encode_alert(apply_policies(raised, known, Config().policies, rules))
    assert written == as_written_now(WRITTEN_BEFORE)


def test_a_built_alert_holds_what_is_written() -> None:
    """Rounded when built, so the alert in memory equals its copy read back from the topic."""
    raised, _ = _anomaly()
    assert (raised.observed_usd, raised.expected_usd, raised.score) == (11.8, 3.612346, 0.6123)
    assert decode_alert(encode_alert(raised)) == raised


def test_large_money_is_spelled_as_orjson_spells_it() -> None:
    """The contract's bytes are orjson's: msgspec's encoder would write ``1e16``."""
    record = encode_alert(alert(observed_usd=1e16, expected_usd=2.5e-7))
    assert b'"observed_usd":1e+16,"expected_usd":0.0,' in record


def test_the_ingest_stages_unpriced_notice_is_an_alert_of_the_one_shape() -> None:
    """Every record on the alerts topic has the ``Alert``'s fields in its order (until
    2026-12-06 the ingest stage wrote this notice as a dict of its own)."""
    notice = unpriced_model_alert("openai", "gpt-9", int(T), daily=True)
    assert isinstance(notice, Alert)
    written = encode_alert(notice)
    assert list(orjson.loads(written)) == list(Alert.__struct_fields__)
    assert decode_alert(written) == notice


@pytest.mark.parametrize(
    "record",
    [
        encode_alert(alert()),
        encode_alert(
            alert(kind="anomaly", action="alert", targets=[], budget=None, threshold=None)
        ),
        encode_alert(alert(action="resume", severity="info")),
        encode_alert(unpriced_model_alert("openai", "gpt-9", int(T))),
        # As the ingest stage wrote it until 2026-12-06: a dict of its own, with ``message``.
        orjson.dumps(
            {
                "kind": "unpriced_model",
                "detector": "pricing",
                "scope": {"provider": "openai", "model": "gpt-9"},
                "window_start": "2026-10-05T00:00:00Z",
                "window_end": "2026-10-06T00:00:00Z",
                "observed_usd": None,
                "expected_usd": None,
                "severity": "warning",
                "action": "alert",
                "targets": [],
                "budget": None,
                "threshold": None,
                "id": "unpriced:2026-10-05",
                "seq": 0,
                "score": 1.0,
                "also": [],
                "reason": "openai/gpt-9 has no price.",
                "message": "openai/gpt-9 has no price.",
            }
        ),
    ],
    ids=["pause", "anomaly", "resume", "unpriced_model", "unpriced_model_until_2026_12_06"],
)
def test_every_record_we_write_reads_back_as_written(record: bytes) -> None:
    """Typed, with every written field's value; what a record leaves out takes its default
    (the extra ``message`` of an operator alert of before, its reason's text, is not read)."""
    decoded = decode_alert(record)
    assert isinstance(decoded, Alert)
    written = {k: v for k, v in orjson.loads(record).items() if k != "message"}
    assert {k: v for k, v in msgspec.structs.asdict(decoded).items() if k in written} == written


def test_a_record_reads_back_field_for_field_in_wire_order() -> None:
    """Nothing is lost reading one back, and a reader that writes it again (the action
    stage's outbox file) keeps the order."""
    many = {f"sk-{i:03d}": "critical" if i % 3 else "alert-only" for i in range(100)}
    written = alert(protected_keys=many, critical_keys=sorted(many))
    record = encode_alert(written)
    assert decode_alert(record) == written
    assert msgspec.json.encode(decode_alert(record)) == record


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
    assert encode_alert(record) == as_written_now(RELEASED)


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
        ({"protected_keys": ["sk-prod"]}, "$.protected_keys"),
    ],
)
def test_a_field_of_the_wrong_shape_is_named(change: dict, where: str) -> None:
    record = orjson.dumps({**msgspec.to_builtins(alert()), **change})
    with pytest.raises(ValueError, match="not an alert record: .*" + re.escape(where)):
        decode_alert(record)


def test_not_json_and_missing_fields_are_value_errors() -> None:
    for record in (b"not json", b"[]", orjson.dumps({"id": "x", "seq": 0})):
        with pytest.raises(ValueError, match="not an alert record"):
            decode_alert(record)


def hard_stop(keys: int) -> Alert:
    """A budget's hard stop on a team of ``keys`` pausable keys (LiteLLM hashes: 64 hex)."""
    known = [KeyInfo(f"{i:064x}") for i in range(keys)]
    rules = KeysConfig(rules=[KeyRule(api_key="*", workload="batch")])
    stop = alert(action="pause", targets=[], critical_keys=[], protected_keys={}, also=[])
    return apply_policies(stop, known, [], rules)


def test_a_hard_stop_on_16000_keys_goes_out_in_records_under_1_mb_naming_every_key() -> None:
    """One record of 16,000 targets was 1.07 MB, over Kafka's default 1 MB limit: the
    detect stage retried it forever. Its records now name MAX_TARGETS keys each; the first
    says how many follow, and together they name every key, once."""
    from spendbrake.schemas import MAX_TARGETS, alert_records

    stop = hard_stop(16_000)
    assert len(encode_alert(stop)) > 1024 * 1024
    records = alert_records(stop)
    assert len(records) == 16
    assert all(len(encode_alert(r)) < 1024 * 1024 // 2 for r in records)
    assert [r.part for r in records] == list(range(16))
    assert records[0].more_targets == 16_000 - MAX_TARGETS
    assert all(r.more_targets == 0 for r in records[1:])
    assert [t for r in records for t in r.targets] == stop.targets
    assert len({r.record_key() for r in records}) == 16
    assert records[0].record_key() == stop.ref() and {r.ref() for r in records} == {stop.ref()}
    assert all(decode_alert(encode_alert(r)) == r for r in records)
    assert alert_records(hard_stop(MAX_TARGETS)) == [hard_stop(MAX_TARGETS)]
