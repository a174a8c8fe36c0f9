"""Caller-supplied text made safe to show: in Slack mrkdwn, on a terminal, in a CSV cell.

Team, feature, customer, api key and model names come from whoever sends usage events.
Shown raw they can steer what a reader sees: ``<!channel>`` pages a whole Slack channel,
``<http://x|click>`` is a link whose target is hidden, an RLO character (U+202E) reverses
the text after it, an ``ESC [`` sequence repaints a terminal, a cell starting with ``=``
is a spreadsheet formula. Each function here renders such text literally instead; none
changes ordinary text (letters, digits, spaces, ``-_./:@``).

>>> visible("team\\u202eevil\\x1b[2J")
'team\\\\u202eevil\\\\x1b[2J'
>>> mrkdwn("<!channel> & <http://x|click>")
'&lt;!channel&gt; &amp; &lt;http://x|click&gt;'
>>> csv_text("=HYPERLINK(\\"http://x\\")")
'\\'=HYPERLINK("http://x")'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["csv_text", "did_you_mean", "mrkdwn", "mrkdwn_code", "mrkdwn_text", "visible"]

# Unicode categories Cc (controls: C0, DEL, C1), Cf (format: bidi overrides and isolates,
# zero-width characters, the BOM, tag characters), Zl, Zp (line and paragraph separators)
# and Cs (lone surrogates, which no encoder can write). tests/schemas/test_text.py checks
# this class against unicodedata for every code point.
_HIDDEN = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f\xad"
    "\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    "]"
)
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# A backtick would close the code span the text sits in; U+02CB looks the same.
_CODE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "\u02cb"})
# Cells a spreadsheet reads as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _code_point(match: re.Match[str]) -> str:
    point = ord(match.group())
    if point <= 0xFF:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


def visible(text: object) -> str:
    """``text`` with every control, format (bidi, zero-width) and separator character
    written as its escape code (``\\x1b``, ``\\u202e``), so it shows instead of acting."""
    text = str(text)
    return _HIDDEN.sub(_code_point, text) if _HIDDEN.search(text) else text


def mrkdwn(text: object) -> str:
    """``text`` for Slack mrkdwn: shown literally, never a mention, link or broadcast.

    Slack reads ``<...>`` as a link, a user or channel mention or ``<!here>``; escaping
    ``&``, ``<`` and ``>`` (the three Slack's docs name) leaves only literal text.
    """
    return visible(text).translate(_MRKDWN)


def mrkdwn_text(text: str, limit: int = 3000) -> dict[str, object]:
    """A Slack mrkdwn text object (at most ``limit`` characters, Slack's 3,000 for a
    section) taken verbatim: Slack otherwise links bare URLs and channel names and parses
    "certain mentions" in it, where caller text sits beside our own ``<url|links>``."""
    return {"type": "mrkdwn", "text": text[:limit], "verbatim": True}


def mrkdwn_code(text: object) -> str:
    """``text`` inside a Slack code span (between backticks): as :func:`mrkdwn`, and a
    backtick in it cannot end the span."""
    return visible(text).translate(_CODE)


def csv_text(text: object) -> str:
    """``text`` for a CSV cell a spreadsheet will open: never a formula.

    A cell starting with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'`` (the OWASP
    advice), and control characters are shown as codes.
    """
    shown = visible(text)
    return "'" + shown if str(text).startswith(_FORMULA_START) else shown


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a typo of one of ``choices`` (among twenty names the list
    alone hides the one meant), else nothing.

    >>> did_you_mean("dtect", ["ingest", "detect"])
    " (did you mean 'detect'?)"
    """
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
