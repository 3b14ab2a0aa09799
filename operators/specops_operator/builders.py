"""Pure builders of the Kubernetes objects a SpeculativeDeployment owns.

Nothing here talks to the API: each function takes plain data and returns a manifest dict, so every
manifest is unit-tested and schema-checked (``tests/operator/test_builders.py``).

Two KServe deployment modes:

* **Serverless** (Knative): one InferenceService named after the deployment. A canary is the same
  InferenceService with the new version's predictor and ``canaryTrafficPercent``; KServe splits traffic
  between the new revision and the last revision rolled out at 100 %. Promotion removes
  ``canaryTrafficPercent``; rollback sets it to 0 (KServe's own rollback: all traffic back to the last
  rolled-out revision).
* **Standard** (raw Deployments), where KServe ignores ``canaryTrafficPercent``: one InferenceService per
  version (``<deployment>-v<version>``, labelled with its role) and a Gateway API HTTPRoute that
  splits traffic between the stable and canary predictor Services by weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from specops_operator import constants
from specops_operator.deployment_spec import DeploymentSpec

PREDICTOR_PORT = 80
"""Port of the predictor Service KServe creates in Standard mode (``<isvc>-predictor``)."""
CONTAINER_PORT = 8080
MODEL_MOUNT = "/mnt/models"
"""Where KServe's storage initializer puts the ``storageUri`` folder (the pair folder)."""


@dataclass(frozen=True)
class Owner:
    """The SpeculativeDeployment that owns the built objects."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """An ownerReference: Kubernetes' garbage collector deletes the object with its owner."""
        return {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class PairSource:
    """Where one pair version's files are and how it speculates (from the registry).

    storage_uri: the pair folder (``target/``, ``draft/``, ``pair.json``) as a KServe storage URI.
    proposer: ``draft`` (a draft model) or ``prompt_lookup`` (n-gram lookup, no draft model).
    num_speculative_tokens: draft length k.
    """

    storage_uri: str
    proposer: str = "draft"
    num_speculative_tokens: int = 4


def isvc_name(deployment: str, *, mode: str, version: str) -> str:
    """The InferenceService that serves ``version``: shared in Serverless mode, per version otherwise."""
    return deployment if mode == "Serverless" else f"{deployment}-v{version}"


def predictor_service(isvc: str) -> str:
    """The Service KServe creates for an InferenceService's predictor."""
    return f"{isvc}-predictor"


def speculative_config(source: PairSource, *, num_speculative_tokens: int | None = None) -> dict[str, Any]:
    """vLLM's ``--speculative-config`` for ``source`` (draft folder as mounted by KServe)."""
    k = num_speculative_tokens or source.num_speculative_tokens
    if source.proposer == "prompt_lookup":
        return {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": 4, "prompt_lookup_min": 1}
    if source.proposer == "draft":
        return {"method": "draft_model", "model": f"{MODEL_MOUNT}/draft", "num_speculative_tokens": k}
    raise ValueError(f"unknown proposer {source.proposer!r} (expected draft or prompt_lookup)")


def inference_service(
    *,
    owner: Owner,
    spec: DeploymentSpec,
    version: str,
    role: str,
    source: PairSource,
    canary_traffic_percent: int | None = None,
) -> dict[str, Any]:
    """The InferenceService serving ``version`` of the pair in ``role`` (stable | canary).

    ``canary_traffic_percent`` is only meaningful in Serverless mode (KServe ignores it otherwise).
    """
    name = isvc_name(owner.name, mode=spec.deployment_mode, version=version)
    labels = _labels(owner, spec, version=version, role=role)
    predictor: dict[str, Any] = {"minReplicas": 1, "labels": dict(labels)}
    if spec.runtime.type == "vllm":
        predictor["model"] = _vllm_model(spec, source)
    else:
        predictor["containers"] = [_specops_container(spec, source, version=version, role=role)]
    if canary_traffic_percent is not None:
        if spec.deployment_mode != "Serverless":
            raise ValueError("canaryTrafficPercent is ignored by KServe outside Serverless mode")
        if not 0 <= canary_traffic_percent <= 100:
            raise ValueError(f"canaryTrafficPercent must lie in [0, 100], got {canary_traffic_percent}")
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    return {
        "apiVersion": f"{constants.KSERVE_GROUP}/{constants.KSERVE_VERSION}",
        "kind": constants.ISVC_KIND,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {
                constants.DEPLOYMENT_MODE_ANNOTATION: constants.KSERVE_MODE[spec.deployment_mode],
                "serving.kserve.io/enable-prometheus-scraping": "true",
            },
            "ownerReferences": [owner.reference()],
        },
        "spec": {"predictor": predictor},
    }


def http_route(
    *,
    owner: Owner,
    spec: DeploymentSpec,
    stable_version: str,
    canary_version: str | None,
    canary_weight: int,
) -> dict[str, Any]:
    """The weighted HTTPRoute of Standard mode: stable gets ``100 - canary_weight``, canary the rest."""
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must lie in [0, 100], got {canary_weight}")
    mode = spec.deployment_mode
    backends = [
        _backend(
            isvc_name(owner.name, mode=mode, version=stable_version), 100 - canary_weight if canary_version else 100
        )
    ]
    if canary_version is not None:
        backends.append(_backend(isvc_name(owner.name, mode=mode, version=canary_version), canary_weight))
    route_spec: dict[str, Any] = {
        "parentRefs": [
            {
                "group": constants.GATEWAY_GROUP,
                "kind": "Gateway",
                "name": spec.gateway.name,
                "namespace": spec.gateway.namespace,
            }
        ],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": backends,
            }
        ],
    }
    if spec.gateway.hostnames:
        route_spec["hostnames"] = list(spec.gateway.hostnames)
    return {
        "apiVersion": f"{constants.GATEWAY_GROUP}/{constants.GATEWAY_VERSION}",
        "kind": constants.ROUTE_KIND,
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {
                constants.LABEL_DEPLOYMENT: owner.name,
                constants.LABEL_PAIR: spec.pair,
                constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
            },
            "ownerReferences": [owner.reference()],
        },
        "spec": route_spec,
    }


