"""The requests a SpeculativeDeployment carries that status has not yet acknowledged: a manual action
(``specops.io/action`` + ``specops.io/action-id``) and a batch of alerts (``specops.io/alerts``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from specops.kube import alerts as alert_batches
from specops.rollout.model import Alert
from specops_operator import constants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingRequests:
    """The object's requests not yet acknowledged in status.

    action: the manual action as written, lower-cased (None: none pending). alerts: the batch's alerts
    (None: none pending). action_id / alerts_id: the ids to acknowledge (kept even when the request
    itself is already acknowledged and only the annotation's removal is on its way).
    """

    action: str | None = None
    action_id: str = ""
    alerts: tuple[Alert, ...] | None = None
    alerts_id: str = ""


def read(annotations: dict[str, str], status: dict[str, Any] | None) -> PendingRequests:
    """The requests in ``annotations`` that ``status`` has not acknowledged."""
    action, action_id = _action(annotations, status)
    alerts, alerts_id = _alerts(annotations, status)
    return PendingRequests(action=action, action_id=action_id, alerts=alerts, alerts_id=alerts_id)


def _action(annotations: dict[str, str], status: dict[str, Any] | None) -> tuple[str | None, str]:
    action = annotations.get(constants.ACTION_ANNOTATION)
    if not action:
        return None, ""
    action_id = annotations.get(constants.ACTION_ID_ANNOTATION, "")
    last = (status or {}).get("lastAction") or {}
    if action_id and last.get("id") == action_id:
        return None, action_id  # acknowledged; the annotation's removal is still on its way
    return action.strip().lower(), action_id


def _alerts(annotations: dict[str, str], status: dict[str, Any] | None) -> tuple[tuple[Alert, ...] | None, str]:
    raw = annotations.get(constants.ALERTS_ANNOTATION)
    if not raw:
        return None, ""
    try:
        batch_id, parsed = alert_batches.decode(raw)
    except ValueError as error:
        log.warning("ignoring malformed %s annotation: %s", constants.ALERTS_ANNOTATION, error)
        return None, ""
    if ((status or {}).get("lastAlerts") or {}).get("id") == batch_id:
        return None, batch_id
    return parsed, batch_id
