"""Builds the local body: governance store, registry, state files, router, servers, scraper, controller."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specops.local.backend import LocalServingBackend
from specops.local.offline import DetachedServing
from specops.local.router import LocalRouter
from specops.local.scrape import ScrapingMetricsSource
from specops.local.state_files import FileStateStore
from specops.rollout import intake
from specops.rollout.controller import RolloutController, analysis_window_s
from specops.rollout.model import Alert, Decision, ManualAction, Phase, Role, RolloutPolicy, RolloutState, WindowMetrics
from specops.rollout.ports import EmptyMetrics
from specops.settings import Settings


def _ensure_home(settings: Settings) -> None:
    from specops.errors import StoreUnavailable

    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        probe = settings.home / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise StoreUnavailable(f"cannot write the state folder {settings.home}: {error.strerror}") from error


def approval_gate(audit: Any) -> Any:
    """``approve(pair, version)`` enforcing the governance store's approval policy."""
    from specops.governance import approvals

    return lambda pair, version: approvals.require_approval(audit.store, pair, version)


def _stores(settings: Settings) -> tuple[Any, Any, FileStateStore]:
    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.registry import PairRegistry

    _ensure_home(settings)
    audit = AuditLog(open_store(settings.database_url))
    registry = PairRegistry.from_settings(settings, audit=audit)
    return audit, registry, FileStateStore(settings.home)


def detached_controller(
    settings: Settings, *, deployment: str, pair: str, policy: RolloutPolicy | None = None
) -> RolloutController:
    """A controller for a deployment no runtime serves: decisions move aliases, state and audit only."""
    audit, registry, states = _stores(settings)
    return RolloutController(
        deployment=deployment,
        pair=pair,
        policy=policy or RolloutPolicy(),
        serving=DetachedServing(),
        metrics=EmptyMetrics(),
        aliases=registry,
        audit=audit,
        states=states,
        actor=f"cli:{os.environ.get('USER', 'unknown')}",
        approve=approval_gate(audit),
    )


@dataclass(frozen=True)
class Round:
    """One round of the local body: the state it started from, the intake's plan, the decision (None
    when the plan made no controller call), the state it left, and seconds until the next round."""

    now: float
    before: RolloutState
    plan: intake.Plan
    decision: Decision | None
    after: RolloutState
    next_in: float


