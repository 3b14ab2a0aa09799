"""Pure tests of the manifests the operator builds, each checked against a real schema where one exists:
Kubernetes' own (kubernetes-validate, strict) for the CRD and for the pod-level parts (metadata,
containers, resources), and KServe's generated API models for every InferenceService field."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from specops_operator import builders, constants, deployment_spec

K8S_VERSION = "1.33"
OWNER = builders.Owner(name="chat", namespace="ml", uid="0b7c6f1e-2f6a-4c1e-9b0e-1d2c3e4f5a6b")
SOURCE = builders.PairSource(storage_uri="s3://pairs/chat/3", proposer="draft", num_speculative_tokens=5)


def parsed(**overrides: Any) -> deployment_spec.DeploymentSpec:
    body: dict[str, Any] = {"pair": {"name": "chat", "version": "3"}}
    body.update(overrides)
    return deployment_spec.parse(body)


def validate_pod_parts(manifest: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    """Metadata and containers checked as the Pod they become, with Kubernetes' strict schema."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": manifest["metadata"], "spec": {"containers": containers}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def check_against_kserve_model(value: Any, type_name: str, path: str = "InferenceService") -> None:
    """Every key of ``value`` must be a field of KServe's generated model ``type_name`` (recursively)."""
    import kserve
    from kubernetes import client as k8s

    type_name = re.sub(r"^List\[(.*)\]$", r"list[\1]", type_name)
    type_name = re.sub(r"^Dict\[str, (.*)\]$", r"dict(str, \1)", type_name)
    if type_name.startswith("list["):
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            check_against_kserve_model(item, type_name[5:-1], f"{path}[{index}]")
        return
    if type_name.startswith("dict("):
        assert isinstance(value, dict), path
        inner = re.match(r"dict\(str, (.*)\)", type_name).group(1)  # type: ignore[union-attr]
        for key, item in value.items():
            check_against_kserve_model(item, inner, f"{path}.{key}")
        return
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}
    if type_name in primitive:
        assert isinstance(value, primitive[type_name]), f"{path}: {value!r} is not {type_name}"
        return
    if type_name == "ResourceQuantity":  # a Kubernetes quantity, string or number
        assert isinstance(value, str | int | float), path
        return
    model = getattr(kserve, type_name, None) or getattr(k8s, type_name)
    by_json = {json_key: attribute for attribute, json_key in model.attribute_map.items()}
    assert isinstance(value, dict), f"{path}: expected an object for {type_name}"
    for key, item in value.items():
        assert key in by_json, f"{path}.{key} is not a field of {type_name}"
        check_against_kserve_model(item, model.openapi_types[by_json[key]], f"{path}.{key}")


def check_isvc(manifest: dict[str, Any]) -> None:
    check_against_kserve_model(manifest, "V1beta1InferenceService")
    predictor = manifest["spec"]["predictor"]
    containers = predictor.get("containers") or [
        {
            "name": "kserve-container",
            "image": "kserve/huggingfaceserver",
            **{k: v for k, v in predictor["model"].items() if k in ("args", "resources")},
        }
    ]
    validate_pod_parts(manifest, containers)


def test_standard_mode_builds_one_inference_service_per_version_with_owner_and_labels() -> None:
    manifest = builders.inference_service(owner=OWNER, spec=parsed(), version="3", role="canary", source=SOURCE)
    check_isvc(manifest)
    meta = manifest["metadata"]
    assert meta["name"] == "chat-v3" and meta["namespace"] == "ml"
    assert meta["annotations"][constants.DEPLOYMENT_MODE_ANNOTATION] == "RawDeployment"
    assert meta["labels"][constants.LABEL_ROLE] == "canary" and meta["labels"][constants.LABEL_VERSION] == "3"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "specops.io/v1alpha1",
            "kind": "SpeculativeDeployment",
            "name": "chat",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    container = manifest["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["args"][:8] == [
        "serve",
        "--pair",
        "/mnt/models",
        "--model-name",
        "chat",
        "--pair-version",
        "3",
        "--role",
    ]
    assert {"name": "STORAGE_URI", "value": "s3://pairs/chat/3"} in container["env"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]


