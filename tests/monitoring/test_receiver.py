"""The Alertmanager webhook receiver: authenticated, recorded as incidents, forwarded to the rollout brain."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from specops.governance import models
from specops.monitoring import receiver
from specops.rollout.model import Alert, Role

TOKEN = "s3cret-token"


def _alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    base = {
        "alertname": "SpecOpsAcceptanceRateBudgetBurn",
        "severity": "page",
        "deployment": "chat",
        "role": "canary",
        "pair_version": "2",
        "slo": "acceptance-rate",
    }
    base.update(labels)
    return {
        "status": status,
        "labels": base,
        "annotations": {"summary": "chat canary 2: SLO acceptance-rate is burning its error budget (page)"},
        "startsAt": "2026-11-27T04:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T04:05:00.000Z",
        "fingerprint": f"fp-{base['deployment']}-{base['severity']}",
        "generatorURL": "http://prom/graph",
    }


def _notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "status": alerts[0]["status"] if alerts else "firing",
        "receiver": "specops",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Alert, ...]]] = []

    def __call__(self, deployment: str, alerts: tuple[Alert, ...]) -> None:
        self.calls.append((deployment, alerts))


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def client(sink: Sink, store, audit) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(receiver.create_app(token=TOKEN, sink=sink, store=store, audit=audit))


def _post(client: TestClient, body: dict[str, Any], token: str | None = TOKEN):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(receiver.WEBHOOK_PATH, json=body, headers=headers)


@pytest.mark.parametrize("token", [None, "wrong", ""], ids=["missing", "wrong", "empty"])
def test_a_missing_or_wrong_token_is_refused_and_counted(client: TestClient, sink: Sink, token: str | None) -> None:
    response = _post(client, _notification(_alert()), token=token)
    assert response.status_code == 401
    assert sink.calls == []
    metrics = client.get("/metrics").text
    assert "specops_alert_receiver_unauthorized_total 1.0" in metrics


def test_a_page_alert_reaches_the_sink_as_a_rollout_alert(client: TestClient, sink: Sink) -> None:
    response = _post(client, _notification(_alert()))
    assert response.status_code == 200, response.text
    assert response.json() == {"deployments": {"chat": 1}}
    [(deployment, alerts)] = sink.calls
    assert deployment == "chat"
    summary = "chat canary 2: SLO acceptance-rate is burning its error budget (page)"
    assert alerts == (
        Alert(name="SpecOpsAcceptanceRateBudgetBurn", severity="page", role=Role.CANARY, version="2", summary=summary),
    )


def test_firing_alerts_open_one_incident_and_resolving_closes_it(client: TestClient, store, audit) -> None:  # type: ignore[no-untyped-def]
    _post(client, _notification(_alert()))
    _post(client, _notification(_alert()))  # Alertmanager repeats: no second row, no second incident
    _post(client, _notification(_alert(severity="ticket")))
    with store.session() as session:
        [incident] = session.query(models.Incident).all()
        assert (incident.deployment, incident.status, incident.severity) == ("chat", "open", "page")
        assert session.query(models.Alert).count() == 2
    _post(client, _notification(_alert("resolved"), _alert("resolved", severity="ticket")))
    with store.session() as session:
        [incident] = session.query(models.Incident).all()
        assert incident.status == "resolved" and incident.resolved_at is not None
        assert {a.status for a in session.query(models.Alert)} == {"resolved"}
    actions = [event.action for event in audit.events(subject="chat")]
    assert actions.count("incident.opened") == 1
    assert actions.count("incident.resolved") == 1
    assert actions.count("alert.forwarded") == 3
    assert audit.verify().ok


def test_resolved_alerts_are_recorded_but_not_forwarded(client: TestClient, sink: Sink) -> None:
    _post(client, _notification(_alert("resolved")))
    assert sink.calls == []


def test_alerts_are_mapped_to_deployments_by_label(client: TestClient, sink: Sink) -> None:
    _post(
        client,
        _notification(
            _alert(deployment="chat"),
            _alert(deployment="code", role="stable", pair_version="7"),
            _alert(deployment="", model_name="summarise"),
        ),
    )
    assert sorted(call[0] for call in sink.calls) == ["chat", "code", "summarise"]
    code = dict(sink.calls)["code"][0]
    assert (code.role, code.version) == (Role.STABLE, "7")


def test_an_alert_without_a_deployment_is_audited_not_forwarded(client: TestClient, sink: Sink, audit) -> None:  # type: ignore[no-untyped-def]
    _post(client, _notification(_alert(deployment="")))
    assert sink.calls == []
    assert [e.action for e in audit.events()] == ["alert.unmapped"]


def test_a_failing_sink_answers_500_so_alertmanager_retries(store, audit) -> None:  # type: ignore[no-untyped-def]
    def broken(deployment: str, alerts: tuple[Alert, ...]) -> None:
        raise RuntimeError("runtime unreachable")

    client = TestClient(receiver.create_app(token=TOKEN, sink=broken, store=store, audit=audit))
    response = _post(client, _notification(_alert()))
    assert response.status_code == 500
    assert "runtime unreachable" in response.json()["error"]
    assert "alert.forward_failed" in [e.action for e in audit.events()]


def test_garbage_is_a_422_not_a_crash(client: TestClient) -> None:
    response = client.post(receiver.WEBHOOK_PATH, content=b"{not json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422
    assert client.get("/healthz").json() == {"status": "ok"}


def test_an_empty_token_is_refused_at_construction(sink: Sink) -> None:
    with pytest.raises(ValueError, match="non-empty bearer token"):
        receiver.create_app(token="", sink=sink)


def test_metrics_also_serve_the_drift_gauge_files(tmp_path, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    from specops.monitoring import drift, drift_gauges

    gauges = drift_gauges.DriftGauges()
    result = drift.DriftResult(
        drifted=True,
        drift_share=0.5,
        drifted_share=0.6,
        reference_rows=100,
        current_rows=100,
        columns=(drift.ColumnDrift("prompt", "Percentile text content drift", 0.99, "roc_auc", 0.95, True),),
    )
    gauges.publish(result, deployment="chat", version="2", at=1.0)
    gauges.write(tmp_path / "drift-chat.prom")
    client = TestClient(receiver.create_app(token=TOKEN, sink=sink, textfile_dir=tmp_path))
    text = client.get("/metrics").text
    assert 'specops_drift_detected{deployment="chat",pair_version="2"} 1.0' in text
    assert "specops_alert_receiver_unauthorized_total 0.0" in text
