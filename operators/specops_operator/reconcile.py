"""One reconcile of one SpeculativeDeployment: read → intake → controller → sync → status.
Synchronous (the kopf daemon runs it in a worker thread) and idempotent.

The operator holds no rollout rules. It reads the object (spec, status, the ``specops.io/action`` and
``specops.io/alerts`` annotations not yet acknowledged) and the registry's wanted version;
:func:`specops.rollout.intake.plan` says which single controller call this reconcile makes, and
:class:`specops.rollout.controller.RolloutController` with the brain behind it decides. The reconcile
then converges the cluster (:meth:`KServeBackend.sync`) and writes status.

Only a scheduled analysis reads Prometheus; manual actions and alerts are decided without metrics,
so they work while Prometheus is down. The status patch records the state with a revision counter and
acknowledges the request, so a restarted operator continues from status and neither promotes nor rolls
back twice. A promotion or rollback is written to status (Promoting / RollingBack) before the
controller applies any of it: a crash while applying it leaves that phase, from which the next
reconcile applies the same decision again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from specops.errors import Conflict, InvalidInput, NotFound, SpecOpsError
from specops.rollout import controller as rollout_controller
from specops.rollout import intake
from specops.rollout.brain import APPLYING_PHASES, RolloutRefused
from specops.rollout.model import Decision, DecisionKind, Phase, Role, RolloutState
from specops.rollout.ports import AuditTrail, EmptyMetrics
from specops_operator import builders, constants, deployment_spec, kube, pending
from specops_operator import status as status_
from specops_operator.prometheus_source import MetricsUnavailable, PrometheusMetrics
from specops_operator.registry import PairVersions
from specops_operator.serving import KServeBackend
from specops_operator.status import Problem
from specops_operator.status_store import Memory, StatusStore, StatusWriter, Synced

ACTOR = "specops-operator"
IDLE_RECHECK_S = 60.0
"""Longest sleep between reconciles of a deployment with nothing due (sync and bake clean-up)."""
RETRY_S = 5.0
"""Sleep after a failed reconcile (API, registry or audit store unreachable)."""

log = logging.getLogger(__name__)


@dataclass
class Dependencies:
    """Everything a reconcile talks to; built once per operator process (injectable in tests).

    kube: the Kubernetes API. http + prometheus_url: the Prometheus HTTP API. versions: the registry
    (aliases, version lookups). audit: the audit log. clock: seconds since the epoch.
    """

    kube: kube.KubeClient
    http: httpx.Client
    prometheus_url: str
    versions: PairVersions
    audit: AuditTrail
    clock: Callable[[], float] = time.time
    actor: str = ACTOR


@dataclass(frozen=True)
class View:
    """What a reconcile reads of the object (a snapshot of the body kopf holds)."""

    name: str
    namespace: str
    uid: str
    spec: dict[str, Any]
    status: dict[str, Any]
    annotations: dict[str, str]
    generation: int | None = None

    @classmethod
    def of(cls, body: Any) -> View:
        meta = body.get("metadata", {})
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace") or "default",
            uid=meta.get("uid") or "",
            spec=json.loads(json.dumps(body.get("spec") or {})),
            status=json.loads(json.dumps(body.get("status") or {})),
            annotations=dict(meta.get("annotations") or {}),
            generation=meta.get("generation"),
        )


@dataclass
class Outcome:
    """What one reconcile did and when the next one is due."""

    next_in: float
    decision: Decision | None = None
    status: dict[str, Any] = field(default_factory=dict)
    acted: str = ""


@dataclass(frozen=True)
class Decided:
    """What the controller call of one reconcile left.

    before / state: the rollout state before and after. now: the decision's time (an analysis's is when
    its data was in hand). window_started_at: when the analysis window now begins. analysed_at: when the
    analysis in ``state`` ran (None: this reconcile analysed nothing).
    """

    before: RolloutState
    state: RolloutState
    decision: Decision | None
    now: float
    window_started_at: float | None
    analysed_at: float | None


ReadyLookup = Callable[[str, str], bool | None]
"""(namespace, InferenceService name) → Ready, None when not seen."""


def subject(view: View) -> str:
    """The deployment's name in the audit log and the rollout state."""
    return f"{view.namespace}/{view.name}"


