"""Builds the local body: governance store, registry, state files, router, servers, scraper, controller."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specops.local.backend import LocalServingBackend
from specops.local.offline import DetachedServing, NoMetrics
from specops.local.router import LocalRouter
from specops.local.scrape import ScrapingMetricsSource
from specops.local.state_files import FileStateStore
from specops.rollout.controller import RolloutController, analysis_window_s
from specops.rollout.model import Alert, ManualAction, Role, RolloutPolicy, RolloutState, WindowMetrics
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
        metrics=NoMetrics(),
        aliases=registry,
        audit=audit,
        states=states,
        actor=f"cli:{os.environ.get('USER', 'unknown')}",
        approve=approval_gate(audit),
    )


@dataclass
class LocalRuntime:
    """One deployment served on this machine."""

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

    @classmethod
    def open(cls, settings: Settings, *, deployment: str, pair: str, policy: RolloutPolicy) -> LocalRuntime:
        """Open the stores and build (not start) the router, backend, scraper and controller."""
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
            server_args=("--database-url", settings.database_url),
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

    def start(self) -> None:
        """Start the router and the scraper; claim the deployment for manual actions."""
        if self.states.load(self.deployment) is None:
            self.states.save(RolloutState(deployment=self.deployment, pair=self.pair))
        self.router.start()
        self.metrics.start()
        self.states.attach(self.deployment)

    def stop(self) -> None:
        """Stop servers, scraper and router; release the deployment."""
        self.backend.shutdown()
        self.metrics.stop()
        self.router.stop()
        self.states.detach(self.deployment)

    def pending_action(self) -> ManualAction | None:
        """A manual action left by `specops rollback|promote|pause|resume`, if any."""
        return self.states.take_request(self.deployment)

    def firing_alerts(self) -> tuple[Alert, ...]:
        """Alerts the receiver posted for this deployment since the last tick."""
        return self.states.take_alerts(self.deployment)

    def last_windows(self, state: RolloutState, *, now: float) -> dict[str, WindowMetrics]:
        """Both roles' figures over the analysis window the controller judged ``state`` on."""
        seconds = analysis_window_s(state, self.policy, now)
        windows = {}
        for role, version in ((Role.STABLE, state.stable_version), (Role.CANARY, state.canary_version)):
            if version is not None:
                windows[role.value] = self.metrics.window(role=role, version=version, seconds=seconds)
        return windows
