"""specops-operator: SpeculativeDeployment → KServe InferenceService, metric-gated canary with automatic
rollback. The rollout rules live in :mod:`specops.rollout`; this package is their Kubernetes body.

Modules: ``handlers`` (kopf handlers; ``register`` and ``settings``), ``reconcile`` (one reconcile:
read → intake → controller → sync → status), ``deployment_spec`` (the resource's spec, parsed and
checked), ``builders`` (InferenceService and HTTPRoute manifests), ``serving`` (the KServe
``ServingBackend``), ``prometheus_source`` (the Prometheus ``MetricsSource``), ``registry`` (registry
aliases and version lookups), ``status`` / ``status_store`` / ``pending`` (what status holds, how it is
written, and the requests it acknowledges), ``kube`` and ``constants`` (API kinds and names).
"""

from specops_operator import (
    builders,
    constants,
    deployment_spec,
    handlers,
    kube,
    pending,
    prometheus_source,
    reconcile,
    registry,
    serving,
    status,
    status_store,
)
from specops_operator.deployment_spec import DeploymentSpec
from specops_operator.handlers import register, settings
from specops_operator.reconcile import Dependencies

__all__ = [
    "Dependencies",
    "DeploymentSpec",
    "builders",
    "constants",
    "deployment_spec",
    "handlers",
    "kube",
    "pending",
    "prometheus_source",
    "reconcile",
    "register",
    "registry",
    "serving",
    "settings",
    "status",
    "status_store",
]