def reconcile(dependencies: Dependencies, view: View, memory: Memory, *, ready: ReadyLookup) -> Outcome:
    """Reconcile ``view`` once; write its status; say when to come back."""
    now = dependencies.clock()
    writer = StatusWriter(
        client=dependencies.kube,
        namespace=view.namespace,
        name=view.name,
        generation=view.generation,
        memory=memory,
        current=status_.newest(memory.status, view.status),
    )
    saved = status_.load_state(writer.current)
    try:
        spec = _checked_spec(view, saved)
    except InvalidInput as error:
        return _reject(writer, saved, message=str(error))

    # read
    before = saved or RolloutState(deployment=subject(view), pair=spec.pair)
    problems: list[Problem] = []
    desired = _desired_version(dependencies, spec=spec, problems=problems)
    requests = pending.read(view.annotations, writer.current)
    backend = KServeBackend(
        client=dependencies.kube,
        owner=builders.Owner(name=view.name, namespace=view.namespace, uid=view.uid),
        spec=spec,
        prior=before,
        sources=lambda version: dependencies.versions.source(spec.pair, version),
        ready=lambda name: ready(view.namespace, name),
    )
    canary = backend.serving_names(before).get(Role.CANARY.value, "")

    # intake
    read = intake.Intake(
        state=before,
        now=now,
        analysis_interval_s=spec.policy.analysis_interval_s,
        desired_version=desired,
        rejected_version=(writer.current or {}).get("rejectedVersion"),
        action=requests.action,
        alerts=requests.alerts,
        window_started_at=status_.window_started_at(writer.current),
        canary=_canary_traffic(before, ready=bool(ready(view.namespace, canary)), synced=memory.synced),
    )
    plan = intake.plan(read)
    if plan.waiting_for_canary:
        problems.append(Problem("WaitingForInferenceService", f"canary InferenceService {canary} is not Ready"))

    # controller
    decided = _decide(
        dependencies, view=view, spec=spec, read=read, plan=plan, backend=backend, writer=writer, problems=problems
    )

    # sync
    _sync(backend, view=view, memory=memory, spec=spec, decided=decided, ready=ready, problems=problems)

    # status
    new_status = _status(view, current=writer.current, decided=decided, plan=plan, requests=requests, problems=problems)
    writer.write(new_status)
    if plan.step is intake.Step.ACTION:  # acknowledged: the request annotations can go
        annotations = {constants.ACTION_ANNOTATION: None, constants.ACTION_ID_ANNOTATION: None}
        dependencies.kube.patch(kube.DEPLOYMENTS, view.namespace, view.name, {"metadata": {"annotations": annotations}})
    next_in = 0.0 if plan.again else _next_in(decided, spec=spec, problems=problems)
    return Outcome(next_in=next_in, decision=decided.decision, status=new_status, acted=plan.step.value)


