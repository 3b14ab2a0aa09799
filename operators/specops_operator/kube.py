"""The Kubernetes kinds the operator acts on, and the shared custom-object client it acts through.

The client and the SpeculativeDeployment kind live in :mod:`specops.kube` (the CLI uses them too); the
KServe InferenceService and Gateway API HTTPRoute kinds are the operator's alone.
"""

from __future__ import annotations

from specops.kube.client import ApiException, Kind, KubeClient, api_client
from specops.kube.resource import DEPLOYMENTS
from specops_operator import constants

__all__ = ["DEPLOYMENTS", "HTTP_ROUTES", "INFERENCE_SERVICES", "ApiException", "Kind", "KubeClient", "api_client"]

INFERENCE_SERVICES = Kind(constants.KSERVE_GROUP, constants.KSERVE_VERSION, constants.ISVC_PLURAL)
HTTP_ROUTES = Kind(constants.GATEWAY_GROUP, constants.GATEWAY_VERSION, constants.ROUTE_PLURAL)