def test_serverless_mode_shares_one_inference_service_and_sets_canary_traffic_percent() -> None:
    serverless = parsed(deploymentMode="Serverless", resources={"gpus": 0, "memory": "8Gi", "cpu": "2"})
    manifest = builders.inference_service(
        owner=OWNER, spec=serverless, version="4", role="canary", source=SOURCE, canary_traffic_percent=25
    )
    check_isvc(manifest)
    assert manifest["metadata"]["name"] == "chat"
    assert manifest["metadata"]["annotations"][constants.DEPLOYMENT_MODE_ANNOTATION] == "Serverless"
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert "nvidia.com/gpu" not in manifest["spec"]["predictor"]["containers"][0]["resources"]["limits"]
    with pytest.raises(ValueError, match="ignored by KServe outside Serverless"):
        builders.inference_service(
            owner=OWNER, spec=parsed(), version="4", role="canary", source=SOURCE, canary_traffic_percent=25
        )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SOURCE, {"method": "draft_model", "model": "/mnt/models/draft", "num_speculative_tokens": 5}),
        (
            builders.PairSource(storage_uri="gs://p/1", proposer="prompt_lookup", num_speculative_tokens=3),
            {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4, "prompt_lookup_min": 1},
        ),
    ],
    ids=["draft-model", "prompt-lookup"],
)
def test_vllm_runtime_uses_kserve_huggingface_runtime_with_speculative_config(
    source: builders.PairSource, expected: dict[str, Any]
) -> None:
    manifest = builders.inference_service(
        owner=OWNER, spec=parsed(runtime={"type": "vllm"}), version="3", role="stable", source=source
    )
    check_isvc(manifest)
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "huggingface"} and model["storageUri"] == source.storage_uri
    assert "--backend=vllm" in model["args"] and "--model_dir=/mnt/models/target" in model["args"]
    config = next(arg for arg in model["args"] if arg.startswith("--speculative-config="))
    assert json.loads(config.split("=", 1)[1]) == expected


def test_spec_draft_length_overrides_the_pairs() -> None:
    manifest = builders.inference_service(
        owner=OWNER,
        spec=parsed(runtime={"type": "vllm", "numSpeculativeTokens": 7}),
        version="3",
        role="stable",
        source=SOURCE,
    )
    config = next(arg for arg in manifest["spec"]["predictor"]["model"]["args"] if "speculative" in arg)
    assert json.loads(config.split("=", 1)[1])["num_speculative_tokens"] == 7


def test_http_route_splits_stable_and_canary_by_weight() -> None:
    route = builders.http_route(
        owner=OWNER,
        spec=parsed(gateway={"name": "gw", "namespace": "edge", "hostnames": ["chat.example.com"]}),
        stable_version="2",
        canary_version="3",
        canary_weight=25,
    )
    validate_pod_parts(route, [{"name": "placeholder", "image": "x"}])
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert builders.route_weights(route) == {"chat-v2-predictor": 75, "chat-v3-predictor": 25}
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "edge"}
    ]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    assert backend == {"group": "", "kind": "Service", "name": "chat-v2-predictor", "port": 80, "weight": 75}
    alone = builders.http_route(owner=OWNER, spec=parsed(), stable_version="2", canary_version=None, canary_weight=0)
    assert builders.route_weights(alone) == {"chat-v2-predictor": 100}
    with pytest.raises(ValueError, match="canary weight"):
        builders.http_route(owner=OWNER, spec=parsed(), stable_version="2", canary_version="3", canary_weight=101)


def test_crd_is_a_valid_custom_resource_definition(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)
    version = crd["spec"]["versions"][0]
    assert (crd["metadata"]["name"], version["name"]) == ("speculativedeployments.specops.io", "v1alpha1")
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Stable"] == ".status.stableVersion" and columns["Acceptance"] == ".status.acceptanceRate"
    assert {"Canary", "Weight", "Phase"} <= set(columns)


FULL_SPEC = {
    "pair": {"name": "chat", "version": "candidate"},
    "runtime": {"type": "vllm", "image": "img", "numSpeculativeTokens": 4, "args": ["--x"]},
    "deploymentMode": "Serverless",
    "gateway": {"name": "gw", "namespace": "edge", "hostnames": ["a.example.com"]},
    "resources": {"gpus": 2, "memory": "80Gi", "cpu": "8"},
    "rollout": {
        "steps": [5, 50, 100],
        "analysisIntervalSeconds": 30,
        "minDraftTokens": 100,
        "minRequests": 3,
        "minTargetSteps": 50,
        "failureLimit": 3,
        "bakeSeconds": 600,
        "maxInconclusiveSeconds": 900,
        "onInconclusive": "Pause",
        "compareToStable": {"enabled": False, "alpha": 0.05, "minTokensPerStepEffect": 0.1, "minItlEffect": 0.3},
        "thresholds": {
            "minAcceptanceRate": 0.4,
            "minTokensPerStep": 1.2,
            "maxErrorRate": 0.01,
            "maxItlP95Seconds": 0.05,
        },
    },
    "policy": "Manual",
    "slo": {"availability": 0.995, "ttftP95Seconds": 1.0, "itlP95Seconds": 0.05},
    "drift": {"enabled": False, "sampleRate": 0.5, "driftShare": 0.3},
}