def route_weights(route: dict[str, Any]) -> dict[str, int]:
    """Backend Service name → weight of an HTTPRoute built by :func:`http_route`."""
    rules = route.get("spec", {}).get("rules") or [{}]
    return {ref["name"]: int(ref.get("weight", 1)) for ref in rules[0].get("backendRefs", [])}


def _backend(isvc: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": predictor_service(isvc), "port": PREDICTOR_PORT, "weight": weight}


def _labels(owner: Owner, spec: DeploymentSpec, *, version: str, role: str) -> dict[str, str]:
    return {
        constants.LABEL_DEPLOYMENT: owner.name,
        constants.LABEL_PAIR: spec.pair,
        constants.LABEL_VERSION: version,
        constants.LABEL_ROLE: role,
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
    }


def _resources(spec: DeploymentSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    if spec.resources.gpus:
        amounts["nvidia.com/gpu"] = str(spec.resources.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _specops_container(spec: DeploymentSpec, source: PairSource, *, version: str, role: str) -> dict[str, Any]:
    args = [
        "serve",
        "--pair",
        MODEL_MOUNT,
        "--model-name",
        spec.pair,
        "--pair-version",
        version,
        "--role",
        role,
        "--port",
        str(CONTAINER_PORT),
    ]
    if spec.runtime.num_speculative_tokens is not None:
        args += ["--num-speculative-tokens", str(spec.runtime.num_speculative_tokens)]
    env = [
        # KServe runs its storage initializer for a custom container that sets STORAGE_URI.
        {"name": "STORAGE_URI", "value": source.storage_uri},
        {"name": "SPECOPS_RECORD_SAMPLE_RATE", "value": f"{spec.drift.sample_rate if spec.drift.enabled else 0}"},
    ]
    return {
        "name": "kserve-container",
        "image": spec.runtime.image,
        "args": [*args, *spec.runtime.args],
        "env": env,
        "ports": [{"containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{spec.pair}", "port": CONTAINER_PORT}},
        "resources": _resources(spec),
    }


def _vllm_model(spec: DeploymentSpec, source: PairSource) -> dict[str, Any]:
    config = speculative_config(source, num_speculative_tokens=spec.runtime.num_speculative_tokens)
    return {
        "modelFormat": {"name": "huggingface"},
        "storageUri": source.storage_uri,
        "args": [
            f"--model_name={spec.pair}",
            f"--model_dir={MODEL_MOUNT}/target",
            "--backend=vllm",
            f"--speculative-config={json.dumps(config, sort_keys=True, separators=(',', ':'))}",
            *spec.runtime.args,
        ],
        "resources": _resources(spec),
    }
