"""Publish a .jsonl file of usage events: ``spendbrake produce``.

Every line is validated against contract v1 first; a bad line is reported with
its number and reason and skipped, good lines still go out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from spendbrake.schemas import InvalidEvent, UsageEvent, decode_event
from spendbrake.sdk import SpendProducer


@dataclass(slots=True)
class ProduceReport:
    lines: int = 0
    sent: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def read_events(
    lines: Iterable[bytes], on_bad: Callable[[int, InvalidEvent], None]
) -> Iterable[UsageEvent]:
    """Yield valid events; report each bad line (1-based number) and go on.

    Lines are split on ``\\n`` only, so U+2028 inside a JSON string stays put;
    a trailing ``\\r`` (CRLF files) is dropped, blank lines are skipped.
    """
    for number, line in enumerate(lines, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            yield decode_event(line)
        except InvalidEvent as exc:
            on_bad(number, exc)


def produce_lines(
    lines: Iterable[bytes],
    producer: SpendProducer,
    on_bad: Callable[[int, InvalidEvent], None] | None = None,
    on_sent: Callable[[int], None] | None = None,
    flush_timeout_s: float = 60.0,
) -> ProduceReport:
    """Emit the valid events of ``lines`` in order (``publish``); the caller's
    ``producer.close()`` delivers the rest, or, the broker down, leaves it spilled at once
    (a flush here waited out its whole timeout for a broker that was not there)."""
    report = ProduceReport()

    def bad(number: int, exc: InvalidEvent) -> None:
        report.bad.append((number, str(exc)))
        if on_bad is not None:
            on_bad(number, exc)

    def refused(exc: InvalidEvent) -> None:
        bad(report.lines, exc)  # the line just read: events are read one at a time

    events = read_events(_counting(lines, report), bad)
    report.sent = publish(events, producer, on_sent, flush_timeout_s, refused)
    return report


def publish(
    events: Iterable[UsageEvent],
    producer: SpendProducer,
    tick: Callable[[int], None] | None = None,
    timeout_s: float = 60.0,
    refused: Callable[[InvalidEvent], None] | None = None,
) -> int:
    """Emit ``events`` in order, waiting for the broker whenever half the producer's queue
    is taken; return how many were emitted. ``tick(count)`` every 5,000.

    An event ``emit`` refuses (valid as read, over the size limit once its secrets are
    redacted) goes to ``refused`` and the rest go on; without ``refused`` it raises.

    ``emit`` never blocks: past ``max_queue`` it spills, and a spill is sent after the
    queue. Weeks of history generated faster than the broker takes them reached the topic
    up to 33 h out of order, and two thirds of them were counted as late corrections.
    With the broker away (a flush runs out of time), the rest is emitted without waiting
    and spills, as the SDK does for any caller.
    """
    half = max(1, producer.max_queue // 2)
    waiting = True
    count = 0
    for event in events:
        try:
            producer.emit(event)
        except InvalidEvent as exc:
            if refused is None:
                raise
            refused(exc)
            continue
        count += 1
        if waiting and producer.stats.emitted - producer.stats.delivered >= half:
            waiting = producer.flush(timeout_s)
        if tick is not None and count % 5000 == 0:
            tick(count)
    return count


def _counting(lines: Iterable[bytes], report: ProduceReport) -> Iterable[bytes]:
    for line in lines:
        report.lines += 1
        yield line
