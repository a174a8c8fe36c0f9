"""A run of records decoded at once: the fast path's msgspec half, for a reader of many.

``decode_run`` is ``fast_decode``'s msgspec half over a run: the events before the first
record it would not vouch for. ``RunDecoder`` gives the same events faster where a run repeats
its attribution, as usage does (a few teams, features, keys and models in thousands of
calls): msgspec makes a new string of each field for every event, and a reader that numbers
each event's combination of them (replay's rollup half) then hashes and compares every one
of those strings. ``RunDecoder`` decodes with a subclass of ``UsageEvent`` whose attribution
fields are ``Literal`` of the values it has met: msgspec then hands out the one string it
holds for a value (nothing allocated; hashed once; compared by identity). A value it has not
met fails that decode, and the record is decoded again as a plain ``UsageEvent`` (which
decides), its values learned for the next run. So the events, field by field, are the ones
``decode_run`` gives (``tests/schemas/test_run.py``): the literals only ever hold values a
plain decode accepted, and every other check is msgspec's own on the same fields.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import msgspec

from ._event import MAX_EVENT_BYTES, NOT_BLANK, UsageEvent, _decode, _not_blank, _Text

__all__ = ["RunDecoder", "decode_run"]

#: The attribution fields decoded as literals: those a rollup combination is made of
#: (``workload`` is a ``Literal`` already).
SHARED_FIELDS = ("provider", "model", "team", "feature", "api_key", "customer", "environment")
_REQUIRED = frozenset(("provider", "model", "team"))
#: Values a field's literal holds at most: past it (a flood of customers) the field is decoded
#: as plain text again, and no longer learned, so a run never decodes each record twice.
MAX_SHARED_VALUES = 512

Decode = Callable[[bytes], UsageEvent]


def decode_run(raws: Sequence[bytes | None]) -> list[UsageEvent]:
    """msgspec's half of ``fast_decode`` for a run of records: the events of the records
    before the first it refuses (or one over ``MAX_EVENT_BYTES``, or with no value, or
    with a ``NOT_BLANK`` field that is only whitespace).

    Their ``ts`` is as it came (text or seconds) and the cross-field rules are not yet
    checked: the caller (``PartitionProcessor.process_lines``) does both for the run at
    once, and hands every record it is not sure of to the per-event path.
    """
    raws = _fitting(raws)
    events: list[UsageEvent] = []
    # ``extend`` keeps what it took before the record msgspec refuses: one pass either way.
    with contextlib.suppress(msgspec.MsgspecError, ValueError):  # bad UTF-8: ValueError
        events.extend(map(_decode, raws))
    return _not_blank_prefix(events)


class RunDecoder:
    """``decode_run`` with the attribution strings a run repeats shared (see the module).

    One per reader (a partition processor): what it learns is only ever used to decode
    faster, never to decide.

    >>> d = RunDecoder()
    >>> raw = (b'{"event_id":"e1","ts":1795428000,"provider":"openai","model":"gpt-4o",'
    ...        b'"input_tokens":1,"output_tokens":1,"team":"search"}')
    >>> first, second = d.decode([raw]), d.decode([raw.replace(b"e1", b"e2")])
    >>> first[0].team == second[0].team == "search", first[0].team is second[0].team
    (True, True)
    """

    def __init__(self, max_values: int = MAX_SHARED_VALUES) -> None:
        self.max_values = max_values
        #: Per shared field, the values met (in order), or None once past ``max_values``.
        self.values: dict[str, dict[str, None] | None] = {f: {} for f in SHARED_FIELDS}
        self._decode: Decode = _decode
        self._learned = False
        #: Whether the decoder's ``NOT_BLANK`` fields are all literals: of values learned
        #: from events that passed the check, so no event it decodes can fail it.
        self._never_blank = False

    def decode(self, raws: Sequence[bytes | None]) -> list[UsageEvent]:
        """``decode_run(raws)``: the same events, field by field."""
        raws = _fitting(raws)
        events: list[UsageEvent] = []
        decode = self._decode
        while True:
            with contextlib.suppress(msgspec.MsgspecError, ValueError):  # bad UTF-8: ValueError
                events.extend(map(decode, raws[len(events) :]))
            if len(events) == len(raws):
                break
            # A value not met yet, or a record msgspec refuses: a plain decode decides.
            try:
                event = _decode(raws[len(events)])
            except (msgspec.MsgspecError, ValueError):
                break
            if _blank(event):
                break  # refused (the run ends before it): nothing of it is learned
            events.append(event)
            for name in SHARED_FIELDS:
                self._learn(name, (getattr(event, name),))
        if not self._never_blank:
            events = _not_blank_prefix(events)
        # A field not yet a literal decodes as text and never misses: its values are
        # learned from the run's events.
        for name, known in self.values.items():
            if known is not None and not known:
                self._learn(name, set(map(operator.attrgetter(name), events)))
        if self._learned:
            self._decode, self._learned = self._decoder(), False
            self._never_blank = all(self.values[name] for name in NOT_BLANK)
        return events

    def _learn(self, name: str, values: Iterable[str | None]) -> None:
        """Add a shared field's values; past ``max_values`` the field is text for good."""
        for value in values:
            known = self.values[name]
            if known is None:
                return
            if value is None or value in known:
                continue
            if len(known) < self.max_values:
                known[value] = None
            else:
                self.values[name] = None  # too many to share: plain text from now on
            self._learned = True

    def _decoder(self) -> Decode:
        """A decoder of ``UsageEvent``'s subclass with each shared field a ``Literal`` of the
        values met (plain text when none or too many)."""
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for name in SHARED_FIELDS:
            known = self.values[name]
            kind: Any = Literal[tuple(known)] if known else _Text  # type: ignore[misc]
            if name in _REQUIRED:
                fields.append((name, kind))
            else:
                fields.append((name, kind | None, None))
        shared = msgspec.defstruct(
            "SharedUsageEvent", fields, bases=(UsageEvent,), forbid_unknown_fields=True, gc=False
        )
        return msgspec.json.Decoder(shared).decode  # type: ignore[no-any-return]


def _fitting(raws: Sequence[bytes | None]) -> Sequence[bytes]:
    """The records before the first with no value or over ``MAX_EVENT_BYTES``."""
    try:
        fits = max(map(len, raws), default=0) <= MAX_EVENT_BYTES  # type: ignore[arg-type]
    except TypeError:  # a record with no value
        fits = False
    if not fits:
        end = next(
            (i for i, raw in enumerate(raws) if raw is None or len(raw) > MAX_EVENT_BYTES),
            len(raws),
        )
        raws = raws[:end]
    return raws  # type: ignore[return-value]


def _not_blank_prefix(events: list[UsageEvent]) -> list[UsageEvent]:
    """``events`` up to the first with a ``NOT_BLANK`` field that is only whitespace."""
    # Each field's distinct values in the run are few: a set of them and a check each is
    # cheaper than a check per event.
    if any(text.isspace() for get in _not_blank for text in set(map(get, events))):
        del events[next(i for i, e in enumerate(events) if _blank(e)) :]
    return events


def _blank(event: UsageEvent) -> bool:
    return any(get(event).isspace() for get in _not_blank)
