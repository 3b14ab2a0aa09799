"""The Helm chart: it renders, every manifest passes Kubernetes' strict schema, the operator's RBAC covers
what it does, and values.schema.json refuses bad values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "specops"


def helm() -> str:
    for candidate in (shutil.which("helm"), ROOT / ".tools" / "helm"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("helm is not installed: `make tools` puts it in .tools/")


def render(*sets: str) -> subprocess.CompletedProcess[str]:
    command = [helm(), "template", "rel", str(CHART), "--namespace", "specops", "--include-crds"]
    for value in sets:
        command += ["--set", value]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    rendered = render("operator.watchNamespaces={ml,research}")
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def test_every_rendered_manifest_passes_the_strict_kubernetes_schema(manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in manifests)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "ServiceAccount"]
    for doc in manifests:
        kubernetes_validate.validate(doc, "1.33", strict=True)


def test_operator_deployment_runs_the_operator_entry_point(manifests: list[dict[str, Any]]) -> None:
    deployment = next(doc for doc in manifests if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["specops-operator"]
    assert "--namespace=ml" in container["args"] and "--namespace=research" in container["args"]
    env = {item["name"] for item in container["env"]}
    assert {"SPECOPS_PROMETHEUS_URL", "MLFLOW_TRACKING_URI", "SPECOPS_DATABASE_URL"} <= env
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_operator_rbac_covers_what_it_reads_and_writes(manifests: list[dict[str, Any]]) -> None:
    role = next(doc for doc in manifests if doc["kind"] == "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {("specops.io", "speculativedeployments", verb) for verb in ("list", "watch", "patch")}
    needed |= {("specops.io", "speculativedeployments/status", "patch")}
    needed |= {
        ("serving.kserve.io", "inferenceservices", verb)
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    }
    needed |= {("gateway.networking.k8s.io", "httproutes", verb) for verb in ("get", "create", "patch")}
    assert needed <= granted, needed - granted


def test_values_schema_refuses_bad_values() -> None:
    rendered = render("operator.prometheusUrl=ftp://prometheus")
    assert rendered.returncode != 0 and "prometheusUrl" in rendered.stderr
    rendered = render("operator.replicas=3")
    assert rendered.returncode != 0 and "replicas" in rendered.stderr


def test_pod_monitor_relabels_pod_labels_for_the_canary_queries() -> None:
    rendered = render("podMonitor.enabled=true")
    assert rendered.returncode == 0, rendered.stderr
    monitor = next(doc for doc in yaml.safe_load_all(rendered.stdout) if doc and doc["kind"] == "PodMonitor")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    targets = {item["targetLabel"] for item in endpoint["relabelings"]}
    assert {"pair_version", "role"} <= targets and endpoint["honorLabels"] is True
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor["metadata"]}, "1.33", strict=True
    )
