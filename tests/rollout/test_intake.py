"""The intake: which single controller call a round of either body makes, driven with plain data."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from specops.rollout import Alert, ManualAction, Phase, Role, RolloutState, intake
from specops.rollout.intake import CanaryTraffic, Intake, Step

INTERVAL_S = 60.0
NOW = 1_000.0

PROMOTED = RolloutState(deployment="d", pair="p", stable_version="1", phase=Phase.PROMOTED)
BAKING = replace(PROMOTED, stable_version="2", previous_version="1", promoted_at=NOW - 5)
CANARY = RolloutState(deployment="d", pair="p", stable_version="1", canary_version="2", phase=Phase.PROGRESSING)
PAUSED = replace(CANARY, phase=Phase.PAUSED)
PROMOTING = replace(PROMOTED, stable_version="2", previous_version="1", phase=Phase.PROMOTING)
ROLLING_BACK = replace(CANARY, phase=Phase.ROLLING_BACK)
ROLLED_BACK = replace(PROMOTED, phase=Phase.ROLLED_BACK)
PENDING = RolloutState(deployment="d", pair="p")

PAGE = Alert(name="SpecOpsErrorBudgetBurn", severity="page", role=Role.CANARY)
TICKET = Alert(name="SpecOpsSlowBurn", severity="ticket", role=Role.CANARY)


def read(state: RolloutState, **fields: Any) -> Intake:
    """What a body read: ``state`` at NOW, an analysis window that began one interval ago unless said."""
    return Intake(
        **{"state": state, "now": NOW, "analysis_interval_s": INTERVAL_S, "window_started_at": NOW - INTERVAL_S}
        | fields
    )


@pytest.mark.parametrize(
    ("reading", "step"),
    [
        (read(CANARY, action="rollback", desired_version="3", alerts=(PAGE,)), Step.ACTION),
        (read(PROMOTED, desired_version="2", alerts=(PAGE,)), Step.BEGIN),
        (read(PENDING, desired_version="1"), Step.BEGIN),
        (read(ROLLED_BACK, desired_version="2"), Step.BEGIN),
        (read(PROMOTED, desired_version="1"), Step.WAIT),
        (read(CANARY, desired_version="3"), Step.ANALYSIS),
        (read(PAUSED, desired_version="3"), Step.WAIT),
        (read(PROMOTING, desired_version="3"), Step.PROMOTION),
        (read(ROLLING_BACK, desired_version="3"), Step.ROLLBACK),
        (read(PROMOTED, desired_version="2", rejected_version="2"), Step.WAIT),
        (read(CANARY, alerts=(PAGE,)), Step.ALERTS),
        (read(PROMOTING), Step.PROMOTION),
        (read(ROLLING_BACK), Step.ROLLBACK),
        (read(CANARY), Step.ANALYSIS),
        (read(CANARY, window_started_at=None), Step.ANALYSIS),
        (read(CANARY, window_started_at=NOW - INTERVAL_S + 1), Step.WAIT),
        (read(CANARY, window_started_at=NOW - INTERVAL_S + 0.005), Step.ANALYSIS),
        (read(CANARY, canary=CanaryTraffic.NOT_READY), Step.WAIT),
        (read(CANARY, canary=CanaryTraffic.READY), Step.WAIT),
        (read(PAUSED), Step.WAIT),
        (read(PROMOTED), Step.WAIT),
    ],
    ids=[
        "a-manual-action-comes-before-everything-else",
        "a-new-wanted-version-begins-before-alerts-are-handled",
        "the-first-version-begins-on-a-fresh-deployment",
        "a-new-version-begins-after-a-rollback",
        "the-stable-version-is-not-rolled-out-again",
        "a-new-version-waits-while-a-canary-runs",
        "a-new-version-waits-while-paused",
        "a-new-version-waits-while-a-promotion-is-applied",
        "a-new-version-waits-while-a-rollback-is-applied",
        "a-rejected-version-is-not-started-again",
        "alerts-come-before-the-analysis",
        "an-unconfirmed-promotion-is-applied-again",
        "an-unconfirmed-rollback-is-applied-again",
        "an-analysis-is-due-after-one-interval",
        "an-analysis-is-due-when-no-window-began",
        "an-analysis-is-not-due-within-the-interval",
        "an-analysis-a-timer-wakes-slightly-early-for-is-due",
        "a-canary-that-is-not-ready-is-not-analysed",
        "a-ready-canary-not-yet-routed-is-not-analysed",
        "a-paused-canary-is-not-analysed",
        "a-healthy-production-version-has-nothing-due",
    ],
)
def test_the_intake_chooses_one_controller_call(reading: Intake, step: Step) -> None:
    assert intake.plan(reading).step is step


@pytest.mark.parametrize(
    ("state", "alerts", "pages"),
    [
        (CANARY, (PAGE, TICKET), (PAGE,)),
        (BAKING, (PAGE,), (PAGE,)),
        (CANARY, (TICKET,), ()),
        (PAUSED, (PAGE,), ()),
        (ROLLED_BACK, (PAGE,), ()),
        (CANARY, (), ()),
    ],
    ids=[
        "a-canary-takes-only-the-pages-of-a-batch",
        "a-promoted-version-takes-pages-while-baking",
        "tickets-alone-are-only-acknowledged",
        "a-paused-canary-takes-no-alerts",
        "a-rolled-back-deployment-takes-no-alerts",
        "an-empty-batch-is-only-acknowledged",
    ],
)
def test_alerts_pass_on_the_pages_the_phase_takes(
    state: RolloutState, alerts: tuple[Alert, ...], pages: tuple[Alert, ...]
) -> None:
    plan = intake.plan(read(state, alerts=alerts))
    assert (plan.step, plan.alerts) == (Step.ALERTS, pages)


@pytest.mark.parametrize(
    ("reading", "again"),
    [
        (read(CANARY, action="pause"), False),
        (read(CANARY, action="pause", desired_version="2"), True),
        (read(CANARY, action="pause", alerts=()), True),
        (read(PROMOTED, desired_version="2"), False),
        (read(PROMOTED, desired_version="2", alerts=(PAGE,)), True),
        (read(CANARY, alerts=(PAGE,)), False),
    ],
    ids=[
        "an-action-alone-leaves-nothing-waiting",
        "an-action-with-a-wanted-version-comes-back-at-once",
        "an-action-with-alerts-waiting-comes-back-at-once",
        "a-start-alone-leaves-nothing-waiting",
        "a-start-with-alerts-waiting-comes-back-at-once",
        "alerts-leave-nothing-waiting",
    ],
)
def test_a_round_that_leaves_a_request_waiting_comes_back_at_once(reading: Intake, again: bool) -> None:
    assert intake.plan(reading).again is again


def test_an_action_is_passed_on_as_a_manual_action() -> None:
    plan = intake.plan(read(CANARY, action="rollback"))
    assert (plan.action, plan.refusal) == (ManualAction.ROLLBACK, None)


def test_an_unknown_action_is_refused_with_a_message_and_no_call() -> None:
    plan = intake.plan(read(CANARY, action="explode"))
    assert (plan.step, plan.action) == (Step.ACTION, None)
    assert plan.refusal == "ignored: unknown action 'explode' (expected promote, rollback, pause or resume)"


def test_a_start_begins_the_wanted_version_and_its_first_window() -> None:
    plan = intake.plan(read(PROMOTED, desired_version="2"))
    assert (plan.version, plan.window_started_at) == ("2", NOW)


def test_a_ready_canary_not_yet_routed_starts_its_first_window_now() -> None:
    plan = intake.plan(read(CANARY, canary=CanaryTraffic.READY))
    assert (plan.window_started_at, plan.waiting_for_canary) == (NOW, False)


def test_a_canary_that_is_not_ready_is_reported_waiting_and_keeps_its_window() -> None:
    plan = intake.plan(read(CANARY, canary=CanaryTraffic.NOT_READY))
    assert (plan.window_started_at, plan.waiting_for_canary) == (NOW - INTERVAL_S, True)


@pytest.mark.parametrize(
    ("desired", "rejected"),
    [("2", "2"), ("3", None), (None, "2")],
    ids=["still-wanted-stays-rejected", "a-new-wanted-version-clears-it", "an-unresolved-version-keeps-it"],
)
def test_the_rejected_version_is_kept_until_the_wanted_version_moves_on(
    desired: str | None, rejected: str | None
) -> None:
    assert intake.plan(read(PROMOTED, desired_version=desired, rejected_version="2")).rejected_version == rejected


@pytest.mark.parametrize(
    ("before", "after", "rejected"),
    [
        (CANARY, replace(CANARY, phase=Phase.ROLLED_BACK, canary_version=None), "2"),
        (ROLLING_BACK, replace(CANARY, phase=Phase.ROLLED_BACK, canary_version=None), "2"),
        (BAKING, replace(BAKING, phase=Phase.ROLLED_BACK, stable_version="1"), "2"),
        (ROLLED_BACK, ROLLED_BACK, "9"),
        (CANARY, replace(CANARY, weight=50), "9"),
    ],
    ids=[
        "a-rolled-back-canary-is-rejected",
        "a-rollback-applied-again-rejects-the-canary",
        "a-rolled-back-promotion-rejects-the-promoted-version",
        "an-old-rollback-keeps-what-was-rejected",
        "a-round-without-rollback-keeps-what-was-rejected",
    ],
)
def test_a_fresh_rollback_rejects_what_it_undid(before: RolloutState, after: RolloutState, rejected: str) -> None:
    assert intake.rejected_after(before, after, rejected_version="9") == rejected


@pytest.mark.parametrize(
    ("state", "action", "refusal"),
    [
        (CANARY, ManualAction.PROMOTE, None),
        (CANARY, ManualAction.PAUSE, None),
        (PAUSED, ManualAction.RESUME, None),
        (PAUSED, ManualAction.ROLLBACK, None),
        (BAKING, ManualAction.ROLLBACK, None),
        (PROMOTED, ManualAction.ROLLBACK, "nothing to rollback in phase Promoted"),
        (BAKING, ManualAction.PROMOTE, "nothing to promote in phase Promoted"),
        (ROLLED_BACK, ManualAction.ROLLBACK, "nothing to rollback in phase RolledBack"),
        (PROMOTING, ManualAction.ROLLBACK, "Promoting to 2 is still being applied"),
    ],
    ids=[
        "a-canary-can-be-promoted",
        "a-canary-can-be-paused",
        "a-paused-canary-can-be-resumed",
        "a-paused-canary-can-be-rolled-back",
        "a-promotion-with-a-previous-version-can-be-rolled-back",
        "a-first-version-has-nothing-to-roll-back-to",
        "a-promoted-version-cannot-be-promoted-again",
        "a-rolled-back-deployment-has-nothing-to-roll-back",
        "nothing-moves-while-a-promotion-is-applied",
    ],
)
def test_manual_actions_are_accepted_in_the_phases_the_brain_acts_on(
    state: RolloutState, action: ManualAction, refusal: str | None
) -> None:
    assert intake.action_refusal(state, action) == refusal


@pytest.mark.parametrize(
    ("window_started_at", "seconds"),
    [(NOW - 20, 40.0), (None, 0.05), (NOW - 600, 0.05), (NOW, INTERVAL_S)],
    ids=["the-rest-of-the-interval", "at-once-without-a-window", "at-once-when-overdue", "a-whole-interval-after-one"],
)
def test_the_next_analysis_is_due_after_the_rest_of_the_interval(
    window_started_at: float | None, seconds: float
) -> None:
    assert intake.next_analysis_in(NOW, window_started_at, interval_s=INTERVAL_S) == pytest.approx(seconds)
