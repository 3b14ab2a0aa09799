"""One reconcile of one SpeculativeDeployment: read spec and status, let the rollout controller decide,
apply, write status. Synchronous (the kopf daemon runs it in a worker thread) and idempotent.

The operator holds no rollout rules: :class:`specops.rollout.controller.RolloutController` and the
brain behind it decide; this module only chooses *which* controller call a reconcile makes:

1. a manual request (``specops.io/action`` annotation) not yet acknowledged → ``tick(action=…)``;
2. a wanted version that is neither stable nor canary (nor the last one rolled back) → ``begin``;
3. alerts from the receiver (``specops.io/alerts``) not yet acknowledged → ``tick(alerts=…)``;
4. a promotion or rollback not yet confirmed → ``tick`` (the brain re-applies it, never decides a
   second one);
5. an analysis that is due (every ``analysisIntervalSeconds``) while the canary is Ready → ``tick``.

Only the scheduled analysis (5) reads Prometheus; manual actions and alerts are decided without
metrics, so they work while Prometheus is down. At most one call per reconcile; the status patch that
follows records the state with a revision counter and acknowledges the request, so a restarted
operator continues from status and neither promotes nor rolls back twice. A promotion or rollback is
written to status (Promoting / RollingBack) before the controller applies any of it: a crash while
applying it leaves that phase, from which the next reconcile applies the same decision again.
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
from specops.rollout.brain import APPLYING_PHASES
from specops.rollout.model import (
    Alert,
    Decision,
    DecisionKind,
    ManualAction,
    Phase,
    Role,
    RolloutState,
    WindowMetrics,
)
from specops.rollout.ports import AuditTrail
from specops_operator import builders, constants, kube
from specops_operator import status as status_
from specops_operator.metrics import MetricsUnavailable, PrometheusMetrics
from specops_operator.registry import PairVersions
from specops_operator.serving import KServeBackend
from specops_operator.spec import DeploymentSpec, parse

ACTOR = "specops-operator"
IDLE_RECHECK_S = 60.0
"""Longest sleep between reconciles of a deployment with nothing due (sync and bake clean-up)."""
RETRY_S = 5.0
"""Sleep after a failed reconcile (API, registry or audit store unreachable)."""

log = logging.getLogger(__name__)


@dataclass
class Runtime:
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
class Memory:
    """Per-deployment memory of the process: the last status written and the last sync."""

    status: dict[str, Any] | None = None
    synced: tuple[Any, ...] | None = None


@dataclass
class Outcome:
    """What one reconcile did and when the next one is due."""

    next_in: float
    decision: Decision | None = None
    status: dict[str, Any] = field(default_factory=dict)
    acted: str = ""


class _NoMetrics:
    """A MetricsSource with empty windows, for ticks that must not depend on Prometheus."""

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        return WindowMetrics()


NO_METRICS = _NoMetrics()


class StatusStore:
    """``StateStore`` over one reconcile: the controller's saves are kept here and written to
    ``status`` in one patch at the end of the reconcile (see :func:`reconcile`), except a promotion
    or rollback about to be applied, which ``persist`` writes at once."""

    def __init__(self, state: RolloutState, persist: Callable[[RolloutState], None] | None = None) -> None:
        self.state = state
        self.saves = 0
        self.persist = persist

    def load(self, deployment: str) -> RolloutState | None:
        return self.state

    def save(self, state: RolloutState) -> None:
        self.state = state
        self.saves += 1
        if self.persist is not None and state.phase in APPLYING_PHASES:
            self.persist(state)


ReadyLookup = Callable[[str, str], bool | None]
"""(namespace, InferenceService name) → Ready, None when not seen."""


def subject(view: View) -> str:
    """The deployment's name in the audit log and the rollout state."""
    return f"{view.namespace}/{view.name}"


