"""The canary analysis on plain data: what speculation delivers is judged whatever the engine chose,
the canary is compared with the stable, and a canary that cannot be judged meets a deadline."""

from __future__ import annotations

from dataclasses import replace

import pytest

from specops.rollout import (
    DecisionKind,
    ManualAction,
    Observation,
    Phase,
    RolloutPolicy,
    RolloutState,
    Verdict,
    WindowMetrics,
    analysis,
    brain,
)
from specops.rollout.model import Histogram, InconclusiveAction
from tests.support.canary_windows import good, plain, thin

TOKENS_PER_STEP_BOUNDS = (1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
ITL_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2)


def histogram(values: list[float], bounds: tuple[float, ...]) -> Histogram:
    """What Prometheus would hold after observing ``values`` once each."""
    cumulative = tuple(float(sum(v <= b for v in values)) for b in bounds)
    return Histogram(bounds=bounds, cumulative=cumulative, total=float(sum(values)), count=float(len(values)))


def with_requests(window: WindowMetrics, *, tokens_per_step: list[float], itl: list[float]) -> WindowMetrics:
    return replace(
        window,
        request_tokens_per_step=histogram(tokens_per_step, TOKENS_PER_STEP_BOUNDS),
        request_itl=histogram(itl, ITL_BOUNDS),
    )


def test_a_canary_that_stopped_drafting_fails_on_tokens_per_step(policy: RolloutPolicy) -> None:
    verdict = analysis.analyse(plain(), policy)
    assert verdict.verdict is Verdict.FAIL
    assert "tokens_per_step 1.000 (must be >= 1.1), 0% of 900 target steps speculated" in verdict.reason
    acceptance = next(check for check in verdict.checks if check.name == "acceptance_rate")
    assert acceptance.passed is None  # no draft tokens: acceptance cannot be judged, tokens per step can


def test_and_is_rolled_back_at_the_failure_limit_instead_of_waiting(
    canarying: RolloutState, policy: RolloutPolicy
) -> None:
    state, first = brain.decide(canarying, Observation(now=60.0, canary=plain()), policy)
    assert first.kind is DecisionKind.HOLD and state.consecutive_failures == 1
    state, second = brain.decide(state, Observation(now=120.0, canary=plain()), policy)
    assert second.kind is DecisionKind.ROLLBACK and "tokens_per_step 1.000" in second.reason


def test_tokens_per_step_waits_for_enough_target_steps(policy: RolloutPolicy) -> None:
    few_steps = WindowMetrics(num_requests=20, num_target_steps=policy.min_target_steps - 1)
    verdict = analysis.analyse(few_steps, policy)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert f"{policy.min_target_steps - 1}/{policy.min_target_steps} target steps" in verdict.reason


def test_a_good_canary_passes_on_both_speculation_checks(policy: RolloutPolicy) -> None:
    verdict = analysis.analyse(good(), policy)
    assert verdict.verdict is Verdict.PASS
    assert {c.name for c in verdict.checks if c.passed} >= {"acceptance_rate", "tokens_per_step", "error_rate"}


def test_the_canary_is_failed_when_clearly_worse_than_the_stable(policy: RolloutPolicy) -> None:
    # Both pass every threshold; the canary gains 1.15 tokens per step where the stable gains 1.6.
    stable = with_requests(good(), tokens_per_step=[1.5, 1.6, 1.7, 1.6] * 10, itl=[0.02] * 40)
    canary = with_requests(good(), tokens_per_step=[1.1, 1.2, 1.15, 1.15] * 5, itl=[0.02] * 20)
    verdict = analysis.analyse(canary, policy, stable)
    assert verdict.verdict is Verdict.FAIL
    assert "tokens_per_step_vs_stable: canary 1.15 vs stable 1.6 per request (+28.1% worse" in verdict.reason
    latency = next(check for check in verdict.checks if check.name == "itl_vs_stable")
    assert latency.passed is True


def test_slower_latency_against_the_stable_fails_only_beyond_the_minimum_effect(policy: RolloutPolicy) -> None:
    stable = with_requests(good(), tokens_per_step=[1.6] * 40, itl=[0.018, 0.02, 0.022] * 13)
    slightly = with_requests(good(), tokens_per_step=[1.6] * 30, itl=[0.02, 0.022, 0.024] * 10)
    much = with_requests(good(), tokens_per_step=[1.6] * 30, itl=[0.06, 0.07, 0.08] * 10)
    assert analysis.analyse(slightly, policy, stable).verdict is Verdict.PASS
    failed = analysis.analyse(much, policy, stable)
    assert failed.verdict is Verdict.FAIL and "itl_vs_stable" in failed.reason