@dataclass
class LocalDeployment:
    """One deployment served on this machine.

    Between rounds it remembers what the operator keeps in status: when the analysis window began,
    the version last rolled back, and alerts taken from the state files but not yet handled.
    """

    settings: Settings
    deployment: str
    pair: str
    policy: RolloutPolicy
    audit: Any
    registry: Any
    states: FileStateStore
    router: LocalRouter
    backend: LocalServingBackend
    metrics: ScrapingMetricsSource
    controller: RolloutController
    _downloads: dict[str, Path] = field(default_factory=dict)
    window_started_at: float | None = None
    rejected_version: str | None = None
    held_alerts: tuple[Alert, ...] | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        deployment: str,
        pair: str,
        policy: RolloutPolicy,
        server_args: tuple[str, ...] = (),
        model_name: str | None = None,
    ) -> LocalDeployment:
        """Open the stores and build (not start) the router, backend, scraper and controller.

        server_args: more `specops serve` flags. model_name: the name clients send (default: the pair's).
        """
        audit, registry, states = _stores(settings)
        router = LocalRouter()
        downloads: dict[str, Path] = {}

        def resolve(version: str) -> Path:
            if version not in downloads:
                downloads[version] = registry.download(pair, version)
            return downloads[version]

        backend = LocalServingBackend(
            deployment=deployment,
            pair=pair,
            resolve=resolve,
            router=router,
            logs_dir=settings.home / "logs",
            server_args=("--database-url", settings.database_url, *server_args),
            model_name=model_name,
        )
        metrics = ScrapingMetricsSource(backend.targets, interval_s=1.0)
        controller = RolloutController(
            deployment=deployment,
            pair=pair,
            policy=policy,
            serving=backend,
            metrics=metrics,
            aliases=registry,
            audit=audit,
            states=states,
            approve=approval_gate(audit),
        )
        return cls(
            settings, deployment, pair, policy, audit, registry, states, router, backend, metrics, controller, downloads
        )

    def register(
        self,
        *,
        target: Path,
        draft: Path,
        min_acceptance: float | None = None,
        note: str = "",
        config: dict[str, Any] | None = None,
    ) -> Any:
        """The qualified version holding exactly these checkpoints, registering (and qualifying) it if new."""
        from specops.errors import NotFound
        from specops.pairs.pair_spec import weights_sha256

        wanted = {"pair.target_sha256": weights_sha256(target), "pair.draft_sha256": weights_sha256(draft)}
        try:
            known = self.registry.versions(self.pair)
        except NotFound:
            known = []
        for version in known:
            if version.qualified and all(version.tags.get(k) == v for k, v in wanted.items()):
                return version
        return self.registry.register(
            self.pair, target=target, draft=draft, min_acceptance=min_acceptance, note=note, config=config
        )

    def describe(self, version: Any) -> str:
        """One line of a version's qualification figures."""
        tags = version.tags
        return (
            f"acceptance {tags.get('qualification.acceptance_rate', '?')}, "
            f"mean accepted length {tags.get('qualification.mean_accepted_length', '?')}, "
            f"speedup {tags.get('qualification.speedup', '?')}× greedy, "
            f"{tags.get('qualification.speedup_sampled', '?')}× sampled, "
            f"lossless {tags.get('qualification.lossless', '?')}"
        )

    def start(self, *, serve_router: bool = True) -> None:
        """Start the router (unless a front router dispatches to it) and the scraper; claim the deployment
        for manual actions."""
        if self.states.load(self.deployment) is None:
            self.states.save(RolloutState(deployment=self.deployment, pair=self.pair))
        if serve_router:
            self.router.start()
        self.metrics.start()
        self.states.attach(self.deployment)

    def stop(self) -> None:
        """Stop servers, scraper and router; release the deployment."""
        self.backend.shutdown()
        self.metrics.stop()
        self.router.stop()
        self.states.detach(self.deployment)

    def resume_serving(self) -> RolloutState:
        """Start the servers the saved state says run (stable, and a canary at its weight) without a
        transition: a restarted runtime serves what it served, and the rounds carry on from there."""
        state = self.controller.state()
        if state.stable_version is not None and Role.STABLE not in self.backend.servers:
            self.backend.deploy_stable(state.stable_version)
        serving_canary = state.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING)
        if state.canary_version is not None and serving_canary and Role.CANARY not in self.backend.servers:
            self.backend.start_canary(state.canary_version, state.weight)
        if state.phase is Phase.PROGRESSING:
            self.window_started_at = time.time()  # the new servers' counters start now: a full window first
        return state

    def pending_action(self) -> ManualAction | None:
        """A manual action left by `specops rollback|promote|pause|resume`, if any."""
        return self.states.take_request(self.deployment)

    def firing_alerts(self) -> tuple[Alert, ...]:
        """Alerts the receiver posted for this deployment since the last tick."""
        return self.states.take_alerts(self.deployment)

    def run_round(self, *, desired_version: str | None = None, now: float | None = None) -> Round:
        """read → intake → controller: the same single controller call the operator's reconcile makes.

        Reads the saved state, a pending manual action and the posted alerts; ``desired_version`` is the
        version the caller wants rolled out (None: keep what runs). The canary counts as serving its
        share at once, because the local backend routes to a canary only after its server is ready.
        """
        now = time.time() if now is None else now
        before = self.controller.state()
        action = self.pending_action()
        alerts = self.held_alerts if self.held_alerts is not None else (self.firing_alerts() or None)
        plan = intake.plan(
            intake.Intake(
                state=before,
                now=now,
                analysis_interval_s=self.policy.analysis_interval_s,
                desired_version=desired_version,
                rejected_version=self.rejected_version,
                action=None if action is None else action.value,
                alerts=alerts,
                window_started_at=self.window_started_at,
            )
        )
        self.held_alerts = alerts if plan.step in (intake.Step.ACTION, intake.Step.BEGIN) else None
        decision = self.controller.follow(plan, now=now)
        after = self.controller.state()
        self.window_started_at = now if plan.step is intake.Step.ANALYSIS else plan.window_started_at
        self.rejected_version = intake.rejected_after(before, after, rejected_version=plan.rejected_version)
        interval = self.policy.analysis_interval_s
        if plan.again:
            next_in = 0.0
        elif after.phase is Phase.PROGRESSING:
            next_in = intake.next_analysis_in(now, self.window_started_at, interval_s=interval)
        else:
            next_in = interval
        return Round(now=now, before=before, plan=plan, decision=decision, after=after, next_in=next_in)

    def last_windows(self, state: RolloutState, *, now: float) -> dict[str, WindowMetrics]:
        """Both roles' figures over the analysis window the controller judged ``state`` on."""
        seconds = analysis_window_s(state, self.policy, now)
        windows = {}
        for role, version in ((Role.STABLE, state.stable_version), (Role.CANARY, state.canary_version)):
            if version is not None:
                windows[role.value] = self.metrics.window(role=role, version=version, seconds=seconds)
        return windows
