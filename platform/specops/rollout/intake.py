"""What one round of a rollout body does next: the intake both bodies call before the controller.

A body (the Kubernetes operator, the local runtime) reads what it has — the saved state, the wanted
version, a pending manual request, a batch of alerts, the clock — and asks :func:`plan` which single
controller call this round makes. The rules, in order:

1. a manual request → ``tick(action=…)`` (an unknown action is refused with a message, no call);
2. a wanted version that is neither stable nor canary, not the one last rolled back, while no rollout
   is active or being applied → ``begin``;
3. a batch of alerts → ``tick(alerts=pages)`` with its page-level alerts, when the phase takes alerts
   (a canary, or a promoted version baking); otherwise the batch is only acknowledged;
4. a promotion or rollback saved but not yet confirmed → ``tick`` (the brain applies it again);
5. an analysis that is due while the canary serves its share of traffic → ``tick`` with metrics.

Only (5) reads metrics, so manual actions and alerts are decided while the metrics store is down.
Pure: no I/O, plain data in and out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from specops.rollout.brain import ACTIVE_PHASES, APPLYING_PHASES
from specops.rollout.model import Alert, ManualAction, Phase, RolloutState

ALERT_PHASES = frozenset({Phase.PROGRESSING, Phase.PROMOTED})
"""Phases whose page-level alerts the brain acts on: a canary, or a freshly promoted version."""

DUE_SLACK_S = 0.01
"""An analysis this close to its interval counts as due (timers wake a little early)."""


class Step(StrEnum):
    """Which controller call a round makes."""

    WAIT = ""
    ACTION = "action"
    BEGIN = "begin"
    ALERTS = "alerts"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    ANALYSIS = "analysis"


class CanaryTraffic(StrEnum):
    """Whether the canary serves its share of traffic, so that a window of its metrics means something."""

    NOT_READY = "not_ready"
    READY = "ready"
    """Ready, but the body has not routed traffic to it yet (just became Ready, or the body restarted)."""
    ROUTED = "routed"


@dataclass(frozen=True)
class Intake:
    """What a body read before one round.

    state: the saved rollout state. now: seconds since the epoch.
    desired_version: the version the deployment asks for (None: none resolved).
    rejected_version: the version last rolled back; it is not started again while still desired.
    action: a pending manual request as written (``promote``…), None when there is none.
    alerts: a batch of firing alerts not yet handled, None when there is none.
    window_started_at: when the current analysis window began (None: never; an analysis is due).
    analysis_interval_s: seconds between analyses (the policy's).
    canary: whether the canary serves its share of traffic (only read when an analysis is due).
    """

    state: RolloutState
    now: float
    analysis_interval_s: float
    desired_version: str | None = None
    rejected_version: str | None = None
    action: str | None = None
    alerts: tuple[Alert, ...] | None = None
    window_started_at: float | None = None
    canary: CanaryTraffic = CanaryTraffic.ROUTED


@dataclass(frozen=True)
class Plan:
    """The round's controller call and what the body must remember after it.

    step: the call. action: the manual action (ACTION; None when refused). refusal: why an action was
    not passed on. version: the version to begin (BEGIN). alerts: the pages to tick with (ALERTS;
    empty: acknowledge only). window_started_at: the analysis window's start after this round (the
    body moves it again to the analysis's own time after ANALYSIS). rejected_version: still rejected
    (cleared once the wanted version moved on). again: another round is due at once (a request is
    still waiting). waiting_for_canary: an analysis is due but the canary is not Ready.
    """

    step: Step
    window_started_at: float | None
    rejected_version: str | None
    action: ManualAction | None = None
    refusal: str | None = None
    version: str | None = None
    alerts: tuple[Alert, ...] = ()
    again: bool = False
    waiting_for_canary: bool = False


def plan(intake: Intake) -> Plan:
    """The single controller call of this round (see the module's rules)."""
    state, now = intake.state, intake.now
    rejected = intake.rejected_version
    if rejected is not None and intake.desired_version is not None and intake.desired_version != rejected:
        rejected = None  # the wanted version moved on: a later return to that version is a new request
    window = intake.window_started_at
    if intake.action is not None:
        try:
            manual: ManualAction | None = ManualAction(intake.action)
            refusal = None
        except ValueError:
            manual = None
            refusal = f"ignored: unknown action {intake.action!r} (expected promote, rollback, pause or resume)"
        again = intake.desired_version is not None or intake.alerts is not None
        return Plan(Step.ACTION, window, rejected, action=manual, refusal=refusal, again=again)
    if may_start(state, version=intake.desired_version, rejected_version=rejected):
        return Plan(Step.BEGIN, now, rejected, version=intake.desired_version, again=intake.alerts is not None)
    if intake.alerts is not None:
        return Plan(Step.ALERTS, window, rejected, alerts=pages_taken(state, intake.alerts))
    if state.phase in APPLYING_PHASES:
        return Plan(Step.ROLLBACK if state.phase is Phase.ROLLING_BACK else Step.PROMOTION, window, rejected)
    if state.phase is Phase.PROGRESSING and analysis_due(now, window, interval_s=intake.analysis_interval_s):
        if intake.canary is CanaryTraffic.NOT_READY:
            return Plan(Step.WAIT, window, rejected, waiting_for_canary=True)
        if intake.canary is CanaryTraffic.READY:
            return Plan(Step.WAIT, now, rejected)  # route first; the first window starts now
        return Plan(Step.ANALYSIS, window, rejected)
    return Plan(Step.WAIT, window, rejected)


def may_start(state: RolloutState, *, version: str | None, rejected_version: str | None) -> bool:
    """Whether ``version`` may begin rolling out now: new, not rejected, and no rollout under way."""
    if version is None or version in (state.stable_version, state.canary_version) or version == rejected_version:
        return False
    return state.phase not in ACTIVE_PHASES | APPLYING_PHASES


def pages_taken(state: RolloutState, alerts: tuple[Alert, ...]) -> tuple[Alert, ...]:
    """The page-level alerts of ``alerts`` the brain acts on in ``state``'s phase (none outside ALERT_PHASES)."""
    if state.phase not in ALERT_PHASES:
        return ()
    return tuple(alert for alert in alerts if alert.severity == "page")


def analysis_due(now: float, window_started_at: float | None, *, interval_s: float) -> bool:
    """Whether a full analysis interval has passed since the window began."""
    return window_started_at is None or now - window_started_at >= interval_s - DUE_SLACK_S


def next_analysis_in(now: float, window_started_at: float | None, *, interval_s: float) -> float:
    """Seconds until the next analysis is due (at least 50 ms, so a body never spins)."""
    elapsed = now - window_started_at if window_started_at is not None else interval_s
    return max(0.05, interval_s - elapsed)


def action_refusal(state: RolloutState, action: ManualAction) -> str | None:
    """Why the brain would not act on ``action`` in ``state`` (None: it would).

    Promote, pause and resume move an active rollout; rollback also undoes a promotion that has a
    previous version to return to. Nothing moves while a promotion or rollback is still being applied.
    """
    if state.phase in APPLYING_PHASES:
        return f"{state.phase.value} to {state.stable_version} is still being applied"
    movable = ACTIVE_PHASES | ({Phase.PROMOTED} if action is ManualAction.ROLLBACK else set())
    if state.phase not in movable or (state.phase is Phase.PROMOTED and state.previous_version is None):
        return f"nothing to {action.value} in phase {state.phase.value}"
    return None


def rejected_after(before: RolloutState, after: RolloutState, *, rejected_version: str | None) -> str | None:
    """The rejected version once a round moved ``before`` to ``after``: a fresh rollback rejects what it
    undid (the promoted version, or the canary), so the same wanted version is not started again."""
    if after.phase is Phase.ROLLED_BACK and before.phase is not Phase.ROLLED_BACK:
        return before.stable_version if before.phase is Phase.PROMOTED else before.canary_version
    return rejected_version
