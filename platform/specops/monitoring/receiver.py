"""The Alertmanager webhook receiver: alerts → incidents (governance store) → rollout observations.

``create_app(token=..., sink=...)`` returns an ASGI app with

* ``POST /alertmanager`` — Alertmanager's webhook (payload version 4,
  https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), authenticated with
  ``Authorization: Bearer TOKEN`` (Alertmanager's ``http_config.authorization.credentials``). A wrong
  or missing token answers 401 and is counted in ``specops_alert_receiver_unauthorized_total``.
* ``GET /metrics`` — the receiver's counters, plus the drift gauges of :mod:`specops.monitoring.drift`.
* ``GET /healthz``.

Each notification: every alert is mapped to a deployment by its ``deployment`` label (falling back to
``model_name``), stored as an ``alerts`` row and attached to the deployment's open incident (opened on the
first firing alert, resolved when its last alert resolves); then, per deployment, the alerts still firing
are handed to ``sink(deployment, alerts)`` as :class:`specops.rollout.Alert` observations — the local
runtime and the operator feed them to the rollout brain, whose automatic policy rolls back a canary (or a
freshly promoted version) on a page. Every step is an audit event: ``alert.received``,
``incident.opened``, ``incident.resolved``, ``alert.forwarded`` (or ``alert.forward_failed``).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from specops.monitoring import names
from specops.rollout.model import Alert, Role

ACTOR = "specops-alert-receiver"
WEBHOOK_PATH = "/alertmanager"

Sink = Callable[[str, tuple[Alert, ...]], None]

log = logging.getLogger(__name__)


class AlertmanagerAlert(BaseModel):
    """One alert of a webhook notification."""

    model_config = ConfigDict(extra="ignore")

    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    fingerprint: str = ""
    generatorURL: str = ""


class AlertmanagerNotification(BaseModel):
    """Alertmanager's webhook payload (version 4)."""

    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: str = "firing"
    receiver: str = ""
    groupKey: str = ""
    alerts: list[AlertmanagerAlert] = Field(default_factory=list)


def deployment_of(labels: dict[str, str]) -> str | None:
    """The deployment an alert is about: its ``deployment`` label, else ``model_name``."""
    return labels.get(names.LABEL_DEPLOYMENT) or labels.get(names.LABEL_MODEL) or None


def to_rollout_alert(alert: AlertmanagerAlert) -> Alert:
    """Alertmanager labels ``alertname``, ``severity``, ``role``, ``pair_version`` → a brain observation."""
    labels = alert.labels
    role_label = labels.get(names.LABEL_ROLE, "")
    role = {"canary": Role.CANARY, "stable": Role.STABLE, "production": Role.STABLE}.get(role_label)
    summary = alert.annotations.get("summary") or alert.annotations.get("description", "")
    return Alert(
        name=labels.get("alertname", "unnamed"),
        severity=labels.get(names.LABEL_SEVERITY, ""),
        role=role,
        version=labels.get(names.LABEL_VERSION) or None,
        summary=summary,
    )