def schema_validator(crd: dict[str, Any]) -> jsonschema.Validator:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def test_crd_schema_accepts_every_field_the_operator_reads(crd: dict[str, Any]) -> None:
    schema_validator(crd).validate({"spec": FULL_SPEC})
    parsed_spec = deployment_spec.parse(FULL_SPEC)
    assert parsed_spec.policy.steps == (5, 50, 100) and parsed_spec.policy.automatic is False
    assert parsed_spec.policy.max_itl_p95_s == 0.05 and parsed_spec.runtime.type == "vllm"
    policy = parsed_spec.policy
    assert (policy.min_target_steps, policy.min_tokens_per_step, policy.max_inconclusive_s) == (50, 1.2, 900)
    assert policy.on_inconclusive.value == "pause" and policy.compare_to_stable is False
    assert (policy.comparison_alpha, policy.min_tokens_per_step_effect, policy.min_itl_effect) == (0.05, 0.1, 0.3)


def _properties(schema: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in schema.get("properties", {}).items():
        found.add(prefix + key)
        found |= _properties(value, prefix + key + ".")
    return found


def test_crd_and_parser_know_the_same_spec_fields(crd: dict[str, Any]) -> None:
    """Every CRD field is exercised by FULL_SPEC, and nothing the parser reads would be pruned by the
    API server (the schema, made strict, still accepts FULL_SPEC)."""
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    paths = _properties(spec_schema)
    leaves = {path for path in paths if not any(other.startswith(path + ".") for other in paths)}
    used = _properties({"properties": {key: _as_schema(value) for key, value in FULL_SPEC.items()}})
    assert leaves <= used, leaves - used
    jsonschema.Draft7Validator(_strict(spec_schema)).validate(FULL_SPEC)


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    result = dict(schema)
    if "properties" in result:
        result["additionalProperties"] = False
        result["properties"] = {key: _strict(value) for key, value in result["properties"].items()}
    return result


def _as_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"properties": {key: _as_schema(item) for key, item in value.items()}}
    return {}


@pytest.mark.parametrize(
    "bad",
    [
        {"spec": {"pair": {"name": "chat"}}},
        {"spec": {"pair": {"name": "chat", "version": "1"}, "policy": "Sometimes"}},
        {"spec": {"pair": {"name": "chat", "version": "1"}, "rollout": {"steps": [0, 100]}}},
        {"spec": {"pair": {"name": "chat", "version": "1"}, "rollout": {"thresholds": {"maxErrorRate": 2}}}},
        {"spec": {"pair": {"name": "Chat!", "version": "1"}}},
        {"spec": {"pair": {"name": "chat", "version": "1"}, "runtime": {"type": "tgi"}}},
        {"spec": {"pair": {"name": "chat", "version": "1"}, "resources": {"memory": "lots"}}},
    ],
    ids=[
        "version-missing",
        "policy-enum",
        "step-zero",
        "error-rate-range",
        "name-pattern",
        "runtime-enum",
        "memory-quantity",
    ],
)
def test_crd_schema_and_parser_both_reject_bad_specs(crd: dict[str, Any], bad: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        schema_validator(crd).validate(bad)
    with pytest.raises(Exception, match=r"spec\."):
        deployment_spec.parse(bad["spec"])


def test_parser_applies_documented_defaults() -> None:
    parsed_spec = deployment_spec.parse({"pair": {"name": "chat", "version": 3}})
    assert parsed_spec.version == "3" and parsed_spec.deployment_mode == "Standard"
    assert parsed_spec.policy.steps == (10, 25, 50, 100) and parsed_spec.policy.analysis_interval_s == 60
    assert parsed_spec.policy.automatic and parsed_spec.runtime.type == "specops"
    assert parsed_spec.gateway.name == "kserve-ingress-gateway"


def test_chart_example_is_a_valid_speculative_deployment(crd: dict[str, Any]) -> None:
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[2] / "charts" / "specops" / "examples" / "speculativedeployment.yaml"
    body = yaml.safe_load(example.read_text())
    schema_validator(crd).validate(body)
    jsonschema.Draft7Validator(
        _strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
    ).validate(body["spec"])
    assert deployment_spec.parse(body["spec"]).policy.max_itl_p95_s == 0.08
