"""Plain-data fixtures for the rollout brain."""

from __future__ import annotations

import pytest

from specops.rollout import RolloutPolicy, RolloutState, WindowMetrics


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


def drafting(num_accepted_tokens: int) -> WindowMetrics:
    """20 requests, 300 target steps of which 100 verified 4 draft tokens each."""
    return WindowMetrics(
        num_requests=20,
        num_drafts=100,
        num_draft_tokens=400,
        num_accepted_tokens=num_accepted_tokens,
        num_target_steps=300,
        num_speculative_steps=100,
    )


def good() -> WindowMetrics:
    return drafting(200)


def bad() -> WindowMetrics:
    return drafting(40)


def plain() -> WindowMetrics:
    """A canary whose engine stopped drafting: plenty of traffic, not one draft token."""
    return WindowMetrics(num_requests=20, num_target_steps=900, num_speculative_steps=0)


def thin() -> WindowMetrics:
    return WindowMetrics(num_requests=1, num_drafts=5, num_draft_tokens=20, num_accepted_tokens=0, num_target_steps=8)