def reconcile(runtime: Runtime, view: View, memory: Memory, *, ready: ReadyLookup) -> Outcome:
    """Reconcile ``view`` once; write its status; say when to come back."""
    now = runtime.clock()
    current = _newest(memory.status, view.status)
    saved = status_.load_state(current)
    try:
        spec = parse(view.spec)
        if saved is not None and saved.stable_version is not None and saved.pair != spec.pair:
            raise InvalidInput(
                f"spec.pair.name cannot change from {saved.pair} to {spec.pair}; create another SpeculativeDeployment"
            )
    except InvalidInput as error:
        return _reject(runtime, view, memory, current, saved, str(error))

    state0 = saved or RolloutState(deployment=subject(view), pair=spec.pair)

    def persist(state: RolloutState) -> None:
        """Write a promotion or rollback to status before the controller applies it."""
        nonlocal current
        intent = status_.render(
            state,
            revision=status_.revision(current) + 1,
            conditions=[_ready_condition([], state), *status_.phase_conditions(state)],
            previous=current,
            extra={"observedGeneration": view.generation},
        )
        intent["rollout"]["tickedAt"] = ((current or {}).get("rollout") or {}).get("tickedAt")
        _write(runtime, view, memory, current, intent)
        current = _merged(current or {}, intent)

    store = StatusStore(state0, persist)
    owner = builders.Owner(name=view.name, namespace=view.namespace, uid=view.uid)
    backend = KServeBackend(
        client=runtime.kube,
        owner=owner,
        spec=spec,
        prior=state0,
        sources=lambda version: runtime.versions.source(spec.pair, version),
        ready=lambda name: ready(view.namespace, name),
    )
    sides = {
        role: version
        for role, version in ((Role.CANARY, state0.canary_version), (Role.STABLE, state0.stable_version))
        if version
    }
    metrics = PrometheusMetrics(
        http=runtime.http, url=runtime.prometheus_url, model=spec.pair, runtime=spec.runtime.type, sides=sides
    )
    control = rollout_controller.RolloutController(
        deployment=subject(view),
        pair=spec.pair,
        policy=spec.policy,
        serving=backend,
        metrics=NO_METRICS,
        aliases=runtime.versions,
        audit=runtime.audit,
        states=store,
        actor=runtime.actor,
    )
    # Only a scheduled analysis reads Prometheus (below). Manual actions and alerts are decided without
    # metrics — the brain does not analyse for them — so they work while Prometheus is down, and an alert
    # never sneaks in an analysis out of schedule (an empty window is inconclusive: the brain waits).

    ticked_at = ((current or {}).get("rollout") or {}).get("tickedAt")
    extra: dict[str, Any] = {"observedGeneration": view.generation, "message": None}
    problems: list[tuple[str, str]] = []  # (reason, message) for the Ready/Degraded conditions
    decision: Decision | None = None
    acted = ""
    more = False
    analysed_at: float | None = None

    action, action_id = _pending_action(view.annotations, current)
    alerts, alerts_id = _pending_alerts(view.annotations, current)
    rejected = (current or {}).get("rejectedVersion")
    try:
        desired = runtime.versions.resolve(spec.pair, spec.version)
    except NotFound as error:
        desired = None
        problems.append(("UnknownVersion", str(error)))
    except Conflict as error:
        desired = None
        problems.append(("VersionRefused", str(error)))
    if rejected is not None and desired is not None and desired != rejected:
        rejected = None  # the spec moved on: a later return to that version is a new request
    extra["rejectedVersion"] = rejected

    try:
        if action is not None:
            acted = "action"
            try:
                manual = ManualAction(action)
            except ValueError:
                result = f"ignored: unknown action {action!r} (expected promote, rollback, pause or resume)"
            else:
                decision = control.tick(now=now, action=manual)
                result = decision.reason
            extra["lastAction"] = {"id": action_id, "action": action, "at": status_.iso(now), "result": result}
            more = desired is not None or alerts is not None
        elif (
            desired is not None
            and desired not in (state0.stable_version, state0.canary_version)
            and desired != rejected
            and state0.phase not in (Phase.PROGRESSING, Phase.PAUSED, *APPLYING_PHASES)
        ):
            acted = "begin"
            decision = control.begin(desired, now=now)
            ticked_at = now
            more = alerts is not None
        elif alerts is not None:
            acted = "alerts"
            pages = tuple(alert for alert in alerts if alert.severity == "page")
            if pages and state0.phase in (Phase.PROGRESSING, Phase.PROMOTED):
                decision = control.tick(now=now, alerts=pages)
            extra["lastAlerts"] = {"id": alerts_id, "at": status_.iso(now), "names": [a.name for a in alerts]}
        elif state0.phase in APPLYING_PHASES:
            acted = "rollback" if state0.phase is Phase.ROLLING_BACK else "promotion"
            decision = control.tick(now=now)
        elif state0.phase is Phase.PROGRESSING and _due(now, ticked_at, spec):
            canary = backend.serving_names(state0).get(Role.CANARY.value, "")
            routed = memory.synced is not None and memory.synced[:5] == (
                state0.phase,
                state0.stable_version,
                state0.canary_version,
                state0.weight,
                True,
            )
            if ready(view.namespace, canary) and not routed:
                # Ready, but this process has not yet routed its share of traffic to it (just became
                # Ready, or the operator restarted): route first (sync below); the first window starts now.
                ticked_at = now
            elif ready(view.namespace, canary):
                acted = "analysis"
                # Fetch the window first (one query, cached by the metrics adapter), so that ``now`` — the
                # verdict's time in status — is when the data was in hand, not before the round trip.
                for role, version in sides.items():
                    metrics.window(role=role, version=version, seconds=spec.policy.analysis_interval_s)
                now = runtime.clock()
                control.metrics = metrics
                decision = control.tick(now=now)
                ticked_at = now
                analysed_at = now
            else:
                problems.append(("WaitingForInferenceService", f"canary InferenceService {canary} is not Ready"))
    except MetricsUnavailable as error:
        problems.append(("MetricsUnavailable", str(error)))
        ticked_at = now  # try again at the next interval, not in a tight loop
    except (SpecOpsError, kube.ApiException, httpx.HTTPError) as error:
        log.warning("%s: reconcile failed: %s", subject(view), error)
        problems.append(("ApplyFailed", f"{type(error).__name__}: {error}"))

    state = store.state
    if state.phase is Phase.ROLLED_BACK and state0.phase is not Phase.ROLLED_BACK:
        extra["rejectedVersion"] = state0.stable_version if state0.phase is Phase.PROMOTED else state0.canary_version
    if decision is not None and analysed_at is None and decision.analysis is not None:
        analysed_at = now

    # Converge the cluster to the state (missing objects, route weight once Ready, retired versions).
    canary_name = backend.serving_names(state).get(Role.CANARY.value)
    baking = state.promoted_at is not None and now - state.promoted_at <= spec.policy.bake_s
    key = (
        state.phase,
        state.stable_version,
        state.canary_version,
        state.weight,
        bool(canary_name and ready(view.namespace, canary_name)),
        baking,
        spec.deployment_mode,
    )
    if key != memory.synced or (decision is not None and decision.kind is not DecisionKind.HOLD):
        try:
            backend.sync(state, now=now)
            memory.synced = key
        except (kube.ApiException, SpecOpsError) as error:
            problems.append(("ApplyFailed", f"sync: {error}"))

    stable_name = backend.serving_names(state).get(Role.STABLE.value)
    if stable_name and not ready(view.namespace, stable_name) and not problems:
        problems.append(("WaitingForInferenceService", f"InferenceService {stable_name} is not Ready"))
    conditions = [_ready_condition(problems, state), *status_.phase_conditions(state)]
    if any(reason in ("MetricsUnavailable", "ApplyFailed") for reason, _ in problems):
        conditions[-1] = status_.condition("Degraded", True, problems[0][0], problems[0][1])
    if problems:
        extra["message"] = problems[0][1]
    elif decision is not None:
        extra["message"] = decision.reason

    new_status = status_.render(
        state,
        revision=status_.revision(current) + 1,
        conditions=conditions,
        previous=current,
        analysed_at=analysed_at,
        extra=extra,
    )
    new_status["rollout"]["tickedAt"] = ticked_at
    _write(runtime, view, memory, current, new_status)
    if "lastAction" in extra:  # acknowledged: the request annotations can go
        runtime.kube.patch(
            kube.DEPLOYMENTS,
            view.namespace,
            view.name,
            {"metadata": {"annotations": {constants.ACTION_ANNOTATION: None, constants.ACTION_ID_ANNOTATION: None}}},
        )
    return Outcome(
        next_in=0.0 if more else _next_in(now, ticked_at, state, spec, problems),
        decision=decision,
        status=new_status,
        acted=acted,
    )


