"""Runs the brain against the ports: observe → decide → apply → record. Shared by both bodies.

The controller holds no rollout rules (those live in :mod:`specops.rollout.brain`); it only gathers an
observation, hands it to the brain, applies the decision in a fixed order (traffic first, then
registry aliases, then the audit event, then the saved state) and settles promotions and rollbacks.
A promotion or rollback is saved before it is applied (as PROMOTING / ROLLING_BACK), so that a crash
while applying it leaves a state from which the brain applies the same decision again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from specops.rollout import brain, codec, intake
from specops.rollout.model import (
    Alert,
    Decision,
    DecisionKind,
    ManualAction,
    Observation,
    Phase,
    Role,
    RolloutPolicy,
    RolloutState,
    Verdict,
)
from specops.rollout.ports import AuditTrail, MetricsSource, ServingBackend, StateStore, VersionAliases

ACTOR = "specops-rollout"


@dataclass
class RolloutController:
    """One deployment's rollout loop over the five ports."""

    deployment: str
    pair: str
    policy: RolloutPolicy
    serving: ServingBackend
    metrics: MetricsSource
    aliases: VersionAliases
    audit: AuditTrail
    states: StateStore
    actor: str = ACTOR
    approve: Callable[[str, str], None] | None = None
    """Called as ``approve(pair, version)`` before a promotion; raising refuses it (approval policy)."""

    def state(self) -> RolloutState:
        """The saved state, or a fresh PENDING one."""
        return self.states.load(self.deployment) or RolloutState(deployment=self.deployment, pair=self.pair)

    def begin(self, version: str, *, now: float) -> Decision:
        """Start rolling out ``version`` (straight to production when nothing is deployed yet).

        Raises :class:`brain.RolloutRefused` while a rollout is active or being applied, or for the stable
        version (:func:`specops.rollout.intake.may_start` tells a body beforehand).
        """
        new, decision = brain.start(self.state(), version=version, policy=self.policy, now=now)
        if decision.kind is DecisionKind.PROMOTE and self.approve is not None:
            self.approve(self.pair, version)
        self._apply(self.state(), new, decision, now=now)
        return decision

    def tick(self, *, now: float, alerts: tuple[Alert, ...] = (), action: ManualAction | None = None) -> Decision:
        """Observe one analysis window, decide and apply."""
        state = self.state()
        observation = Observation(now=now, alerts=alerts, action=action)
        analysing = action is None and not any(alert.severity == "page" for alert in alerts)
        if analysing and state.phase is Phase.PROGRESSING and state.canary_version and state.stable_version:
            seconds = analysis_window_s(state, self.policy, now)
            observation = replace(
                observation,
                canary=self.metrics.window(role=Role.CANARY, version=state.canary_version, seconds=seconds),
                stable=self.metrics.window(role=Role.STABLE, version=state.stable_version, seconds=seconds),
            )
        new, decision = brain.decide(state, observation, self.policy)
        if decision.kind is DecisionKind.PROMOTE and self.approve is not None and decision.version is not None:
            try:
                self.approve(self.pair, decision.version)
            except Exception as refusal:  # the gate's typed error, reported and held
                held = Decision(
                    DecisionKind.HOLD, f"promotion held: {refusal}", state.weight, analysis=decision.analysis
                )
                self.audit.append(
                    actor=self.actor,
                    action="rollout.promotion_held",
                    subject=self.deployment,
                    payload=self._payload(state, state, held),
                )
                self.states.save(replace(state, last_analysis=new.last_analysis))
                return held
        self._apply(state, new, decision, now=now)
        return decision

    def follow(self, plan: intake.Plan, *, now: float) -> Decision | None:
        """Make the controller call ``plan`` names (see :mod:`specops.rollout.intake`); None when it names
        none (waiting, a refused action, or alerts without a page the phase takes)."""
        if plan.step is intake.Step.ACTION:
            return None if plan.action is None else self.tick(now=now, action=plan.action)
        if plan.step is intake.Step.BEGIN:
            assert plan.version is not None
            return self.begin(plan.version, now=now)
        if plan.step is intake.Step.ALERTS:
            return self.tick(now=now, alerts=plan.alerts) if plan.alerts else None
        if plan.step in (intake.Step.PROMOTION, intake.Step.ROLLBACK, intake.Step.ANALYSIS):
            return self.tick(now=now)
        return None

    def _apply(self, old: RolloutState, new: RolloutState, decision: Decision, *, now: float) -> None:
        kind = decision.kind
        settles = new.phase in brain.APPLYING_PHASES
        if settles and new != old:
            self.states.save(new)  # what is about to be applied, before any of it is
        if kind is DecisionKind.START_CANARY:
            assert new.canary_version is not None
            self.serving.start_canary(new.canary_version, decision.weight)
            self._alias("canary", new.canary_version)
        elif kind is DecisionKind.SET_WEIGHT:
            self.serving.set_canary_weight(decision.weight)
        elif kind is DecisionKind.PROMOTE:
            assert new.stable_version is not None
            if new.previous_version is None:  # the first version (or one applied again)
                self.serving.deploy_stable(new.stable_version)
            else:
                self.serving.promote_canary()
                self._alias("previous", new.previous_version)
            self._alias("production", new.stable_version)
            self.aliases.delete_alias(self.pair, "canary")
        elif kind is DecisionKind.ROLLBACK:
            self.serving.remove_canary(new.stable_version)
            if new.stable_version is not None:
                self._alias("production", new.stable_version)
            self.aliases.delete_alias(self.pair, "canary")
        if kind is not DecisionKind.HOLD or _worth_recording(old, new, decision):
            self.audit.append(
                actor=self.actor,
                action=f"rollout.{kind.value}",
                subject=self.deployment,
                payload=self._payload(old, new, decision),
            )
        if settles:
            new = brain.settle(new, now=now)
            if kind is DecisionKind.ROLLBACK:
                self.audit.append(
                    actor=self.actor,
                    action="rollout.rolled_back",
                    subject=self.deployment,
                    payload={"stable_version": new.stable_version, "phase": new.phase.value},
                )
        self.states.save(new)

    def _alias(self, alias: str, version: str) -> None:
        self.aliases.set_alias(self.pair, alias, version)
        self.audit.append(
            actor=self.actor,
            action="alias.set",
            subject=f"{self.pair}@{alias}",
            payload={"pair": self.pair, "alias": alias, "version": version, "deployment": self.deployment},
        )

    def _payload(self, old: RolloutState, new: RolloutState, decision: Decision) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "from_phase": old.phase.value,
            "to_phase": new.phase.value,
            "stable_version": new.stable_version,
            "canary_version": new.canary_version or old.canary_version,
            "decision": codec.decision_to_dict(decision),
        }


def _worth_recording(old: RolloutState, new: RolloutState, decision: Decision) -> bool:
    """HOLDs are recorded when they change the phase or carry a real (non-inconclusive) verdict."""
    if old.phase is not new.phase:
        return True
    return decision.analysis is not None and decision.analysis.verdict is not Verdict.INCONCLUSIVE


def analysis_window_s(state: RolloutState, policy: RolloutPolicy, now: float) -> float:
    """The analysis window: everything since the current step began, at least one interval.

    At a low canary weight one interval may hold too few samples; the whole step gives the verdict all
    the canary traffic served at this weight (Prometheus adapters use it as the range of ``increase``).
    """
    step_started = state.history[-1].at if state.history else now
    return max(policy.analysis_interval_s, now - step_started)
