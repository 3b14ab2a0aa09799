"""Alerts from the monitoring receiver → the SpeculativeDeployment they concern.

The receiver (``specops.monitoring``) calls a ``sink(deployment, alerts)`` for each Alertmanager
notification; :func:`annotate` is that sink for Kubernetes. It writes the firing alerts as one JSON
annotation (``specops.io/alerts``) with a fresh batch id; the operator wakes on the change, hands the
page-level alerts to the rollout brain once (a page on the canary, or on a freshly promoted version,
rolls back under the automatic policy) and acknowledges the batch in ``status.lastAlerts``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import Any

from specops.kube import client, resource
from specops.rollout.model import Alert, Role


def encode(alerts: tuple[Alert, ...], *, batch_id: str | None = None, at: float | None = None) -> str:
    """The annotation value for ``alerts``."""
    items = []
    for alert in alerts:
        item = asdict(alert)
        item["role"] = alert.role.value if alert.role is not None else None
        items.append(item)
    return json.dumps(
        {"id": batch_id or uuid.uuid4().hex, "at": at if at is not None else time.time(), "alerts": items},
        sort_keys=True,
        separators=(",", ":"),
    )


def decode(value: str) -> tuple[str, tuple[Alert, ...]]:
    """(batch id, alerts) of an annotation written by :func:`encode`; ValueError when malformed."""
    try:
        data = json.loads(value)
        batch_id = str(data["id"])
        alerts = tuple(
            Alert(
                name=str(item["name"]),
                severity=str(item["severity"]),
                role=Role(item["role"]) if item.get("role") else None,
                version=str(item["version"]) if item.get("version") is not None else None,
                summary=str(item.get("summary", "")),
            )
            for item in data.get("alerts", [])
        )
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a specops alerts annotation: {error}") from error
    return batch_id, alerts


def annotate(
    name: str, namespace: str, alerts: tuple[Alert, ...], *, api: Any = None, kubeconfig: str | None = None
) -> str:
    """Hand ``alerts`` to the deployment ``namespace/name``; returns the batch id.

    ``api``: a ``kubernetes.client.ApiClient`` (default: in-cluster credentials, else kubeconfig).
    """
    kube = client.KubeClient(api or client.api_client(kubeconfig=kubeconfig))
    batch_id = uuid.uuid4().hex
    kube.patch(
        resource.DEPLOYMENTS,
        namespace,
        name,
        {"metadata": {"annotations": {resource.ALERTS_ANNOTATION: encode(alerts, batch_id=batch_id)}}},
    )
    return batch_id


def sink(namespace: str = "default", **options: Any):  # type: ignore[no-untyped-def]
    """A receiver sink bound to ``namespace``: ``sink(deployment, alerts)`` where ``deployment`` is
    ``name`` or ``namespace/name``."""

    def deliver(deployment: str, alerts: tuple[Alert, ...]) -> None:
        space, _, name = deployment.rpartition("/")
        annotate(name, space or namespace, alerts, **options)

    return deliver
