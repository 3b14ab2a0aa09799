"""The SpeculativeDeployment as its clients see it: API names and the annotations through which the CLI
and the alert receiver hand requests to the operator."""

from __future__ import annotations

from specops.kube.client import Kind

GROUP = "specops.io"
VERSION = "v1alpha1"
PLURAL = "speculativedeployments"
KIND = "SpeculativeDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

DEPLOYMENTS = Kind(GROUP, VERSION, PLURAL)

ACTION_ANNOTATION = "specops.io/action"
"""A manual request: promote | rollback | pause | resume (set by ``specops ACTION NAME --kube``)."""
ACTION_ID_ANNOTATION = "specops.io/action-id"
"""Unique id of the request in ``specops.io/action``; acknowledged in ``status.lastAction.id``."""
ALERTS_ANNOTATION = "specops.io/alerts"
"""JSON ``{"id", "at", "alerts": [...]}`` written by the alert receiver's sink (:mod:`specops.kube.alerts`)."""