def _reject(
    runtime: Runtime,
    view: View,
    memory: Memory,
    current: dict[str, Any] | None,
    saved: RolloutState | None,
    message: str,
) -> Outcome:
    """An invalid spec: say so in a condition; keep serving whatever is serving."""
    conditions = [status_.condition("Ready", False, "InvalidSpec", message)]
    if saved is not None:
        conditions += status_.phase_conditions(saved)
        new_status = status_.render(
            saved,
            revision=status_.revision(current) + 1,
            conditions=conditions,
            previous=current,
            extra={"message": message, "observedGeneration": view.generation},
        )
        new_status["rollout"]["tickedAt"] = ((current or {}).get("rollout") or {}).get("tickedAt")
    else:
        new_status = {
            "phase": Phase.FAILED.value,
            "message": message,
            "observedGeneration": view.generation,
            "conditions": status_.keep_transition_times(conditions, (current or {}).get("conditions", [])),
        }
    _write(runtime, view, memory, current, new_status)
    return Outcome(next_in=IDLE_RECHECK_S, status=new_status, acted="reject")


def _ready_condition(problems: list[tuple[str, str]], state: RolloutState) -> dict[str, Any]:
    if problems:
        return status_.condition("Ready", False, problems[0][0], problems[0][1])
    if state.stable_version is None:
        return status_.condition("Ready", False, "NothingServing", "no version deployed yet")
    return status_.condition("Ready", True, "Serving", f"version {state.stable_version} is serving")


