"""The rollout brain: a pure state machine from (state, observation, policy) to (state, decision).

It does no I/O. The local runtime and the Kubernetes operator feed it observations and apply its
decisions through their adapters, so both bodies follow exactly these rules:

* start: a new version becomes the canary at the first step's weight;
* each analysis: PASS advances a step (the last step promotes), FAIL counts towards the failure limit
  (reaching it rolls back under the automatic policy), INCONCLUSIVE (too little data) waits — up to the
  progress deadline: INCONCLUSIVE for longer than ``max_inconclusive_s`` at one step takes the policy's
  ``on_inconclusive`` action (rollback, or pause for an operator), so no canary waits for ever;
* a page-level alert on the canary, or on a freshly promoted version within the bake time, rolls back
  under the automatic policy;
* manual actions (promote, rollback, pause, resume) win over analysis; a manual rollback of a promoted
  version restores the previous one;
* a promotion or rollback is first saved as PROMOTING / ROLLING_BACK (what it will apply), and settled
  into PROMOTED / ROLLED_BACK once the adapters confirm, so a restart between the two re-applies the
  same decision instead of deciding a second one.

The deadline counts the time between analyses, each gap capped at two analysis intervals: a clock
that jumps forward (or a controller that was down) adds at most that much, and one that jumps
backwards adds nothing, so a clock jump alone never rolls a canary back.
"""

from __future__ import annotations

from dataclasses import replace

from specops.rollout.analysis import analyse
from specops.rollout.model import (
    Alert,
    CanaryAnalysis,
    Decision,
    DecisionKind,
    InconclusiveAction,
    ManualAction,
    Observation,
    Phase,
    Role,
    RolloutPolicy,
    RolloutState,
    Transition,
    Verdict,
)

HISTORY_LIMIT = 50
"""Transitions kept in a state; older ones live in the audit log."""

ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED})

_APPLYING = {
    Phase.PROMOTING: (DecisionKind.PROMOTE, "promotion"),
    Phase.ROLLING_BACK: (DecisionKind.ROLLBACK, "rollback"),
}

APPLYING_PHASES = frozenset(_APPLYING)
"""A decision saved but not yet confirmed applied: it is applied again, nothing new is decided."""


class RolloutRefused(ValueError):
    """A request the current state cannot honour (e.g. a second rollout while one is active)."""


def start(state: RolloutState, *, version: str, policy: RolloutPolicy, now: float) -> tuple[RolloutState, Decision]:
    """Begin rolling out ``version`` as the canary at the first step."""
    if state.phase in ACTIVE_PHASES:
        raise RolloutRefused(f"{state.deployment}: rollout of {state.canary_version} is still {state.phase}")
    if state.phase in APPLYING_PHASES:
        raise RolloutRefused(f"{state.deployment}: still {state.phase} to {state.stable_version} (not yet applied)")
    if version == state.stable_version:
        raise RolloutRefused(f"{state.deployment}: version {version} is already the stable version")
    if state.stable_version is None:
        decision = Decision(
            DecisionKind.PROMOTE, f"first version {version} goes straight to production", weight=0, version=version
        )
        new = _moved(
            state,
            now,
            Phase.PROMOTING,
            0,
            decision.reason,
            stable_version=version,
            canary_version=None,
            promoted_at=now,
            step_index=-1,
        )
        return new, decision
    weight = policy.steps[0]
    decision = Decision(DecisionKind.START_CANARY, f"canary {version} starts at {weight}%", weight, version)
    new = _moved(
        state,
        now,
        Phase.PROGRESSING,
        weight,
        decision.reason,
        canary_version=version,
        step_index=0,
        consecutive_failures=0,
        last_analysis=None,
    )
    return new, decision


