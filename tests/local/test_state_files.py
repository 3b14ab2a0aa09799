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
