"""``Deduper``: what it forgets, and when, whatever order the hours came in."""

from __future__ import annotations

import random

from spendbrake.streamer._dedupe import BUCKET_S, Deduper

DAY = 86400


def test_expire_forgets_exactly_the_hours_past_the_horizon() -> None:
    """Hours arrive out of order (late events open older hours after newer ones, and after
    an expiry); every expiry forgets exactly the hours wholly before the horizon."""
    rng = random.Random(7)
    d = Deduper(horizon_s=DAY)
    watermark = 0.0
    for i in range(3000):
        watermark += rng.uniform(0, 120)
        ts = watermark - rng.choice([0, 0, 0, 600, 0.9 * DAY])  # now, late, near the horizon
        d.add(f"e{i}", ts)
        if i % 7 == 0:
            oldest = int((watermark - DAY) // BUCKET_S)
            want = sorted(b for b in d.buckets if b < oldest)
            kept = {b: list(ids) for b, ids in d.buckets.items() if b >= oldest}
            assert sorted(d.expire(watermark)) == want
            assert d.buckets == kept
            assert d.seen == {i for ids in kept.values() for i in ids}


def test_restore_then_expire() -> None:
    d = Deduper(horizon_s=DAY)
    d.restore({"10": ["a"], "40": ["b"]})
    assert d.expire(40 * BUCKET_S + DAY) == [10]
    assert d.seen == {"b"}