def decide(state: RolloutState, observation: Observation, policy: RolloutPolicy) -> tuple[RolloutState, Decision]:
    """Return the next state and the decision the adapters must apply."""
    now = observation.now
    if state.phase in _APPLYING:
        kind, what = _APPLYING[state.phase]
        return state, Decision(kind, f"{what} not yet confirmed; applying again", 0, state.stable_version)
    if state.phase in ACTIVE_PHASES:
        manual = _manual(state, observation.action, now)
        if manual is not None:
            return manual
    if state.phase is Phase.PAUSED:
        return state, Decision(DecisionKind.HOLD, "paused by request", state.weight)
    if state.phase is Phase.PROGRESSING:
        return _progress(state, observation, policy)
    if state.phase is Phase.PROMOTED:
        return _bake(state, observation, policy)
    return state, Decision(DecisionKind.HOLD, f"nothing to do in phase {state.phase}", state.weight)


def settle(state: RolloutState, *, now: float) -> RolloutState:
    """Mark a promotion or rollback as complete once the adapters have applied it."""
    if state.phase is Phase.PROMOTING:
        return _moved(state, now, Phase.PROMOTED, 0, "promotion applied")
    if state.phase is not Phase.ROLLING_BACK:
        return state
    return _moved(state, now, Phase.ROLLED_BACK, 0, "rollback applied", canary_version=None, step_index=-1)


def _manual(state: RolloutState, action: ManualAction | None, now: float) -> tuple[RolloutState, Decision] | None:
    if action is ManualAction.ROLLBACK:
        return _rollback(state, now, "manual rollback requested")
    if action is ManualAction.PROMOTE:
        return _promote(state, now, "manual promotion requested")
    if action is ManualAction.PAUSE and state.phase is Phase.PROGRESSING:
        new = _moved(state, now, Phase.PAUSED, state.weight, "paused by request")
        return new, Decision(DecisionKind.HOLD, "paused by request", state.weight)
    if action is ManualAction.RESUME and state.phase is Phase.PAUSED:
        new = _moved(state, now, Phase.PROGRESSING, state.weight, "resumed by request")
        return new, Decision(DecisionKind.HOLD, "resumed by request", state.weight)
    return None


def _progress(state: RolloutState, observation: Observation, policy: RolloutPolicy) -> tuple[RolloutState, Decision]:
    now = observation.now
    page = _page_on(observation.alerts, role=Role.CANARY, version=state.canary_version)
    if page is not None:
        reason = f"page alert {page.name} on canary {state.canary_version}"
        if policy.automatic:
            return _rollback(state, now, reason)
        return state, Decision(DecisionKind.HOLD, f"{reason}; manual policy waits for an operator", state.weight)

    analysis = analyse(observation.canary, policy, observation.stable)
    if analysis.verdict is Verdict.INCONCLUSIVE:
        return _inconclusive(state, analysis, policy, now)

    if analysis.verdict is Verdict.FAIL:
        failures = state.consecutive_failures + 1
        new = replace(state, consecutive_failures=failures, last_analysis=analysis, inconclusive_s=0.0, analysed_at=now)
        reason = f"analysis failed ({failures}/{policy.failure_limit}): {analysis.reason}"
        if failures >= policy.failure_limit and policy.automatic:
            rolled, decision = _rollback(new, now, reason)
            return rolled, replace(decision, analysis=analysis)
        return new, Decision(DecisionKind.HOLD, reason, state.weight, analysis=analysis)

    new = replace(state, consecutive_failures=0, last_analysis=analysis, inconclusive_s=0.0, analysed_at=now)
    if not policy.automatic:
        return new, Decision(
            DecisionKind.HOLD, f"analysis passed; manual policy: {analysis.reason}", state.weight, analysis=analysis
        )
    next_index = state.step_index + 1
    if next_index >= len(policy.steps) or policy.steps[next_index] >= 100:
        promoted, decision = _promote(new, now, f"analysis passed at the last step: {analysis.reason}")
        return promoted, replace(decision, analysis=analysis)
    weight = policy.steps[next_index]
    reason = f"analysis passed, canary to {weight}%: {analysis.reason}"
    advanced = _moved(new, now, Phase.PROGRESSING, weight, reason, step_index=next_index)
    return advanced, Decision(DecisionKind.SET_WEIGHT, reason, weight, state.canary_version, analysis)


