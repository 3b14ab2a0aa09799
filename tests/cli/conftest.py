"""Fixtures of the CLI tests: a SpecOps home holding deployments mid-rollout and their audit events."""

from __future__ import annotations

from pathlib import Path

import pytest

from specops.governance import audit, store
from specops.local.state_files import FileStateStore
from specops.rollout.model import CanaryAnalysis, Phase, RolloutState, Transition, Verdict

STARTED_AT = 1_735_689_600.0  # 2025-01-01T00:00:00Z


@pytest.fixture
def deployment_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SPECOPS_HOME with two deployments: one canary waiting for a verdict, one rolled back."""
    home = tmp_path / "home"
    monkeypatch.setenv("SPECOPS_HOME", str(home))
    monkeypatch.setenv("SPECOPS_DATABASE_URL", f"sqlite:///{home / 'governance.db'}")
    home.mkdir()
    states = FileStateStore(home)
    waiting = CanaryAnalysis(
        verdict=Verdict.INCONCLUSIVE, checks=(), samples=3, reason="3 of 20 samples in the window so far"
    )
    states.save(
        RolloutState(
            deployment="checkout-assistant",
            pair="stdlib-coder-distilled",
            stable_version="12",
            canary_version="13",
            phase=Phase.PROGRESSING,
            weight=25,
            inconclusive_s=42.0,
            last_analysis=waiting,
            history=(
                Transition(STARTED_AT, Phase.PENDING, Phase.PROGRESSING, 10, "canary 13 started at 10%"),
                Transition(STARTED_AT + 300, Phase.PROGRESSING, Phase.PROGRESSING, 25, "analysis passed: step 2"),
            ),
        )
    )
    failed = CanaryAnalysis(verdict=Verdict.FAIL, checks=(), samples=40, reason="acceptance_rate 0.12 < 0.5")
    states.save(
        RolloutState(
            deployment="demo",
            pair="stdlib-coder",
            stable_version="1",
            previous_version="2",
            phase=Phase.ROLLED_BACK,
            weight=0,
            last_analysis=failed,
            history=(Transition(STARTED_AT, Phase.PROGRESSING, Phase.ROLLED_BACK, 0, "acceptance_rate failed"),),
        )
    )
    log = audit.AuditLog(store.open_store(f"sqlite:///{home / 'governance.db'}"))
    log.append(actor="rollout-controller", action="rollout.start_canary", subject="checkout-assistant")
    log.append(actor="cli:alice", action="rollout.pause", subject="checkout-assistant")
    return home
