"""Names shared by the operator, its chart and its clients: API group, resource, labels, annotations."""

from __future__ import annotations

GROUP = "specops.io"
VERSION = "v1alpha1"
PLURAL = "speculativedeployments"
KIND = "SpeculativeDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_KIND = "InferenceService"

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
ROUTE_KIND = "HTTPRoute"

ACTION_ANNOTATION = "specops.io/action"
"""A manual request: promote | rollback | pause | resume (set by ``specops ACTION NAME --kube``)."""
ACTION_ID_ANNOTATION = "specops.io/action-id"
"""Unique id of the request in ``specops.io/action``; acknowledged in ``status.lastAction.id``."""
ALERTS_ANNOTATION = "specops.io/alerts"
"""JSON ``{"id", "at", "alerts": [...]}`` written by the alert receiver's sink (:mod:`.alerts`)."""

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
