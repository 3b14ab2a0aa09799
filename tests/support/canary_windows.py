"""Canary observation windows as plain data: a drafting pair that accepts well, one that accepts
badly, one that stopped drafting, and one with too little traffic to judge."""

from __future__ import annotations

from specops.rollout import WindowMetrics


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
