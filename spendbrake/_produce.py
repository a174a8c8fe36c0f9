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
    delivered: bool = True


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
    report = ProduceReport()

    def bad(number: int, exc: InvalidEvent) -> None:
        report.bad.append((number, str(exc)))
        if on_bad is not None:
            on_bad(number, exc)

    wait = True
    for event in read_events(_counting(lines, report), bad):
        if wait and producer.queued >= producer.max_queue // 2:
            # A file outruns the broker: wait for the queue to drain rather than spill (a
            # spilled event goes out after the rest, days out of order for a backlog). A
            # broker that takes none within the timeout is an outage: spill, as the SDK does.
            wait = producer.flush(flush_timeout_s)
        producer.emit(event)
        report.sent += 1
        if on_sent is not None and report.sent % 1000 == 0:
            on_sent(report.sent)
    report.delivered = producer.flush(flush_timeout_s)
    return report


def _counting(lines: Iterable[bytes], report: ProduceReport) -> Iterable[bytes]:
    for line in lines:
        report.lines += 1
        yield line
