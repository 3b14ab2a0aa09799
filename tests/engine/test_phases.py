"""The engine names its host phases: ranges in a profiler's trace, or a tally of host time."""

from __future__ import annotations

import pytest
from torch.profiler import ProfilerActivity, profile

from specops.engine import PHASES, SamplingParams, SpeculationConfig, SpeculativeEngine, phases


def test_a_phase_outside_the_engines_list_is_refused():
    with pytest.raises(ValueError, match="unknown phase"):
        phases.named("elsewhere")


def test_a_generate_call_tallies_host_time_in_the_engines_own_phases(target, near_draft, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=SpeculationConfig(adaptive=False))
    with phases.host_microseconds() as tally:
        engine.generate([[1, 2, 3]], [SamplingParams(max_new_tokens=8)])
    assert {"verify_step", "get", "propose", "forward", "emit"} <= set(tally) <= set(PHASES)
    assert tally["verify_step"] >= tally["get"] > 0  # the read of the decision is inside the step


def test_under_the_profiler_each_phase_is_a_named_range(target, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, config=SpeculationConfig(proposer="none"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.generate([[1, 2, 3]], [SamplingParams(max_new_tokens=4)])
    names = {event.key for event in prof.key_averages()}
    assert {"verify_step", "forward", "emit", "get"} <= names
