"""The ports through which a rollout touches the world. Adapters: ``specops.local`` (processes on
loopback) and ``specops_operator`` (KServe through the Kubernetes API)."""

from __future__ import annotations

from typing import Any, Protocol

from specops.rollout.model import Role, RolloutState, WindowMetrics


class ServingBackend(Protocol):
    """Runs pair versions and splits traffic between stable and canary."""

    def deploy_stable(self, version: str) -> None:
        """Serve ``version`` as the stable role at 100 %."""

    def start_canary(self, version: str, weight: int) -> None:
        """Start ``version`` as the canary and give it ``weight`` percent of traffic once ready."""

    def set_canary_weight(self, weight: int) -> None:
        """Move the split to ``weight`` percent canary."""

    def promote_canary(self) -> None:
        """Make the canary the stable version at 100 % and retire the old stable."""

    def remove_canary(self, stable_version: str | None = None) -> None:
        """Rollback: all traffic to ``stable_version`` (the current stable when None), canary stopped.

        After a promotion, a rollback restores the previous version, which the adapter cannot infer.
        """


class MetricsSource(Protocol):
    """Reads counter increases per role over a trailing window."""

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        """Increases of the serving counters of ``role``/``version`` over the last ``seconds``."""


class VersionAliases(Protocol):
    """Moves the registry's aliases (production, canary, previous)."""

    def set_alias(self, pair: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``pair`` at ``version``."""

    def delete_alias(self, pair: str, alias: str) -> None:
        """Remove ``alias`` from ``pair`` (no error when absent)."""


class AuditTrail(Protocol):
    """Appends events to the tamper-evident audit log."""

    def append(self, *, actor: str, action: str, subject: str, payload: dict[str, Any]) -> object:
        """Append one event; must not return before it is durable."""


class StateStore(Protocol):
    """Keeps each deployment's rollout state between decisions (a file locally, status in Kubernetes)."""

    def load(self, deployment: str) -> RolloutState | None:
        """The saved state, or None for an unknown deployment."""

    def save(self, state: RolloutState) -> None:
        """Persist ``state`` atomically."""


class EmptyMetrics:
    """A MetricsSource whose windows are empty, for decisions that must not read metrics (a deployment
    no process serves, or a round that only handles a request): an empty window never judges a canary."""

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        """An empty window."""
        return WindowMetrics()
