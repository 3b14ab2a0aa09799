"""Names shared by the operator, its chart and its clients: API group, resource, labels, annotations.

The SpeculativeDeployment's own names and request annotations are defined once in
:mod:`specops.kube.resource` (the CLI and the alert receiver use them too) and repeated here by import.
"""

from __future__ import annotations

from specops.kube.resource import (
    ACTION_ANNOTATION,
    ACTION_ID_ANNOTATION,
    ALERTS_ANNOTATION,
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
)

__all__ = [
    "ACTION_ANNOTATION",
    "ACTION_ID_ANNOTATION",
    "ALERTS_ANNOTATION",
    "API_VERSION",
    "DEPLOYMENT_MODE_ANNOTATION",
    "FINALIZER",
    "GATEWAY_GROUP",
    "GATEWAY_VERSION",
    "GROUP",
    "ISVC_KIND",
    "ISVC_PLURAL",
    "KIND",
    "KSERVE_GROUP",
    "KSERVE_MODE",
    "KSERVE_VERSION",
    "LABEL_DEPLOYMENT",
    "LABEL_MANAGED_BY",
    "LABEL_PAIR",
    "LABEL_ROLE",
    "LABEL_VERSION",
    "MANAGED_BY",
    "PLURAL",
    "ROUTE_KIND",
    "ROUTE_PLURAL",
    "VERSION",
]

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_KIND = "InferenceService"

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
ROUTE_KIND = "HTTPRoute"

LABEL_DEPLOYMENT = "specops.io/deployment"
LABEL_PAIR = "specops.io/pair"
LABEL_VERSION = "specops.io/pair-version"
LABEL_ROLE = "specops.io/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "specops-operator"

FINALIZER = "specops.io/cleanup"
"""Held while the MLflow ``canary`` alias and the audit trail may still need cleaning up."""

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
KSERVE_MODE = {"Serverless": "Serverless", "Standard": "RawDeployment"}
"""Our spec values to KServe's annotation values. KServe >= 0.15 also accepts ``Knative`` and
``Standard``; the legacy spellings are accepted by every KServe release since 0.8."""