def _inconclusive(
    state: RolloutState, analysis: CanaryAnalysis, policy: RolloutPolicy, now: float
) -> tuple[RolloutState, Decision]:
    """Wait for data, counting towards the progress deadline; past it, the policy's action."""
    gap = 0.0 if state.analysed_at is None else now - state.analysed_at
    waited = state.inconclusive_s + min(max(gap, 0.0), 2 * policy.analysis_interval_s)
    new = replace(state, last_analysis=analysis, inconclusive_s=waited, analysed_at=now)
    if waited < policy.max_inconclusive_s:
        reason = f"{analysis.reason} (no verdict for {waited:.0f} s of {policy.max_inconclusive_s:g} s)"
        return new, Decision(DecisionKind.HOLD, reason, state.weight, analysis=analysis)
    reason = f"no verdict for {waited:.0f} s (progress deadline {policy.max_inconclusive_s:g} s): {analysis.reason}"
    if not policy.automatic:
        return new, Decision(DecisionKind.HOLD, f"{reason}; manual policy waits for an operator", state.weight)
    if policy.on_inconclusive is InconclusiveAction.PAUSE:
        paused = _moved(new, now, Phase.PAUSED, state.weight, f"paused: {reason}")
        return paused, Decision(DecisionKind.HOLD, f"paused: {reason}", state.weight, analysis=analysis)
    rolled, decision = _rollback(new, now, reason)
    return rolled, replace(decision, analysis=analysis)


def _bake(state: RolloutState, observation: Observation, policy: RolloutPolicy) -> tuple[RolloutState, Decision]:
    if observation.action is ManualAction.ROLLBACK and state.previous_version is not None:
        return _restore_previous(state, observation.now, f"manual rollback of {state.stable_version}")
    page = _page_on(observation.alerts, role=Role.STABLE, version=state.stable_version)
    fresh = state.promoted_at is not None and observation.now - state.promoted_at <= policy.bake_s
    if page is None or not fresh or state.previous_version is None:
        return state, Decision(DecisionKind.HOLD, "production is healthy", 0)
    reason = f"page alert {page.name} on freshly promoted {state.stable_version}"
    if not policy.automatic:
        return state, Decision(DecisionKind.HOLD, f"{reason}; manual policy waits for an operator", 0)
    return _restore_previous(state, observation.now, reason)


def _restore_previous(state: RolloutState, now: float, reason: str) -> tuple[RolloutState, Decision]:
    restored = replace(
        state, canary_version=state.stable_version, stable_version=state.previous_version, previous_version=None
    )
    return _rollback(restored, now, f"{reason}; back to {state.previous_version}")


def _rollback(state: RolloutState, now: float, reason: str) -> tuple[RolloutState, Decision]:
    new = _moved(state, now, Phase.ROLLING_BACK, 0, reason)
    return new, Decision(DecisionKind.ROLLBACK, reason, 0, state.stable_version)


def _promote(state: RolloutState, now: float, reason: str) -> tuple[RolloutState, Decision]:
    new = _moved(
        state,
        now,
        Phase.PROMOTING,
        0,
        reason,
        stable_version=state.canary_version,
        previous_version=state.stable_version,
        canary_version=None,
        step_index=-1,
        promoted_at=now,
    )
    return new, Decision(DecisionKind.PROMOTE, reason, 0, state.canary_version)


def _page_on(alerts: tuple[Alert, ...], *, role: Role, version: str | None) -> Alert | None:
    for alert in alerts:
        if alert.severity != "page":
            continue
        if alert.role is role or (version is not None and alert.version == version):
            return alert
    return None


def _moved(state: RolloutState, now: float, phase: Phase, weight: int, reason: str, **changes: object) -> RolloutState:
    transition = Transition(at=now, from_phase=state.phase, to_phase=phase, weight=weight, reason=reason)
    history = (*state.history, transition)[-HISTORY_LIMIT:]
    # a new step (or phase) starts its own window, and with it its own progress deadline
    changes = {"inconclusive_s": 0.0, "analysed_at": None, **changes}
    return replace(state, phase=phase, weight=weight, history=history, **changes)  # type: ignore[arg-type]
