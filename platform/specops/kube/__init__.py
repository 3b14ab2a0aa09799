"""Kubernetes access shared by the CLI, the alert receiver and the operator: a custom-object client, the
SpeculativeDeployment's names, and the annotations that hand manual actions and alerts to the operator."""

from specops.kube import actions, alerts, client, resource

__all__ = ["actions", "alerts", "client", "resource"]
