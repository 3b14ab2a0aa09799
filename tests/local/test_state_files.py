"""Deployment state files: atomic saves, one pending manual action at a time, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from specops.errors import Conflict, NotFound
from specops.local.state_files import FileStateStore
from specops.rollout.model import ManualAction, Phase, RolloutState


@pytest.fixture
def store(tmp_path: Path) -> FileStateStore:
    states = FileStateStore(tmp_path)
    states.save(RolloutState(deployment="demo", pair="p", stable_version="1", phase=Phase.PROMOTED))
    return states


def test_saved_state_loads_back(store: FileStateStore) -> None:
    assert store.require("demo").stable_version == "1"
    assert store.names() == ["demo"]


def test_unknown_deployment_names_the_known_ones(store: FileStateStore) -> None:
    with pytest.raises(NotFound, match=r"unknown deployment 'nope' \(known: demo\)"):
        store.require("nope")


def test_a_second_pending_request_is_refused(store: FileStateStore) -> None:
    store.request("demo", ManualAction.ROLLBACK)
    with pytest.raises(Conflict, match="rollback request is already pending"):
        store.request("demo", ManualAction.ROLLBACK)
    assert store.take_request("demo") is ManualAction.ROLLBACK
    assert store.take_request("demo") is None


def test_a_runtime_is_live_only_while_attached(store: FileStateStore) -> None:
    assert store.runtime_pid("demo") is None
    store.attach("demo")
    assert store.runtime_pid("demo") is not None
    store.detach("demo")
    assert store.runtime_pid("demo") is None


def test_alerts_posted_by_the_receiver_are_taken_once(store: FileStateStore) -> None:
    from specops.rollout.model import Alert, Role

    page = Alert(name="SpecOpsAcceptanceRateBudgetBurn", severity="page", role=Role.CANARY, version="2")
    store.post_alerts("demo", (page,))
    assert store.take_alerts("demo") == (page,)
    assert store.take_alerts("demo") == ()


def test_the_receiver_hands_a_page_to_the_local_runtime(store: FileStateStore) -> None:
    from starlette.testclient import TestClient

    from specops.monitoring.receiver import create_app

    client = TestClient(create_app(token="t", sink=store.post_alerts))
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "SpecOpsAcceptanceRateBudgetBurn",
            "severity": "page",
            "deployment": "demo",
            "role": "canary",
            "pair_version": "2",
        },
        "annotations": {},
        "startsAt": "2026-11-27T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "f1",
    }
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "specops",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": [alert],
        "groupKey": "{}:{}",
    }
    response = client.post("/alertmanager", json=body, headers={"authorization": "Bearer t"})
    assert response.status_code == 200, response.text
    [taken] = store.take_alerts("demo")
    assert (taken.severity, taken.version) == ("page", "2")
