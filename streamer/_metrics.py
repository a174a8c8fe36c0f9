"""Prometheus metrics of the ingest worker, in a registry of its own.

Counters are fed from the processors' own counts at each flush (a delta per
flush), so the per-event hot path never touches prometheus_client.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ._processor import ProcessorStats


class WorkerMetrics:
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
        self.unpriced_models = Gauge(
            "spendbrake_unpriced_model_events",
            "Unpriced events per model since start",
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

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def absorb(self, partition: int, stats: ProcessorStats) -> None:
        """Add what a partition counted since the last call."""
        before = self._seen.get(partition) or ProcessorStats()
        self.records.inc(stats.records - before.records)
        self.valid.inc(stats.valid - before.valid)
        self.duplicates.inc(stats.duplicates - before.duplicates)
        self.late.inc(stats.late - before.late)
        self.unpriced.inc(stats.unpriced - before.unpriced)
        for field, count in stats.dead.items():
            self.dead.labels(field).inc(count - before.dead.get(field, 0))
        for model, count in stats.unpriced_models.items():
            self.unpriced_models.labels(model).set(count)
        self._seen[partition] = ProcessorStats(
            records=stats.records,
            valid=stats.valid,
            duplicates=stats.duplicates,
            late=stats.late,
            unpriced=stats.unpriced,
            dead=dict(stats.dead),
        )

    def forget(self, partition: int) -> None:
        self._seen.pop(partition, None)
