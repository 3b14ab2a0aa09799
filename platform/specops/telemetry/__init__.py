"""Telemetry of the serving runtime: every Prometheus metric (`metrics`) and request records (`records`)."""

from specops.telemetry import metrics, records

__all__ = ["metrics", "records"]
