"""SpeculativeDeployment manifests as a client creates them, for the operator tests and benchmark."""

from __future__ import annotations

import uuid
from typing import Any


def speculative_deployment(name: str, *, namespace: str, pair: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    """A SpeculativeDeployment of ``pair`` ``version``; ``spec`` adds fields (``rollout=...``).

    The Kubernetes emulator fills in neither uid nor resourceVersion, so the manifest carries them.
    """
    from specops_operator import constants

    body_spec: dict[str, Any] = {"pair": {"name": pair, "version": version}}
    body_spec.update(spec)
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        # kopf guards its finalizer patch with a JSON-patch test of resourceVersion, which the emulator
        # neither sets nor bumps: a constant one satisfies it.
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": body_spec,
    }
