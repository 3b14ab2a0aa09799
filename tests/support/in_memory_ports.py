"""In-memory adapters for every port of the rollout controller, recording the calls they receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specops.rollout import Role, RolloutPolicy, RolloutState, WindowMetrics
from specops.rollout.controller import RolloutController


@dataclass
class Recorder:
    """In-memory adapters for every port, recording calls in order."""

    calls: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    saved: dict[str, RolloutState] = field(default_factory=dict)
    canary_window: WindowMetrics = field(default_factory=WindowMetrics)

    def deploy_stable(self, version: str) -> None:
        self.calls.append(f"deploy_stable {version}")

    def start_canary(self, version: str, weight: int) -> None:
        self.calls.append(f"start_canary {version} {weight}")

    def set_canary_weight(self, weight: int) -> None:
        self.calls.append(f"weight {weight}")

    def promote_canary(self) -> None:
        self.calls.append("promote_canary")

    def remove_canary(self, stable_version: str | None = None) -> None:
        self.calls.append(f"remove_canary {stable_version}")

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        self.calls.append(f"window {role.value}")
        return self.canary_window if role is Role.CANARY else WindowMetrics()

    def set_alias(self, pair: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_alias(self, pair: str, alias: str) -> None:
        self.aliases.pop(alias, None)

    def append(self, *, actor: str, action: str, subject: str, payload: dict[str, Any]) -> object:
        self.events.append((action, subject))
        return None

    def load(self, deployment: str) -> RolloutState | None:
        return self.saved.get(deployment)

    def save(self, state: RolloutState) -> None:
        self.saved[state.deployment] = state

    def controller(self, policy: RolloutPolicy, **options: Any) -> RolloutController:
        """A controller of deployment ``demo`` over this recorder as every port (``options`` override)."""
        ports = {"serving": self, "metrics": self, "aliases": self, "audit": self, "states": self}
        return RolloutController(deployment="demo", pair="p", policy=policy, **(ports | options))
