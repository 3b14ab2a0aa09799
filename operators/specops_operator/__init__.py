"""specops-operator: SpeculativeDeployment → KServe InferenceService, metric-gated canary with automatic
rollback. The rollout rules live in :mod:`specops.rollout`; this package is their Kubernetes body."""

from specops_operator import actions, alerts, builders, constants, kube, metrics, reconcile, registry, serving, spec
from specops_operator import status as status

__all__ = [
    "actions",
    "alerts",
    "builders",
    "constants",
    "kube",
    "metrics",
    "reconcile",
    "registry",
    "serving",
    "spec",
    "status",
]
