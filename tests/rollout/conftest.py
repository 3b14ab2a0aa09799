"""Plain-data fixtures for the rollout brain."""

from __future__ import annotations

import pytest

from specops.rollout import RolloutPolicy, RolloutState


@pytest.fixture
def policy() -> RolloutPolicy:
    return RolloutPolicy(
        steps=(10, 50, 100),
        min_draft_tokens=100,
        min_requests=5,
        min_acceptance_rate=0.3,
        max_error_rate=0.05,
        failure_limit=2,
        bake_s=600,
    )


@pytest.fixture
def canarying(policy: RolloutPolicy) -> RolloutState:
    from specops.rollout import brain

    stable = RolloutState(deployment="demo", pair="pair", stable_version="1", phase=brain.Phase.PROMOTED)
    state, _ = brain.start(stable, version="2", policy=policy, now=0.0)
    return state
