"""The drift gauges: each drift run's verdict and per-column scores, for alert rules and dashboards."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from specops.monitoring import names

if TYPE_CHECKING:
    from specops.monitoring.drift import DriftResult


class DriftGauges:
    """The drift gauges on their own registry; alert rules and dashboards read them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = [names.LABEL_DEPLOYMENT, names.LABEL_VERSION]
        self.share = Gauge(
            names.DRIFT_SHARE,
            "Measured share of drifted columns in the last drift run.",
            labels,
            registry=self.registry,
        )
        self.detected = Gauge(
            names.DRIFT_DETECTED,
            "1 when the last drift run's share reached drift_share.",
            labels,
            registry=self.registry,
        )
        self.column_drifted = Gauge(
            names.DRIFT_COLUMN_DRIFTED,
            "1 when the column drifted in the last run.",
            [*labels, names.LABEL_COLUMN],
            registry=self.registry,
        )
        self.column_score = Gauge(
            names.DRIFT_COLUMN_SCORE,
            "The column's drift score (see method).",
            [*labels, names.LABEL_COLUMN, names.LABEL_METHOD],
            registry=self.registry,
        )
        self.last_run = Gauge(
            names.DRIFT_LAST_RUN, "When the last drift run finished (Unix seconds).", labels, registry=self.registry
        )

    def publish(self, result: DriftResult, *, deployment: str, version: str, at: float) -> None:
        """Set the gauges of ``deployment``/``version`` from one run's result, finished at ``at`` (Unix s)."""
        self.share.labels(deployment, version).set(result.drifted_share)
        self.detected.labels(deployment, version).set(1.0 if result.drifted else 0.0)
        for column in result.columns:
            self.column_drifted.labels(deployment, version, column.column).set(1.0 if column.drifted else 0.0)
            score = column.score if math.isfinite(column.score) else float("nan")
            self.column_score.labels(deployment, version, column.column, column.method).set(score)
        self.last_run.labels(deployment, version).set(at)

    def write(self, path: Path) -> Path:
        """Write the gauges as a Prometheus text file (atomically), for the receiver's ``/metrics``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
        return path
