"""Telemetry: every Prometheus metric of the servers (`metrics`) and of the control plane (`plane_metrics`), and
request records (`records`)."""

from specops.telemetry import metrics, plane_metrics, records

__all__ = ["metrics", "plane_metrics", "records"]