def _decide(
    dependencies: Dependencies,
    *,
    view: View,
    spec: deployment_spec.DeploymentSpec,
    read: intake.Intake,
    plan: intake.Plan,
    backend: KServeBackend,
    writer: StatusWriter,
    problems: list[Problem],
) -> Decided:
    """Make the plan's controller call; a failure becomes a problem, never an exception.

    Manual actions and alerts are decided on empty windows (the brain does not analyse for them), so an
    alert never sneaks in an analysis out of schedule; only ANALYSIS reads Prometheus.
    """
    store = StatusStore(read.state, writer.persist)
    control = rollout_controller.RolloutController(
        deployment=subject(view),
        pair=spec.pair,
        policy=spec.policy,
        serving=backend,
        metrics=EmptyMetrics(),
        aliases=dependencies.versions,
        audit=dependencies.audit,
        states=store,
        actor=dependencies.actor,
    )
    now, decision = read.now, None
    window_started_at, analysed_at = read.window_started_at, None
    try:
        if plan.step is intake.Step.ANALYSIS:
            now = _fetch_windows(dependencies, spec=spec, state=read.state, control=control)
        decision = control.follow(plan, now=now)
        window_started_at = plan.window_started_at
        if plan.step is intake.Step.ANALYSIS:
            window_started_at = analysed_at = now
    except MetricsUnavailable as error:
        problems.append(Problem("MetricsUnavailable", str(error)))
        window_started_at = now  # try again at the next interval, not in a tight loop
    except (SpecOpsError, RolloutRefused, kube.ApiException, httpx.HTTPError) as error:
        log.warning("%s: reconcile failed: %s", subject(view), error)
        problems.append(Problem("ApplyFailed", f"{type(error).__name__}: {error}"))
    if decision is not None and analysed_at is None and decision.analysis is not None:
        analysed_at = now
    return Decided(
        before=read.state,
        state=store.state,
        decision=decision,
        now=now,
        window_started_at=window_started_at,
        analysed_at=analysed_at,
    )


def _status(
    view: View,
    *,
    current: dict[str, Any] | None,
    decided: Decided,
    plan: intake.Plan,
    requests: pending.PendingRequests,
    problems: list[Problem],
) -> dict[str, Any]:
    """The status to write: the state, the conditions, the acknowledged request, the window's times."""
    state, decision, now = decided.state, decided.decision, decided.now
    extra: dict[str, Any] = {
        "observedGeneration": view.generation,
        "message": problems[0].message if problems else (decision.reason if decision is not None else None),
        "rejectedVersion": intake.rejected_after(decided.before, state, rejected_version=plan.rejected_version),
    }
    if plan.step is intake.Step.ACTION:
        extra["lastAction"] = {
            "id": requests.action_id,
            "action": requests.action,
            "at": status_.iso(now),
            "result": plan.refusal if decision is None else decision.reason,
        }
    elif plan.step is intake.Step.ALERTS:
        names = [alert.name for alert in requests.alerts or ()]
        extra["lastAlerts"] = {"id": requests.alerts_id, "at": status_.iso(now), "names": names}
    conditions = [status_.ready_condition(problems, state), *status_.phase_conditions(state)]
    if any(problem.reason in ("MetricsUnavailable", "ApplyFailed") for problem in problems):
        conditions[-1] = status_.condition("Degraded", True, problems[0].reason, problems[0].message)
    new_status = status_.render(
        state,
        revision=status_.revision(current) + 1,
        conditions=conditions,
        previous=current,
        analysed_at=decided.analysed_at,
        extra=extra,
    )
    new_status["rollout"]["tickedAt"] = decided.window_started_at
    return new_status


def _checked_spec(view: View, saved: RolloutState | None) -> deployment_spec.DeploymentSpec:
    """The parsed spec; InvalidInput when it is invalid or renames the pair of a deployed rollout."""
    spec = deployment_spec.parse(view.spec)
    if saved is not None and saved.stable_version is not None and saved.pair != spec.pair:
        raise InvalidInput(
            f"spec.pair.name cannot change from {saved.pair} to {spec.pair}; create another SpeculativeDeployment"
        )
    return spec


def _desired_version(
    dependencies: Dependencies, *, spec: deployment_spec.DeploymentSpec, problems: list[Problem]
) -> str | None:
    """The registry version the spec asks for; None (and a problem) when it cannot be resolved."""
    try:
        return dependencies.versions.resolve(spec.pair, spec.version)
    except NotFound as error:
        problems.append(Problem("UnknownVersion", str(error)))
    except Conflict as error:
        problems.append(Problem("VersionRefused", str(error)))
    return None


def _canary_traffic(state: RolloutState, *, ready: bool, synced: Synced | None) -> intake.CanaryTraffic:
    """Whether the canary serves its share: Ready and routed by this process (a fresh process routes first)."""
    if not ready:
        return intake.CanaryTraffic.NOT_READY
    if synced is None or not synced.routed_canary_of(state):
        return intake.CanaryTraffic.READY
    return intake.CanaryTraffic.ROUTED


