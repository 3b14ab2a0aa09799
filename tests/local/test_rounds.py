"""The local body's rounds: the same intake as the operator, over state files and in-memory ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from specops.local.state_files import FileStateStore
from specops.local.wiring import LocalDeployment
from specops.rollout import Alert, DecisionKind, ManualAction, Phase, Role, RolloutPolicy, RolloutState
from specops.rollout.intake import Step
from tests.support.canary_windows import bad
from tests.support.in_memory_ports import Recorder

POLICY = RolloutPolicy(steps=(10, 50, 100), analysis_interval_s=10.0, min_draft_tokens=100, min_requests=5)
PAGE = Alert(name="SpecOpsErrorBudgetBurn", severity="page", role=Role.CANARY)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(canary_window=bad())


@pytest.fixture
def local(tmp_path: Path, recorder: Recorder) -> LocalDeployment:
    """A local runtime with version 1 in production, its ports recorded in memory (no processes)."""
    states = FileStateStore(tmp_path)
    states.save(RolloutState(deployment="demo", pair="p", stable_version="1", phase=Phase.PROMOTED))
    unused: Any = None  # the processes, router, scraper and registry: a round reaches them through the controller
    return LocalDeployment(
        settings=unused,
        deployment="demo",
        pair="p",
        policy=POLICY,
        audit=recorder,
        registry=unused,
        states=states,
        router=unused,
        backend=unused,
        metrics=unused,
        controller=recorder.controller(POLICY, states=states),
    )


def test_rounds_begin_the_wanted_version_analyse_it_and_never_begin_it_again_after_a_rollback(
    local: LocalDeployment,
) -> None:
    begun = local.run_round(desired_version="2", now=0.0)
    assert (begun.plan.step, begun.decision and begun.decision.kind) == (Step.BEGIN, DecisionKind.START_CANARY)
    assert begun.next_in == pytest.approx(POLICY.analysis_interval_s)
    early = local.run_round(desired_version="2", now=5.0)
    assert (early.plan.step, early.decision) == (Step.WAIT, None)
    steps = [local.run_round(desired_version="2", now=now).plan.step for now in (10.0, 20.0)]
    assert steps == [Step.ANALYSIS, Step.ANALYSIS]
    assert local.controller.state().phase is Phase.ROLLED_BACK
    assert local.rejected_version == "2"
    after = local.run_round(desired_version="2", now=30.0)
    assert (after.plan.step, after.after.stable_version) == (Step.WAIT, "1")


def test_a_manual_action_left_by_the_cli_is_taken_before_an_analysis(
    local: LocalDeployment, recorder: Recorder
) -> None:
    local.run_round(desired_version="2", now=0.0)
    local.states.request("demo", ManualAction.PAUSE)
    paused = local.run_round(now=10.0)
    assert (paused.plan.step, paused.after.phase) == (Step.ACTION, Phase.PAUSED)
    assert "window canary" not in recorder.calls
    assert local.states.take_request("demo") is None  # consumed


def test_alerts_posted_with_an_action_are_held_for_the_next_round(local: LocalDeployment) -> None:
    local.run_round(desired_version="2", now=0.0)
    local.states.request("demo", ManualAction.PAUSE)
    local.states.post_alerts("demo", (PAGE,))
    acted = local.run_round(now=1.0)
    assert (acted.plan.step, acted.next_in) == (Step.ACTION, 0.0)
    alerted = local.run_round(now=1.5)
    assert (alerted.plan.step, alerted.plan.alerts) == (Step.ALERTS, ())  # a paused canary takes no alerts
    assert local.held_alerts is None
