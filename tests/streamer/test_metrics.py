"""Metric labels taken from event data stay bounded, and totals stay whole."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from spendbrake.stages.metrics import MAX_LABEL_VALUES, IngestMetrics
from spendbrake.streamer import ProcessorStats


def _series(metrics: IngestMetrics, name: str) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


def test_caller_chosen_labels_are_capped_and_still_add_up() -> None:
    metrics = IngestMetrics()
    for partition in (0, 1):
        stats = ProcessorStats(
            dead={**{f"tags.k{i}": 1 for i in range(300)}, "input_tokens": 2},
            unpriced_models={f"model-{partition}-{i}": 3 for i in range(300)},
        )
        metrics.absorb(partition, stats)
        stats.unpriced_models["model-0-0"] = stats.unpriced_models.get("model-0-0", 0) + 1
        metrics.absorb(partition, stats)  # a later flush: only the delta is added
    dead = _series(metrics, "spendbrake_dlq_records_total")
    assert dead == {
        'spendbrake_dlq_records_total{field="tags"}': 600.0,
        'spendbrake_dlq_records_total{field="input_tokens"}': 4.0,
    }
    models = _series(metrics, "spendbrake_unpriced_events_by_model_total")
    assert len(models) == MAX_LABEL_VALUES + 1
    assert sum(models.values()) == 2 * 300 * 3 + 2
    assert models['spendbrake_unpriced_events_by_model_total{model="(other)"}'] > 0
    # The deprecated gauge, kept for a release, reads the same.
    deprecated = _series(metrics, "spendbrake_unpriced_model_events")
    assert sorted(deprecated.values()) == sorted(models.values())


def test_unpriced_events_by_model_are_a_counter_beside_the_deprecated_gauge() -> None:
    """A count that only rises is a counter (``_total``); the gauge it replaces stays a
    release for dashboards. Both are served in OpenMetrics, which Prometheus asks for, as
    families of their own: a counter named ``spendbrake_unpriced_model_events_total``
    would be a second family ``spendbrake_unpriced_model_events`` there."""
    metrics = IngestMetrics()
    metrics.absorb(0, ProcessorStats(unpriced=5, unpriced_models={"gpt-9": 5}))
    text = openmetrics_latest(metrics.registry).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["spendbrake_unpriced_events_by_model"] == "counter"
    assert families["spendbrake_unpriced_model_events"] == "gauge"
    assert 'spendbrake_unpriced_events_by_model_total{model="gpt-9"} 5.0' in text