def test_comparisons_are_not_judged_on_a_thin_side(policy: RolloutPolicy) -> None:
    stable = with_requests(good(), tokens_per_step=[1.6] * 40, itl=[0.02] * 40)
    canary = with_requests(good(), tokens_per_step=[1.0, 1.0], itl=[0.5, 0.5])
    verdict = analysis.analyse(canary, policy, stable)
    compared = [check for check in verdict.checks if check.name.endswith("_vs_stable")]
    assert compared and all(check.passed is None for check in compared)


def test_comparisons_can_be_switched_off(policy: RolloutPolicy) -> None:
    stable = with_requests(good(), tokens_per_step=[1.6] * 40, itl=[0.02] * 40)
    canary = with_requests(good(), tokens_per_step=[1.1] * 40, itl=[0.02] * 40)
    off = replace(policy, compare_to_stable=False)
    assert analysis.analyse(canary, off, stable).verdict is Verdict.PASS


def _wait_out(state: RolloutState, policy: RolloutPolicy, *, ticks: int, start: float = 0.0):  # type: ignore[no-untyped-def]
    decision = None
    for tick in range(1, ticks + 1):
        state, decision = brain.decide(state, Observation(now=start + tick * 60.0, canary=thin()), policy)
        if decision.kind is not DecisionKind.HOLD or state.phase is not Phase.PROGRESSING:
            break
    return state, decision


def test_an_inconclusive_canary_is_rolled_back_at_the_progress_deadline(canarying: RolloutState) -> None:
    policy = RolloutPolicy(steps=(10, 50, 100), min_requests=5, max_inconclusive_s=600)
    state, decision = _wait_out(canarying, policy, ticks=30)
    assert decision is not None and decision.kind is DecisionKind.ROLLBACK
    assert decision.reason.startswith("no verdict for 600 s (progress deadline 600 s): waiting for data: 1/5")
    assert state.phase is Phase.ROLLING_BACK


def test_the_deadline_can_pause_instead(canarying: RolloutState) -> None:
    policy = RolloutPolicy(
        steps=(10, 50, 100), min_requests=5, max_inconclusive_s=600, on_inconclusive=InconclusiveAction.PAUSE
    )
    state, decision = _wait_out(canarying, policy, ticks=30)
    assert decision is not None and decision.kind is DecisionKind.HOLD and state.phase is Phase.PAUSED
    assert state.history[-1].reason.startswith("paused: no verdict for 600 s")
    resumed, _ = brain.decide(state, Observation(now=10_000.0, action=ManualAction.RESUME), policy)
    assert (resumed.phase, resumed.inconclusive_s) == (Phase.PROGRESSING, 0.0)


def test_waiting_shows_how_long_and_why(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=60.0, canary=thin()), policy)
    state, decision = brain.decide(state, Observation(now=120.0, canary=thin()), policy)
    assert decision.reason.endswith("(no verdict for 60 s of 1800 s)")
    assert state.inconclusive_s == 60.0


@pytest.mark.parametrize("jump", [3600.0, -3600.0], ids=["forward", "backward"])
def test_a_clock_jump_alone_neither_rolls_back_nor_promotes(canarying: RolloutState, jump: float) -> None:
    policy = RolloutPolicy(steps=(10, 50, 100), min_requests=5, max_inconclusive_s=600)
    state, _ = _wait_out(canarying, policy, ticks=3)
    before = state.inconclusive_s
    state, decision = brain.decide(state, Observation(now=180.0 + jump, canary=thin()), policy)
    assert decision.kind is DecisionKind.HOLD and state.phase is Phase.PROGRESSING
    assert state.inconclusive_s <= before + 2 * policy.analysis_interval_s


def test_a_verdict_resets_the_deadline(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = _wait_out(canarying, policy, ticks=5)
    assert state.inconclusive_s > 0
    state, decision = brain.decide(state, Observation(now=400.0, canary=good()), policy)
    assert decision.kind is DecisionKind.SET_WEIGHT and state.inconclusive_s == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_tokens_per_step": 0.9},
        {"comparison_alpha": 0.0},
        {"min_itl_effect": -0.1},
        {"max_inconclusive_s": 0},
        {"on_inconclusive": "explode"},
    ],
    ids=["tokens-per-step-below-1", "alpha-0", "negative-effect", "zero-deadline", "unknown-action"],
)
def test_invalid_analysis_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RolloutPolicy(**kwargs)  # type: ignore[arg-type]
