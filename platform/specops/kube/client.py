"""A thin, synchronous Kubernetes API client for custom objects (the official client underneath).

Only what the adapters need: get, create, merge-patch (object and status), delete and list, each
taking a :class:`Kind`. Every patch is a JSON merge patch (``null`` deletes a key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

__all__ = ["MERGE_PATCH", "ApiException", "Kind", "KubeClient", "api_client"]

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """A namespaced custom resource: group, version and plural."""

    group: str
    version: str
    plural: str


def api_client(*, host: str | None = None, kubeconfig: str | None = None) -> k8s.ApiClient:
    """An API client for ``host`` (tests), else in-cluster credentials, else ``kubeconfig``/default."""
    if host is not None:
        configuration = k8s.Configuration(host=host)
        return k8s.ApiClient(configuration)
    configuration = k8s.Configuration()
    try:
        if kubeconfig is not None:
            raise k8s_config.ConfigException("explicit kubeconfig")
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return k8s.ApiClient(configuration)


class KubeClient:
    """Custom-object CRUD through one pooled, thread-safe API client."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.objects = k8s.CustomObjectsApi(api)

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.objects.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``; if it already exists (a retried reconcile), merge-patch it instead."""
        try:
            return self.objects.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body)
        except ApiException as error:
            if error.status != 409:
                raise
        return self.patch(
            kind,
            namespace,
            body["metadata"]["name"],
            {key: value for key, value in body.items() if key in ("metadata", "spec")},
        )

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.objects.patch_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, patch, _content_type=MERGE_PATCH
        )

    def patch_status(self, kind: Kind, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.objects.patch_namespaced_custom_object_status(
            kind.group, kind.version, namespace, kind.plural, name, {"status": status}, _content_type=MERGE_PATCH
        )

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete the object; False when it was already gone."""
        try:
            self.objects.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def list(self, kind: Kind, namespace: str, *, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` carrying every label in ``labels`` (checked here too)."""
        selector = ",".join(f"{key}={value}" for key, value in (labels or {}).items())
        found = self.objects.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, label_selector=selector
        )
        wanted = labels or {}
        return [
            item
            for item in found.get("items", [])
            if all(item.get("metadata", {}).get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