class ReceiverMetrics:
    """The receiver's counters on their own registry (served at ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.notifications = Counter(
            names.RECEIVER_NOTIFICATIONS.removesuffix("_total"),
            "Alertmanager notifications by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.unauthorized = Counter(
            names.RECEIVER_UNAUTHORIZED.removesuffix("_total"),
            "Webhook calls refused for a missing or wrong bearer token.",
            registry=self.registry,
        )
        self.alerts = Counter(
            names.RECEIVER_ALERTS.removesuffix("_total"),
            "Alerts received by status and severity.",
            ["status", "severity"],
            registry=self.registry,
        )


def create_app(
    *,
    token: str,
    sink: Sink,
    store: Any = None,
    audit: Any = None,
    metrics: ReceiverMetrics | None = None,
    extra_registries: tuple[CollectorRegistry, ...] = (),
    textfile_dir: Path | None = None,
) -> FastAPI:
    """The receiver as a FastAPI (ASGI) app.

    token: the bearer token Alertmanager must send (empty is refused: the receiver is never open).
    sink: called once per deployment with the alerts still firing for it.
    store: a :class:`specops.governance.store.Store` for incidents and alerts (None: not recorded).
    audit: anything with ``append(actor=, action=, subject=, payload=)`` (None: not audited).
    extra_registries: more registries served at ``/metrics``.
    textfile_dir: a folder of ``*.prom`` text files (the drift gauges ``specops drift run`` writes) served
        at ``/metrics`` after the receiver's own counters.
    """
    if not token:
        raise ValueError("the alert receiver needs a non-empty bearer token")
    counters = metrics or ReceiverMetrics()
    app = FastAPI(title="SpecOps alert receiver", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = counters
    expected = f"Bearer {token}".encode()
    record_lock = threading.Lock()

    def _audit(action: str, subject: str, payload: dict[str, Any]) -> None:
        if audit is not None:
            audit.append(actor=ACTOR, action=action, subject=subject, payload=payload)

    @app.post(WEBHOOK_PATH)
    async def webhook(request: Request) -> Response:
        supplied = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(supplied, expected):
            counters.unauthorized.inc()
            counters.notifications.labels("unauthorized").inc()
            return JSONResponse(
                {"error": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            notification = AlertmanagerNotification.model_validate_json(await request.body())
        except ValueError as error:
            counters.notifications.labels("invalid").inc()
            problems = error.errors() if isinstance(error, ValidationError) else [{"msg": str(error)}]
            return JSONResponse(
                {"error": f"not an Alertmanager notification: {problems[0].get('msg')}"}, status_code=422
            )
        try:
            forwarded = await run_in_threadpool(_handle, notification)
        except Exception as error:  # answer 500 so that Alertmanager retries; never crash the server
            log.exception("alert notification failed")
            counters.notifications.labels("failed").inc()
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)
        counters.notifications.labels("accepted").inc()
        return JSONResponse({"deployments": forwarded})

    def _handle(notification: AlertmanagerNotification) -> dict[str, int]:
        by_deployment: dict[str, list[AlertmanagerAlert]] = {}
        for alert in notification.alerts:
            counters.alerts.labels(alert.status, alert.labels.get(names.LABEL_SEVERITY, "")).inc()
            deployment = deployment_of(alert.labels)
            if deployment is None:
                _audit(
                    "alert.unmapped",
                    alert.labels.get("alertname", "unnamed"),
                    {"labels": alert.labels, "status": alert.status},
                )
                continue
            by_deployment.setdefault(deployment, []).append(alert)
        forwarded: dict[str, int] = {}
        for deployment, alerts in by_deployment.items():
            for alert in alerts:
                _audit("alert.received", deployment, _alert_payload(alert))
            if store is not None:
                _record(deployment, alerts)
            firing = tuple(to_rollout_alert(a) for a in alerts if a.status == "firing")
            if not firing:
                continue
            payload = {
                "alerts": [
                    {"name": a.name, "severity": a.severity, "role": a.role and a.role.value, "version": a.version}
                    for a in firing
                ]
            }
            try:
                sink(deployment, firing)
            except Exception as error:
                _audit("alert.forward_failed", deployment, {**payload, "error": f"{type(error).__name__}: {error}"})
                raise
            _audit("alert.forwarded", deployment, payload)
            forwarded[deployment] = len(firing)
        return forwarded

    def _record(deployment: str, alerts: list[AlertmanagerAlert]) -> None:
        # Notifications arrive concurrently (one per alert group): serialise them here, and take the
        # database's write lock up front (SQLite: BEGIN IMMEDIATE) so that two receivers cannot deadlock.
        # The incident events are audited after the commit (the audit log takes the database lock
        # itself) but still under `record_lock`, so that another notification cannot forward its
        # alerts before the incident they belong to is on record.
        with record_lock:
            with store.write_connection() as connection, Session(bind=connection) as session:
                events = _record_in(session, deployment, alerts)
            for action, payload in events:
                _audit(action, deployment, payload)

    def _record_in(
        session: Session, deployment: str, alerts: list[AlertmanagerAlert]
    ) -> list[tuple[str, dict[str, Any]]]:
        from specops.governance import models

        events: list[tuple[str, dict[str, Any]]] = []
        incident = (
            session.query(models.Incident)
            .filter_by(deployment=deployment, status="open")
            .order_by(models.Incident.id.desc())
            .first()
        )
        opened = None
        for alert in alerts:
            fingerprint = alert.fingerprint or _fingerprint(alert.labels)
            starts = _utc(alert.startsAt) or datetime.now(UTC)
            row = session.query(models.Alert).filter_by(fingerprint=fingerprint, starts_at=starts).first()
            if alert.status == "firing" and incident is None:
                incident = opened = models.Incident(
                    deployment=deployment,
                    title=f"{alert.labels.get('alertname', 'alert')} on {deployment}",
                    severity=alert.labels.get(names.LABEL_SEVERITY, "info") or "info",
                    summary=alert.annotations.get("summary", ""),
                )
                session.add(incident)
                session.flush()
            if (
                incident is not None
                and alert.status == "firing"
                and _rank(alert.labels.get(names.LABEL_SEVERITY, "")) > _rank(incident.severity)
            ):
                incident.severity = alert.labels[names.LABEL_SEVERITY]
            if row is None:
                row = models.Alert(
                    fingerprint=fingerprint,
                    name=alert.labels.get("alertname", "unnamed"),
                    status=alert.status,
                    severity=alert.labels.get(names.LABEL_SEVERITY, ""),
                    starts_at=starts,
                    labels=dict(alert.labels),
                    annotations=dict(alert.annotations),
                )
                session.add(row)
            row.status = alert.status
            row.ends_at = _utc(alert.endsAt) if alert.status == "resolved" else None
            if row.incident_id is None and incident is not None:
                row.incident = incident
        session.flush()
        if opened is not None:
            events.append(
                ("incident.opened", {"incident": opened.id, "title": opened.title, "severity": opened.severity})
            )
        if incident is not None and incident.status == "open":
            still_firing = session.query(models.Alert).filter_by(incident_id=incident.id, status="firing").count()
            if still_firing == 0:
                incident.status = "resolved"
                incident.resolved_at = datetime.now(UTC)
                events.append(("incident.resolved", {"incident": incident.id}))
        session.flush()
        return events

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body = generate_latest(counters.registry) + b"".join(generate_latest(r) for r in extra_registries)
        if textfile_dir is not None and textfile_dir.is_dir():
            for path in sorted(textfile_dir.glob("*.prom")):
                try:
                    body += path.read_bytes()
                except OSError:  # a file being replaced right now is served next scrape
                    continue
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _alert_payload(alert: AlertmanagerAlert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "fingerprint": alert.fingerprint,
        "starts_at": alert.startsAt.isoformat() if alert.startsAt else None,
    }


def _fingerprint(labels: dict[str, str]) -> str:
    import hashlib

    text = "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.year < 1970:  # Alertmanager sends 0001-01-01 for "not ended"
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rank(severity: str) -> int:
    return {"page": 2, "ticket": 1}.get(severity, 0)