def _write(
    runtime: Runtime, view: View, memory: Memory, current: dict[str, Any] | None, new_status: dict[str, Any]
) -> None:
    """Patch status unless nothing but the revision counter would change."""
    if current is not None and _same(current, new_status):
        return
    runtime.kube.patch_status(kube.DEPLOYMENTS, view.namespace, view.name, new_status)
    memory.status = _merged(current or {}, new_status)


def _same(current: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(status: dict[str, Any]) -> str:
        rollout = {k: v for k, v in (status.get("rollout") or {}).items() if k != "revision"}
        return json.dumps({**status, "rollout": rollout}, sort_keys=True, default=str)

    return strip(_merged(current, new)) == strip(current)


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` after a JSON merge patch."""
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def _newest(mine: dict[str, Any] | None, seen: dict[str, Any] | None) -> dict[str, Any] | None:
    """The process's own last write unless the object's status is at least as new (revision)."""
    if mine is None:
        return seen or None
    return seen if status_.revision(seen) >= status_.revision(mine) else mine


def _pending_action(annotations: dict[str, str], current: dict[str, Any] | None) -> tuple[str | None, str]:
    action = annotations.get(constants.ACTION_ANNOTATION)
    if not action:
        return None, ""
    action_id = annotations.get(constants.ACTION_ID_ANNOTATION, "")
    last = (current or {}).get("lastAction") or {}
    if action_id and last.get("id") == action_id:
        return None, action_id  # acknowledged; the annotation's removal is still on its way
    return action.strip().lower(), action_id


def _pending_alerts(
    annotations: dict[str, str], current: dict[str, Any] | None
) -> tuple[tuple[Alert, ...] | None, str]:
    from specops_operator import alerts as alerts_

    raw = annotations.get(constants.ALERTS_ANNOTATION)
    if not raw:
        return None, ""
    try:
        batch_id, parsed = alerts_.decode(raw)
    except ValueError as error:
        log.warning("ignoring malformed %s annotation: %s", constants.ALERTS_ANNOTATION, error)
        return None, ""
    if ((current or {}).get("lastAlerts") or {}).get("id") == batch_id:
        return None, batch_id
    return parsed, batch_id


def _due(now: float, ticked_at: float | None, spec: DeploymentSpec) -> bool:
    return ticked_at is None or now - ticked_at >= spec.policy.analysis_interval_s - 0.01


def _next_in(
    now: float, ticked_at: float | None, state: RolloutState, spec: DeploymentSpec, problems: list[tuple[str, str]]
) -> float:
    interval = spec.policy.analysis_interval_s
    if any(reason == "ApplyFailed" for reason, _ in problems):
        return min(RETRY_S, interval)
    if state.phase in APPLYING_PHASES:
        return min(RETRY_S, interval)
    if state.phase is Phase.PROGRESSING:
        if any(reason == "WaitingForInferenceService" for reason, _ in problems):
            return min(RETRY_S, interval)
        elapsed = now - ticked_at if ticked_at is not None else interval
        return max(0.05, interval - elapsed)
    return min(IDLE_RECHECK_S, max(interval, 1.0))
