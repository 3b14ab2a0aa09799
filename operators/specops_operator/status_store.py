"""What the operator keeps of a deployment's status: the process's memory between reconciles, and the
status as the controller's ``StateStore`` within one reconcile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specops.rollout.brain import APPLYING_PHASES
from specops.rollout.model import Phase, RolloutState
from specops_operator import kube
from specops_operator import status as status_


@dataclass(frozen=True)
class Synced:
    """What the last sync converged the cluster to; a reconcile syncs again when any of it changes."""

    phase: Phase
    stable_version: str | None
    canary_version: str | None
    weight: int
    canary_ready: bool
    baking: bool
    deployment_mode: str

    def routed_canary_of(self, state: RolloutState) -> bool:
        """Whether this sync routed ``state``'s canary share of traffic to a Ready canary."""
        shape = (self.phase, self.stable_version, self.canary_version, self.weight)
        return self.canary_ready and shape == (state.phase, state.stable_version, state.canary_version, state.weight)


@dataclass
class Memory:
    """Per-deployment memory of the process: the last status written and the last sync."""

    status: dict[str, Any] | None = None
    synced: Synced | None = None


class StatusWriter:
    """Writes one deployment's status; ``current`` is the newest status this reconcile knows."""

    def __init__(
        self,
        *,
        client: kube.KubeClient,
        namespace: str,
        name: str,
        generation: int | None,
        memory: Memory,
        current: dict[str, Any] | None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.generation = generation
        self.memory = memory
        self.current = current

    def write(self, new_status: dict[str, Any]) -> None:
        """Patch status unless nothing but the revision counter would change."""
        if self.current is not None and status_.unchanged(self.current, new_status):
            return
        self.client.patch_status(kube.DEPLOYMENTS, self.namespace, self.name, new_status)
        self.current = self.memory.status = status_.merged(self.current or {}, new_status)

    def persist(self, state: RolloutState) -> None:
        """Write a promotion or rollback to status before the controller applies it."""
        intent = status_.render(
            state,
            revision=status_.revision(self.current) + 1,
            conditions=[status_.ready_condition([], state), *status_.phase_conditions(state)],
            previous=self.current,
            extra={"observedGeneration": self.generation},
        )
        intent["rollout"]["tickedAt"] = status_.window_started_at(self.current)
        self.write(intent)
        self.current = status_.merged(self.current or {}, intent)  # its revision counts even when unchanged


class StatusStore:
    """``StateStore`` over one reconcile: the controller's saves are kept here and written to
    ``status`` in one patch at the end of the reconcile, except a promotion or rollback about to be
    applied, which ``persist`` writes at once."""

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
