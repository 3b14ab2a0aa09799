"""Rollout state survives a round trip through plain JSON (status subresource, state files)."""

from __future__ import annotations

import json

from specops.rollout import Observation, RolloutPolicy, RolloutState, brain, codec
from tests.support.canary_windows import bad


def test_state_round_trips_through_json(canarying: RolloutState, policy: RolloutPolicy) -> None:
    state, _ = brain.decide(canarying, Observation(now=1.0, canary=bad()), policy)
    assert state.last_analysis is not None
    again = codec.state_from_dict(json.loads(json.dumps(codec.state_to_dict(state))))
    assert again == state
