"""Approvals: the policy can require one before production; require_approval says why not."""

from __future__ import annotations

import pytest

from specops.errors import Conflict, InvalidInput
from specops.governance import approvals, audit
from specops.governance.store import Store


def test_without_the_policy_no_approval_is_needed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECOPS_REQUIRE_APPROVAL", raising=False)
    approvals.require_approval(store, "tiny", "1")


def test_with_the_policy_an_unapproved_version_is_refused_with_the_command_to_run(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPECOPS_REQUIRE_APPROVAL", raising=False)
    approvals.set_approval_policy(store, required=True, actor="carol")
    with pytest.raises(Conflict, match=r"specops approve tiny 1 --by WHO"):
        approvals.require_approval(store, "tiny", "1")
    approvals.approve(store, "tiny", "1", by="dave", note="CAB-42")
    approvals.require_approval(store, "tiny", "1")
    with pytest.raises(Conflict):
        approvals.require_approval(store, "tiny", "2")
    actions = [event.action for event in audit.AuditLog(store).events()]
    assert actions == ["policy.set", "version.approve"]
    assert audit.AuditLog(store).verify().ok


def test_the_environment_overrides_the_stored_policy(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    approvals.set_approval_policy(store, required=False, actor="carol")
    monkeypatch.setenv("SPECOPS_REQUIRE_APPROVAL", "1")
    assert approvals.approval_required(store)
    monkeypatch.setenv("SPECOPS_REQUIRE_APPROVAL", "false")
    approvals.set_approval_policy(store, required=True, actor="carol")
    assert not approvals.approval_required(store)


def test_approving_twice_is_a_conflict_and_writes_one_event(store: Store) -> None:
    approvals.approve(store, "tiny", "1", by="dave")
    with pytest.raises(Conflict, match="already approved"):
        approvals.approve(store, "tiny", "1", by="dave")
    assert [record.approved_by for record in approvals.approvals(store, "tiny")] == ["dave"]
    assert audit.AuditLog(store).count() == 1


def test_an_approval_needs_a_name(store: Store) -> None:
    with pytest.raises(InvalidInput):
        approvals.approve(store, "tiny", "1", by=" ")
