"""Prometheus metrics of the worker's stages, each stage in a registry of its own.

A process serves the registries of the stages it runs on one port (``serve``), so
``--stages act`` alone still says whether Slack and the gateway are being reached.
Ingest counters are fed from the processors' own counts at each flush (a delta per
flush), so the per-event hot path never touches prometheus_client; gauges of the
detect and act stages are read from their state when scraped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from spendbrake.schemas import OTHER
from spendbrake.streamer import ProcessorStats

from .offsets import OffsetGap


def serve(registries: Iterable[CollectorRegistry], port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` of every registry on ``port`` (0: any free port) from a thread;
    returns the server (``shutdown()`` stops it)."""
    merged = CollectorRegistry()
    for registry in registries:
        merged.register(registry)  # a registry is a collector of its own metrics
    server, _ = start_http_server(port, addr=host, registry=merged)
    return server


#: Distinct values a label may take before the rest are counted under ``OTHER``: model
#: names and DLQ fields come from event data, and every value is a time series to store.
MAX_LABEL_VALUES = 100


class BoundedLabel:
    """Label values as they come, until ``limit`` distinct ones; then ``OTHER`` for new ones.

    >>> field = BoundedLabel(limit=2)
    >>> [field("input_tokens"), field("tags.a"), field("ts"), field("input_tokens")]
    ['input_tokens', 'tags.a', '(other)', 'input_tokens']
    """

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(value)
        return value


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("spendbrake_records", "Input records read", registry=r)
        self.valid = Counter("spendbrake_events_valid", "Unique valid events counted", registry=r)
        self.dead = Counter(
            "spendbrake_dlq_records", "Records sent to the DLQ, by field", ["field"], registry=r
        )
        self.duplicates = Counter(
            "spendbrake_duplicates", "Events dropped as duplicates by event_id", registry=r
        )
        self.late = Counter(
            "spendbrake_late_events", "Events counted as late corrections", registry=r
        )
        self.unpriced = Counter(
            "spendbrake_unpriced_events", "Events of unknown models, counted unpriced", registry=r
        )
        self.unpriced_by_model = Counter(
            "spendbrake_unpriced_events_by_model",
            "Events of unknown models, counted unpriced, by model",
            ["model"],
            registry=r,
        )
        # Deprecated (2026-12-07), removed in a later release: a gauge that only rises, the
        # counter above under another name. ``spendbrake_unpriced_model_events_total``
        # cannot be that counter while the gauge is served: prometheus_client refuses a
        # counter and a gauge of one base name in a registry, and in OpenMetrics (what
        # Prometheus asks for) the counter's family is named without ``_total``.
        self.unpriced_models = Gauge(
            "spendbrake_unpriced_model_events",
            "Deprecated: use spendbrake_unpriced_events_by_model_total. Unpriced events per "
            "model since start",
            ["model"],
            registry=r,
        )
        self.rollups_out = Counter(
            "spendbrake_rollups_out", "Rollup window updates written", registry=r
        )
        self.lag = Gauge(
            "spendbrake_consumer_lag",
            "Records behind the end of each partition",
            ["partition"],
            registry=r,
        )
        self.latency = Histogram(
            "spendbrake_processing_latency_seconds",
            "From a batch of events being received to its rollups being acknowledged",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self._seen: dict[int, ProcessorStats] = {}
        self._field = BoundedLabel()
        self._model = BoundedLabel()
        self._model_totals: dict[str, int] = {}

    def absorb(self, partition: int, stats: ProcessorStats) -> None:
        """Add what a partition counted since the last call."""
        before = self._seen.get(partition) or ProcessorStats()
        self.records.inc(stats.records - before.records)
        self.valid.inc(stats.valid - before.valid)
        self.duplicates.inc(stats.duplicates - before.duplicates)
        self.late.inc(stats.late - before.late)
        self.unpriced.inc(stats.unpriced - before.unpriced)
        for field, count in stats.dead.items():
            # A tag's key is the caller's: ``tags.<anything>`` is one label, ``tags``.
            label = "tags" if field.startswith("tags.") else field
            self.dead.labels(self._field(label)).inc(count - before.dead.get(field, 0))
        totals = self._model_totals
        for model, count in stats.unpriced_models.items():
            label = self._model(model)
            added = count - before.unpriced_models.get(model, 0)
            self.unpriced_by_model.labels(label).inc(added)
            totals[label] = totals.get(label, 0) + added
            self.unpriced_models.labels(label).set(totals[label])
        self.start_from(partition, stats)

    def start_from(self, partition: int, stats: ProcessorStats) -> None:
        """Count a partition's work from ``stats`` on: its snapshot's, when it is adopted.

        A partition's stats are saved with its state and restored with it (counts since the
        partition began), while these counters are the process' own, as Prometheus expects.
        Taken whole, a restart showed a partition's lifetime counts as new (``increase()`` of
        the DLQ counter, every bad record ever, right after each restart), and a partition
        adopted again after a rebalance was counted twice.
        """
        self._seen[partition] = ProcessorStats(
            records=stats.records,
            valid=stats.valid,
            duplicates=stats.duplicates,
            late=stats.late,
            unpriced=stats.unpriced,
            dead=dict(stats.dead),
            unpriced_models=dict(stats.unpriced_models),
        )

    def forget(self, partition: int) -> None:
        """A partition revoked: its lag is another worker's to report (a gauge left at its
        last value showed lag nobody here would ever work off, and summed twice)."""
        self._seen.pop(partition, None)
        with contextlib.suppress(KeyError):
            self.lag.remove(str(partition))


class OffsetMetrics:
    """Saved input offsets a stage found outside their partition when it took it
    (``offsets.offset_gap``): alert on any increase; the warning in the log says what
    happened. One per process, shared by its stages (``Worker``): the stages' registries
    are served together, where a metric may be named once."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.out_of_range = Counter(
            "spendbrake_saved_offsets_out_of_range",
            "Saved input offsets outside their partition when a stage took it, by reason: "
            "below_log_start (retention deleted records the stage never read) or "
            "beyond_log_end (the topic was re-created, or lost records); the stage resumed "
            "at the log start",
            ["stage", "topic", "partition", "reason"],
            registry=r,
        )
        self.deleted_unread = Counter(
            "spendbrake_records_deleted_unread",
            "Input records deleted (retention) before the stage read them: never counted",
            ["stage", "topic", "partition"],
            registry=r,
        )

    def count(self, stage: str, topic: str, partition: int, gap: OffsetGap) -> None:
        self.out_of_range.labels(stage, topic, str(partition), gap.reason).inc()
        if gap.lost:
            self.deleted_unread.labels(stage, topic, str(partition)).inc(gap.lost)


class DetectMetrics:
    """What the detect stage produced and how far it has got in event time."""

    def __init__(
        self,
        series: Callable[[], int],
        event_time: Callable[[], float],
        folded: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts = Counter(
            "spendbrake_alerts",
            "Alert records written to the alerts topic, by kind, severity and action",
            ["kind", "severity", "action"],
            registry=r,
        )
        self.skipped = Counter(
            "spendbrake_rollups_skipped",
            "Records on the rollups topic that were neither a window nor a mark",
            registry=r,
        )
        Gauge(
            "spendbrake_series_watched", "Series with detectors in memory", registry=r
        ).set_function(series)
        Gauge(
            "spendbrake_series_folded",
            "Series past limits.series_per_set, counted in their set's (other) series (open hours)",
            registry=r,
        ).set_function(folded)
        self.lag = Gauge(
            "spendbrake_detect_lag",
            "Records of each rollups partition the detect stage has not read yet",
            ["partition"],
            registry=r,
        )
        Gauge(
            "spendbrake_detect_event_time_seconds",
            "Event time the detect stage has judged up to: its watermark, or while it closes a "
            "backlog's hours the first hour not closed yet (epoch seconds; compare with time())",
            registry=r,
        ).set_function(lambda: _finite(event_time()))


class StoreMetrics:
    """What the store stage read and wrote, and how far the report store is behind the
    output topics: the digest waits for it, and ``spendbrake report`` reads only what it
    wrote."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "spendbrake_store_records",
            "Records the store stage read from the output topics, by topic",
            ["topic"],
            registry=r,
        )
        self.rows = Counter(
            "spendbrake_store_rows",
            "Rows committed to the store (hourly and daily windows, trace partials, alerts, "
            "audit records)",
            registry=r,
        )
        self.writes = Histogram(
            "spendbrake_store_write_seconds",
            "One store write: its rows and their offsets in one transaction",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.skipped = Counter(
            "spendbrake_store_skipped",
            "Records the store stage could not read and skipped (not JSON, not a record)",
            ["topic"],
            registry=r,
        )
        self.failing = Gauge(
            "spendbrake_store_failing",
            "1 while the store file cannot be opened or written (the log says why; the other "
            "stages go on, the store stage tries again)",
            registry=r,
        )
        self.file_errors = Counter(
            "spendbrake_store_file_errors",
            "Failed tries to open or write the store file",
            registry=r,
        )
        self.lag = Gauge(
            "spendbrake_store_lag",
            "Records of each output topic partition the store stage has not read yet",
            ["topic", "partition"],
            registry=r,
        )


class ActionMetrics:
    """Effects performed, and the ones still waiting: alert on these to know that
    Slack or the gateway has not been reached for a while."""

    def __init__(
        self, pending: Callable[[str], int], waiting_since: Callable[[str], float | None]
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.effects = Counter(
            "spendbrake_effects",
            "Slack and gateway attempts settled, by lane, operation and result",
            ["lane", "op", "result"],
            registry=r,
        )
        self.refused = Counter(
            "spendbrake_refused",
            "Gateway calls the stage refused, by operation and reason: a pause of a key its "
            "own keys config does not allow (critical, alert-only, unlisted, master-key), a "
            "button's resume of a key it did not pause for that incident (not-ours)",
            ["op", "reason"],
            registry=r,
        )
        queued = Gauge(
            "spendbrake_effects_pending",
            "Effects not yet performed, by lane (slack, gateway)",
            ["lane"],
            registry=r,
        )
        oldest = Gauge(
            "spendbrake_effects_oldest_pending_seconds",
            "How long the next effect of a lane has been tried without success (0: none)",
            ["lane"],
            registry=r,
        )
        for lane in ("slack", "gateway"):
            queued.labels(lane).set_function(lambda lane=lane: pending(lane))
            oldest.labels(lane).set_function(lambda lane=lane: _age(waiting_since(lane)))
        # Labels come from Slack's error names and the config (scope, channel): bounded.
        self.slack_config_errors = Counter(
            "spendbrake_slack_config_errors",
            "Slack attempts refused for the config: error (missing_scope, not_in_channel, "
            "channel_not_found, invalid_auth ...) and what it needs (scope, channel, "
            "slack.token); the messages wait for the fix",
            ["error", "needed"],
            registry=r,
        )
        self.slack_unchecked = Counter(
            "spendbrake_slack_unchecked_posts",
            "Slack posts that may already have gone out, sent again without a look "
            "(a duplicate is possible), by why the look could not be made",
            ["reason"],
            registry=r,
        )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _age(since: float | None) -> float:
    return 0.0 if since is None else max(0.0, time.time() - since)
