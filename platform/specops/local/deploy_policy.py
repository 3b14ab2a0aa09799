"""A deployment's rollout policy file (`specops deploy --policy FILE`): steps, interval, checks, deadline.

Example::

    steps: [10, 50, 100]
    interval_s: 60          # seconds between analyses (the metric window)
    checks:
      min_acceptance_rate: 0.3
      min_tokens_per_step: 1.1
      max_error_rate: 0.05
    deadline_s: 1800        # no verdict for this long → on_inconclusive
    on_inconclusive: rollback

Every key is optional (the product defaults of :class:`specops.rollout.model.RolloutPolicy`); an unknown
key is refused with its name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from specops.errors import InvalidInput
from specops.local import yaml_models
from specops.rollout.model import InconclusiveAction, RolloutPolicy

DEFAULTS = RolloutPolicy()


class Checks(BaseModel):
    """What each analysis judges, and how much data it needs first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_acceptance_rate: float = Field(DEFAULTS.min_acceptance_rate, ge=0.0, le=1.0)
    min_tokens_per_step: float = Field(DEFAULTS.min_tokens_per_step, ge=1.0, le=32.0)
    max_error_rate: float = Field(DEFAULTS.max_error_rate, ge=0.0, le=1.0)
    max_itl_p95_s: float | None = Field(DEFAULTS.max_itl_p95_s, gt=0.0)
    min_draft_tokens: int = Field(DEFAULTS.min_draft_tokens, ge=0)
    min_requests: int = Field(DEFAULTS.min_requests, ge=0)
    min_target_steps: int = Field(DEFAULTS.min_target_steps, ge=0)
    compare_to_stable: bool = DEFAULTS.compare_to_stable
    failure_limit: int = Field(DEFAULTS.failure_limit, ge=1, le=100)


class PolicyFile(BaseModel):
    """The policy file's keys (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[int] = Field(default_factory=lambda: list(DEFAULTS.steps))
    interval_s: float = Field(DEFAULTS.analysis_interval_s, ge=0.5, le=86400.0)
    checks: Checks = Field(default_factory=Checks)
    deadline_s: float = Field(DEFAULTS.max_inconclusive_s, ge=1.0)
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    automatic: bool = DEFAULTS.automatic
    bake_s: float = Field(DEFAULTS.bake_s, ge=0.0)

    def policy(self, *, source: str) -> RolloutPolicy:
        """The :class:`RolloutPolicy` these keys describe; RolloutPolicy's own checks named by key."""
        try:
            return RolloutPolicy(
                steps=tuple(self.steps),
                analysis_interval_s=self.interval_s,
                max_inconclusive_s=self.deadline_s,
                on_inconclusive=InconclusiveAction(self.on_inconclusive),
                automatic=self.automatic,
                bake_s=self.bake_s,
                **self.checks.model_dump(),
            )
        except ValueError as error:
            raise InvalidInput(f"{source}: {error}") from error


def load(path: Path) -> RolloutPolicy:
    """Read and validate a policy file."""
    return yaml_models.load(path, PolicyFile).policy(source=str(path))


def to_dict(policy: RolloutPolicy) -> dict[str, Any]:
    """A policy as JSON-ready data (saved with the deployment's request)."""
    data = dataclasses.asdict(policy)
    data["steps"] = list(policy.steps)
    data["on_inconclusive"] = policy.on_inconclusive.value
    return data


def from_dict(data: dict[str, Any]) -> RolloutPolicy:
    """The policy :func:`to_dict` saved; InvalidInput when the saved data no longer fits."""
    try:
        return RolloutPolicy(
            **{**data, "steps": tuple(data["steps"]), "on_inconclusive": InconclusiveAction(data["on_inconclusive"])}
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"saved rollout policy is not valid: {error}") from error
