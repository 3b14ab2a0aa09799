"""Manual rollout control from outside the operator (``specops rollback|promote|pause|resume NAME --kube``).

:func:`request` sets ``specops.io/action`` (promote | rollback | pause | resume) with a fresh
``specops.io/action-id``. The operator wakes on the change, passes the action to the rollout brain,
records the outcome in ``status.lastAction`` (same id) and removes the annotations.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from specops.errors import InvalidInput, NotFound
from specops.kube import client, resource
from specops.rollout.model import ManualAction


def request(name: str, namespace: str, action: str, *, api: Any = None, kubeconfig: str | None = None) -> str:
    """Ask the operator to ``action`` the deployment ``namespace/name``; returns the request id.

    ``api``: a ``kubernetes.client.ApiClient`` (default: in-cluster credentials, else kubeconfig —
    ``kubeconfig`` or ``$KUBECONFIG`` or ``~/.kube/config``). Raises InvalidInput for an unknown action
    and NotFound for an unknown deployment.
    """
    try:
        ManualAction(action)
    except ValueError:
        choices = ", ".join(item.value for item in ManualAction)
        raise InvalidInput(f"unknown action {action!r}; expected one of {choices}") from None
    kube = client.KubeClient(api or client.api_client(kubeconfig=kubeconfig))
    request_id = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
    try:
        kube.patch(
            resource.DEPLOYMENTS,
            namespace,
            name,
            {
                "metadata": {
                    "annotations": {resource.ACTION_ANNOTATION: action, resource.ACTION_ID_ANNOTATION: request_id}
                }
            },
        )
    except client.ApiException as error:
        if error.status == 404:
            raise NotFound(f"SpeculativeDeployment {namespace}/{name} not found") from error
        raise
    return request_id


def acknowledged(
    name: str,
    namespace: str,
    request_id: str,
    *,
    api: Any = None,
    kubeconfig: str | None = None,
    timeout_s: float = 30.0,
) -> dict[str, Any] | None:
    """Wait until the operator acknowledges ``request_id``; its ``status.lastAction`` or None."""
    kube = client.KubeClient(api or client.api_client(kubeconfig=kubeconfig))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = kube.get(resource.DEPLOYMENTS, namespace, name) or {}
        last = (body.get("status") or {}).get("lastAction") or {}
        if last.get("id") == request_id:
            return last
        time.sleep(0.2)
    return None
