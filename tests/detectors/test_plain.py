"""Detector state as plain data: exact through JSON, infinities and NaN included."""

from __future__ import annotations

import math
import sys
from array import array

import msgspec
import pytest

from spendbrake.detectors import make_detector
from spendbrake.detectors._plain import from_plain, to_plain
from tests.detectors.synth import run, spend


def _through_json(value: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(to_plain(value)))


def test_numbers_round_trip_exactly_with_the_values_json_lacks() -> None:
    values = [0.1, -0.0, 1e-320, 2**80 + 1, math.inf, -math.inf, None, True]
    back = from_plain([], _through_json(values))
    assert back[:4] == values[:4] and back[4:] == values[4:] and math.copysign(1, back[1]) < 0
    assert math.isnan(from_plain(0.0, _through_json(math.nan)))


def test_arrays_come_back_exact_in_the_template_type() -> None:
    profile = array("h", [-32768, 0, 32767] * 61)
    back = from_plain(array("h"), _through_json(profile))
    assert back == profile and back.typecode == "h"
    assert sys.getsizeof(back) == sys.getsizeof(profile[:])  # not over-allocated
    recent = array("d", [math.inf, -1.5, math.nan])
    again = from_plain(array("d"), _through_json(recent))
    assert again.tobytes() == recent.tobytes()
    assert from_plain(bytearray(2), _through_json(bytearray(b"\x01\xf0"))) == bytearray(b"\x01\xf0")


@pytest.mark.parametrize(
    ("template", "value", "message"),
    [
        (array("h"), "not base64!", "not base64: 'not base64!'"),
        (array("h"), "AQ==", "multiple of item size"),
        (0.0, "infinity", "not a number: 'infinity'"),
        (0.0, {"a": 1}, "not a number: a dict"),
    ],
)
def test_values_that_do_not_fit_raise(template: object, value: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        from_plain(template, value)


def test_a_detector_holding_an_infinity_restores_it() -> None:
    d = make_detector("baseline")
    run(d, spend(2, seed=1))
    d._level = math.inf  # not something update lets in; the snapshot must not choke on it
    twin = make_detector("baseline", **d.params)
    twin.load_state(msgspec.json.decode(msgspec.json.encode(d.dump_state())))
    assert twin._level == math.inf and twin.dump_state() == d.dump_state()