def _fetch_windows(
    dependencies: Dependencies,
    *,
    spec: deployment_spec.DeploymentSpec,
    state: RolloutState,
    control: rollout_controller.RolloutController,
) -> float:
    """Give ``control`` Prometheus as its metrics, with both windows fetched; returns the analysis's time.

    The windows are fetched first (one query, cached by the adapter), so that the verdict's time in
    status is when the data was in hand, not before the round trip.
    """
    sides = {
        role: version
        for role, version in ((Role.CANARY, state.canary_version), (Role.STABLE, state.stable_version))
        if version
    }
    metrics = PrometheusMetrics(
        http=dependencies.http,
        url=dependencies.prometheus_url,
        model=spec.pair,
        runtime=spec.runtime.type,
        sides=sides,
    )
    for role, version in sides.items():
        metrics.window(role=role, version=version, seconds=spec.policy.analysis_interval_s)
    control.metrics = metrics
    return dependencies.clock()


def _sync(
    backend: KServeBackend,
    *,
    view: View,
    memory: Memory,
    spec: deployment_spec.DeploymentSpec,
    decided: Decided,
    ready: ReadyLookup,
    problems: list[Problem],
) -> None:
    """Converge the cluster to the decided state (missing objects, route weight once Ready, retired versions)."""
    state, decision, now = decided.state, decided.decision, decided.now
    canary_name = backend.serving_names(state).get(Role.CANARY.value)
    synced = Synced(
        phase=state.phase,
        stable_version=state.stable_version,
        canary_version=state.canary_version,
        weight=state.weight,
        canary_ready=bool(canary_name and ready(view.namespace, canary_name)),
        baking=state.promoted_at is not None and now - state.promoted_at <= spec.policy.bake_s,
        deployment_mode=spec.deployment_mode,
    )
    if synced != memory.synced or (decision is not None and decision.kind is not DecisionKind.HOLD):
        try:
            backend.sync(state, now=now)
            memory.synced = synced
        except (kube.ApiException, SpecOpsError) as error:
            problems.append(Problem("ApplyFailed", f"sync: {error}"))
    stable_name = backend.serving_names(state).get(Role.STABLE.value)
    if stable_name and not ready(view.namespace, stable_name) and not problems:
        problems.append(Problem("WaitingForInferenceService", f"InferenceService {stable_name} is not Ready"))


def _reject(writer: StatusWriter, saved: RolloutState | None, *, message: str) -> Outcome:
    """An invalid spec: say so in a condition; keep serving whatever is serving."""
    current, generation = writer.current, writer.generation
    conditions = [status_.condition("Ready", False, "InvalidSpec", message)]
    if saved is not None:
        conditions += status_.phase_conditions(saved)
        new_status = status_.render(
            saved,
            revision=status_.revision(current) + 1,
            conditions=conditions,
            previous=current,
            extra={"message": message, "observedGeneration": generation},
        )
        new_status["rollout"]["tickedAt"] = status_.window_started_at(current)
    else:
        new_status = {
            "phase": Phase.FAILED.value,
            "message": message,
            "observedGeneration": generation,
            "conditions": status_.keep_transition_times(conditions, (current or {}).get("conditions", [])),
        }
    writer.write(new_status)
    return Outcome(next_in=IDLE_RECHECK_S, status=new_status, acted="reject")


def _next_in(decided: Decided, *, spec: deployment_spec.DeploymentSpec, problems: list[Problem]) -> float:
    interval = spec.policy.analysis_interval_s
    if any(problem.reason == "ApplyFailed" for problem in problems) or decided.state.phase in APPLYING_PHASES:
        return min(RETRY_S, interval)
    if decided.state.phase is Phase.PROGRESSING:
        if any(problem.reason == "WaitingForInferenceService" for problem in problems):
            return min(RETRY_S, interval)
        return intake.next_analysis_in(decided.now, decided.window_started_at, interval_s=interval)
    return min(IDLE_RECHECK_S, max(interval, 1.0))
