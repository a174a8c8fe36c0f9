"""The crash benchmark runs end to end on a small stream, and its comparison has teeth."""

from __future__ import annotations

import orjson
import pytest

from bench.bench_crash import differences, main


def test_bench_crash_is_exact_after_kills(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--events", "5000", "--kills", "1", "--max-delay", "1", "--json"])
    out = orjson.loads(capsys.readouterr().out)
    assert out["exact"] and out["cells_different"] == 0, out
    assert out["kills"] == 1 and out["duplicates_sent"] > 0 and out["cells_compared"] > 0


def test_a_doubled_event_or_a_lost_cent_is_a_difference() -> None:
    want = {(("team",), 86400): {(("search",), 0): (5_000, 2), (("growth",), 0): (7, 1)}}
    doubled = {(("team",), 86400): {(("search",), 0): (7_500, 3), (("growth",), 0): (7, 1)}}
    lost = {(("team",), 86400): {(("search",), 0): (5_000, 2)}}
    assert differences(want, want) == []
    assert differences(want, doubled) == [
        "(('team',), 86400) (('search',), 0): got (7500, 3) want (5000, 2)"
    ]
    assert differences(want, lost) == ["(('team',), 86400) (('growth',), 0): got None want (7, 1)"]
