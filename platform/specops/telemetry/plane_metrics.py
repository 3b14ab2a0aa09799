"""Every Prometheus metric of the embedded control plane (`specops up`), defined once.

Router series count what clients saw; controller series show each deployment's rollout; supervision
series count server crashes. Every series carries ``deployment``. Derived in PromQL:

.. code-block:: promql

    # share of the router's answers that were server errors, by deployment and role
    sum by (deployment, role) (rate(specops_router_requests_total{code=~"5.."}[5m]))
      / sum by (deployment, role) (rate(specops_router_requests_total[5m]))

    # crash loops: more than 3 crashes of one server in 10 minutes
    increase(specops_server_crashes_total[10m]) > 3
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTER_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class PlaneMetrics:
    """The plane's metric objects on one registry."""

    router_requests: Counter
    router_seconds: Histogram
    router_in_flight: Gauge
    server_crashes: Counter
    server_restarts: Counter
    server_up: Gauge
    transitions: Counter
    canary_weight: Gauge
    rounds: Counter
    round_errors: Counter


def define(registry: CollectorRegistry) -> PlaneMetrics:
    """Create every plane metric on ``registry`` (call once per registry)."""
    return PlaneMetrics(
        router_requests=Counter(
            "specops_router_requests",
            "Requests the router answered, by deployment, serving role and HTTP status code.",
            ("deployment", "role", "code"),
            registry=registry,
        ),
        router_seconds=Histogram(
            "specops_router_request_duration_seconds",
            "Seconds from a request's arrival to its answer's headers.",
            ("deployment", "role"),
            buckets=ROUTER_LATENCY_BUCKETS,
            registry=registry,
        ),
        router_in_flight=Gauge(
            "specops_router_requests_in_flight", "Requests the router is answering now.", registry=registry
        ),
        server_crashes=Counter(
            "specops_server_crashes",
            "Model-server processes that exited without being asked to.",
            ("deployment", "role"),
            registry=registry,
        ),
        server_restarts=Counter(
            "specops_server_restarts",
            "Model-server processes started again after a crash.",
            ("deployment", "role"),
            registry=registry,
        ),
        server_up=Gauge(
            "specops_server_up", "1 while the role's server answers, else 0.", ("deployment", "role"), registry=registry
        ),
        transitions=Counter(
            "specops_rollout_transitions",
            "Rollout phase transitions the controller made, by the phase entered.",
            ("deployment", "phase"),
            registry=registry,
        ),
        canary_weight=Gauge(
            "specops_rollout_canary_weight_percent", "Canary traffic percentage.", ("deployment",), registry=registry
        ),
        rounds=Counter(
            "specops_rollout_rounds",
            "Controller rounds run, by the step the intake chose.",
            ("deployment", "step"),
            registry=registry,
        ),
        round_errors=Counter(
            "specops_rollout_round_errors",
            "Rounds that ended in an error (logged and reported).",
            ("deployment",),
            registry=registry,
        ),
    )
