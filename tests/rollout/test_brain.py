"""Every transition of the rollout brain, driven with plain data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from specops.rollout import (
    Alert,
    DecisionKind,
    ManualAction,
    Observation,
    Phase,
    Role,
    RolloutPolicy,
    RolloutState,
    WindowMetrics,
    brain,
)
from tests.support.canary_windows import bad, good, thin


def applied(state: RolloutState, now: float) -> RolloutState:
    """The state once the adapters applied the decision that led to it (as the controller settles it)."""
    return brain.settle(state, now=now)


def test_first_version_goes_straight_to_production(policy: RolloutPolicy) -> None:
    state, decision = brain.start(RolloutState(deployment="d", pair="p"), version="1", policy=policy, now=1.0)
    assert decision.kind is DecisionKind.PROMOTE
    assert (state.phase, state.stable_version, state.canary_version) == (Phase.PROMOTING, "1", None)
    assert applied(state, 2.0).phase is Phase.PROMOTED


def test_new_version_starts_as_canary_at_first_step(canarying: RolloutState) -> None:
    assert (canarying.phase, canarying.canary_version, canarying.weight) == (Phase.PROGRESSING, "2", 10)


def test_a_second_rollout_while_one_runs_is_refused(canarying: RolloutState, policy: RolloutPolicy) -> None:
    with pytest.raises(brain.RolloutRefused, match="still Progressing"):
        brain.start(canarying, version="3", policy=policy, now=2.0)


def test_rolling_out_the_stable_version_is_refused(policy: RolloutPolicy) -> None:
    state = RolloutState(deployment="d", pair="p", stable_version="1", phase=Phase.PROMOTED)
    with pytest.raises(brain.RolloutRefused, match="already the stable"):
        brain.start(state, version="1", policy=policy, now=0.0)


@pytest.mark.parametrize("window", [None, thin(), WindowMetrics()], ids=["no-data", "thin", "zeros"])
def test_too_little_data_waits_and_never_promotes_or_aborts(
    canarying: RolloutState, policy: RolloutPolicy, window: WindowMetrics | None
) -> None:
    state = canarying
    for tick in range(20):
        state, decision = brain.decide(state, Observation(now=float(tick), canary=window), policy)
        assert decision.kind is DecisionKind.HOLD
        assert "waiting for data" in decision.reason
    assert (state.phase, state.weight, state.consecutive_failures) == (Phase.PROGRESSING, 10, 0)


def test_good_canary_advances_through_every_step_then_promotes(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, kinds, weights = canarying, [], []
    for tick in range(3):
        state, decision = brain.decide(state, Observation(now=float(tick), canary=good()), policy)
        state = applied(state, float(tick))
        kinds.append(decision.kind)
        weights.append(state.weight)
    assert kinds == [DecisionKind.SET_WEIGHT, DecisionKind.PROMOTE, DecisionKind.HOLD]
    assert weights == [50, 0, 0]
    assert (state.phase, state.stable_version, state.previous_version) == (Phase.PROMOTED, "2", "1")


def test_bad_canary_rolls_back_at_the_failure_limit(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, first = brain.decide(canarying, Observation(now=1.0, canary=bad()), policy)
    assert first.kind is DecisionKind.HOLD and state.consecutive_failures == 1
    assert "acceptance_rate 0.100 (must be >= 0.3)" in first.reason
    state, second = brain.decide(state, Observation(now=2.0, canary=bad()), policy)
    assert second.kind is DecisionKind.ROLLBACK and second.version == "1"
    assert state.phase is Phase.ROLLING_BACK
    settled = brain.settle(state, now=3.0)
    assert (settled.phase, settled.canary_version, settled.stable_version) == (Phase.ROLLED_BACK, None, "1")


def test_a_pass_resets_the_failure_count(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=bad()), policy)
    state, _ = brain.decide(state, Observation(now=2.0, canary=good()), policy)
    assert state.consecutive_failures == 0


def test_nothing_is_judged_before_enough_requests(canarying: RolloutState, policy: RolloutPolicy) -> None:
    erring = WindowMetrics(num_requests=10, num_errors=5, num_drafts=100, num_draft_tokens=400, num_accepted_tokens=200)
    _, decision = brain.decide(canarying, Observation(now=1.0, canary=erring), policy)
    assert decision.analysis is not None and decision.analysis.verdict.value == "fail"
    few = WindowMetrics(num_requests=1, num_errors=1, num_drafts=100, num_draft_tokens=400, num_accepted_tokens=200)
    _, decision = brain.decide(canarying, Observation(now=1.0, canary=few), policy)
    assert decision.kind is DecisionKind.HOLD and "2/5 requests" in decision.reason


def test_itl_threshold_is_judged_when_set(canarying: RolloutState) -> None:
    strict = RolloutPolicy(steps=(10, 100), min_draft_tokens=100, max_itl_p95_s=0.05, failure_limit=1)
    slow = replace(good(), itl_p95_s=0.2)
    _, decision = brain.decide(canarying, Observation(now=1.0, canary=slow), strict)
    assert decision.kind is DecisionKind.ROLLBACK and "itl_p95_s" in decision.reason


def test_page_alert_on_canary_rolls_back_at_once(canarying: RolloutState, policy: RolloutPolicy) -> None:
    alert = Alert(name="AcceptanceRateBurn", severity="page", role=Role.CANARY)
    state, decision = brain.decide(canarying, Observation(now=1.0, canary=good(), alerts=(alert,)), policy)
    assert decision.kind is DecisionKind.ROLLBACK and "AcceptanceRateBurn" in decision.reason
    assert state.phase is Phase.ROLLING_BACK


def test_ticket_alert_does_not_roll_back(canarying: RolloutState, policy: RolloutPolicy) -> None:
    alert = Alert(name="AcceptanceRateBurn", severity="ticket", role=Role.CANARY)
    _, decision = brain.decide(canarying, Observation(now=1.0, canary=thin(), alerts=(alert,)), policy)
    assert decision.kind is DecisionKind.HOLD


def test_page_on_fresh_production_rolls_back_to_previous(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=good()), policy)
    state, _ = brain.decide(state, Observation(now=2.0, canary=good()), policy)
    state = applied(state, 2.0)
    assert state.phase is Phase.PROMOTED
    alert = Alert(name="AvailabilityBurn", severity="page", version="2")
    state, decision = brain.decide(state, Observation(now=100.0, alerts=(alert,)), policy)
    assert decision.kind is DecisionKind.ROLLBACK and decision.version == "1"
    assert brain.settle(state, now=101.0).stable_version == "1"


def test_page_on_long_promoted_version_only_holds(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=good()), policy)
    state, _ = brain.decide(state, Observation(now=2.0, canary=good()), policy)
    state = applied(state, 2.0)
    alert = Alert(name="AvailabilityBurn", severity="page", version="2")
    _, decision = brain.decide(state, Observation(now=10_000.0, alerts=(alert,)), policy)
    assert decision.kind is DecisionKind.HOLD


@pytest.mark.parametrize(
    ("action", "kind", "phase"),
    [
        (ManualAction.ROLLBACK, DecisionKind.ROLLBACK, Phase.ROLLING_BACK),
        (ManualAction.PROMOTE, DecisionKind.PROMOTE, Phase.PROMOTING),
        (ManualAction.PAUSE, DecisionKind.HOLD, Phase.PAUSED),
    ],
    ids=["rollback", "promote", "pause"],
)
def test_manual_actions_win_over_analysis(
    canarying: RolloutState, policy: RolloutPolicy, action: ManualAction, kind: DecisionKind, phase: Phase
) -> None:
    state, decision = brain.decide(canarying, Observation(now=1.0, canary=good(), action=action), policy)
    assert (decision.kind, state.phase) == (kind, phase)


def test_paused_holds_until_resumed(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, action=ManualAction.PAUSE), policy)
    state, decision = brain.decide(state, Observation(now=2.0, canary=bad()), policy)
    assert decision.kind is DecisionKind.HOLD and state.phase is Phase.PAUSED
    state, _ = brain.decide(state, Observation(now=3.0, action=ManualAction.RESUME), policy)
    assert state.phase is Phase.PROGRESSING


def test_manual_policy_never_acts_by_itself(canarying: RolloutState) -> None:
    manual = RolloutPolicy(steps=(10, 100), min_draft_tokens=100, failure_limit=1, automatic=False)
    state, decision = brain.decide(canarying, Observation(now=1.0, canary=bad()), manual)
    assert decision.kind is DecisionKind.HOLD and state.phase is Phase.PROGRESSING
    state, decision = brain.decide(state, Observation(now=2.0, canary=good()), manual)
    assert decision.kind is DecisionKind.HOLD and state.weight == 10


def test_an_unconfirmed_rollback_is_reapplied_not_decided_twice(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, action=ManualAction.ROLLBACK), policy)
    again, decision = brain.decide(state, Observation(now=2.0), policy)
    assert decision.kind is DecisionKind.ROLLBACK
    assert again.history == state.history


def test_an_unconfirmed_promotion_is_reapplied_not_decided_again(
    canarying: RolloutState, policy: RolloutPolicy
) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=good()), policy)
    state, first = brain.decide(state, Observation(now=2.0, canary=good()), policy)
    assert (first.kind, state.phase, state.stable_version, state.previous_version) == (
        DecisionKind.PROMOTE,
        Phase.PROMOTING,
        "2",
        "1",
    )
    # a restart before the adapters confirmed: a failing window or a rollback request changes nothing
    for observation in (Observation(now=3.0, canary=bad()), Observation(now=3.0, action=ManualAction.ROLLBACK)):
        again, decision = brain.decide(state, observation, policy)
        assert (decision.kind, decision.version) == (DecisionKind.PROMOTE, "2")
        assert again == state
    with pytest.raises(brain.RolloutRefused, match="still Promoting to 2"):
        brain.start(state, version="3", policy=policy, now=3.0)
    settled = applied(state, 4.0)
    assert (settled.phase, settled.stable_version, settled.previous_version) == (Phase.PROMOTED, "2", "1")
    assert settled.history[-1].reason == "promotion applied"


def test_history_is_bounded(policy: RolloutPolicy) -> None:
    state = RolloutState(deployment="d", pair="p", stable_version="1", phase=Phase.PROGRESSING, canary_version="2")
    for tick in range(brain.HISTORY_LIMIT + 10):
        action = ManualAction.PAUSE if tick % 2 == 0 else ManualAction.RESUME
        state, _ = brain.decide(state, Observation(now=float(tick), action=action), policy)
    assert len(state.history) == brain.HISTORY_LIMIT


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": (50, 10, 100)}, {"steps": (10, 50)}, {"min_acceptance_rate": 1.5}, {"failure_limit": 0}],
    ids=["unsorted-steps", "no-100", "rate-above-1", "zero-failure-limit"],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RolloutPolicy(**kwargs)  # type: ignore[arg-type]


def test_manual_rollback_of_a_promoted_version_restores_the_previous(
    canarying: RolloutState, policy: RolloutPolicy
) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=good()), policy)
    state, _ = brain.decide(state, Observation(now=2.0, canary=good()), policy)
    state = applied(state, 2.0)
    state, decision = brain.decide(state, Observation(now=99_999.0, action=ManualAction.ROLLBACK), policy)
    assert decision.kind is DecisionKind.ROLLBACK and decision.version == "1"
    assert brain.settle(state, now=100_000.0).stable_version == "1"
