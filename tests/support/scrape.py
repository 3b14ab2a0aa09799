"""Read a Prometheus text exposition into {(name, labels...): value} for delta assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def scrape(text: str) -> dict[tuple, float]:
    values: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return values


def value(metrics: dict[tuple, float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, number in metrics.items():
        if key[0] != name:
            continue
        have = dict(key[1:])
        if all(have.get(k) == v for k, v in labels.items()):
            total += number
    return total
