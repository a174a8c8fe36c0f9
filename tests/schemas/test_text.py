"""Caller text shown literally: Slack mrkdwn, terminals, CSV cells."""

from __future__ import annotations

import unicodedata

from spendbrake.schemas import csv_text, mrkdwn, mrkdwn_code, visible

#: Format characters of Unicode 15 that this Python's older unicodedata lists as unassigned.
NEWER_FORMAT = set(range(0x13439, 0x13440))


def test_every_control_format_and_separator_character_is_shown_as_a_code() -> None:
    hidden = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    for point in range(0x110000):
        char = chr(point)
        shown = visible(char)
        if unicodedata.category(char) in hidden or point in NEWER_FORMAT:
            assert shown != char and shown.startswith("\\") and shown.isascii(), hex(point)
        else:
            assert shown == char, hex(point)


def test_ordinary_names_are_unchanged() -> None:
    for name in ("search-agent-prod", "team_a/feature.b:1@eu", "Équipe données", "🚀 launch"):
        assert visible(name) == mrkdwn(name) == mrkdwn_code(name) == csv_text(name) == name


def test_mrkdwn_leaves_no_slack_control_sequence() -> None:
    for text in ("<!channel>", "<!here|here>", "<@U123>", "<#C42>", "<http://x|click>"):
        shown = mrkdwn(text)
        assert "<" not in shown and ">" not in shown
    assert mrkdwn("a & b") == "a &amp; b"
    assert mrkdwn("\u202egnp.exe") == "\\u202egnp.exe"
    assert mrkdwn_code("a`b") == "a\u02cbb"


def test_csv_cells_never_start_a_formula() -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_text(cell).startswith("'"), cell
    assert csv_text("a\x1b[31mb") == "a\\x1b[31mb"
