"""Adaptive draft length, the batch-size schedule and the measured fallback to plain decoding."""

from __future__ import annotations

import pytest

from specops.engine import SamplingParams, SpeculationConfig, SpeculativeEngine
from specops.engine.adaptive import DraftLengthController, SpeculationGovernor, expected_speedup


def test_expected_speedup_matches_the_papers_formula():
    assert expected_speedup(0.0, 3, 0.1) == pytest.approx(1 / 1.3)
    assert expected_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8**5) / (0.2 * 1.2))


def test_high_acceptance_drafts_long_and_low_acceptance_stops_drafting():
    controller = DraftLengthController(SpeculationConfig(num_speculative_tokens=8), batch_size=2)
    for _ in range(20):
        controller.update(0, 8, 8)  # always fully accepted
        controller.update(1, 4, 0)  # always rejected at once
    assert controller.choose(0, 8, cost_ratio=0.05) == 8
    assert controller.choose(1, 8, cost_ratio=0.05) == 0
    assert controller.alpha(1) < 0.05


@pytest.mark.parametrize(("batch_size", "cap"), [(1, 8), (4, 8), (5, 4), (16, 4), (64, 2), (65, 0)])
def test_the_batch_schedule_caps_k_and_switches_speculation_off(batch_size, cap):
    config = SpeculationConfig(num_speculative_tokens=8, batch_schedule=((4, 8), (16, 4), (64, 2)))
    assert config.max_draft_length(batch_size) == cap


def test_a_fixed_k_ignores_the_schedule():
    assert SpeculationConfig(num_speculative_tokens=5, adaptive=False).max_draft_length(1000) == 5


def test_the_governor_falls_back_when_speculation_measures_slower():
    governor = SpeculationGovernor(SpeculationConfig(probe_interval=8))
    governor.record(batch_size=1, speculative=True, tokens=10, seconds=1.0)
    governor.record(batch_size=1, speculative=False, tokens=20, seconds=1.0)
    choices = [governor.speculate(1) for _ in range(32)]
    assert sum(choices) == 4  # only the probes, one in eight steps
    governor.record(batch_size=1, speculative=True, tokens=90, seconds=1.0)
    governor.record(batch_size=1, speculative=True, tokens=90, seconds=1.0)
    assert sum(governor.speculate(1) for _ in range(32)) == 28


def test_a_useless_draft_falls_back_to_plain_decoding_by_itself(target, draft, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, draft=draft, config=SpeculationConfig(num_speculative_tokens=4))
    steps = []
    engine.generate([[1, 2, 3], [4, 5]], [SamplingParams(max_new_tokens=40)] * 2, on_step=steps.append)
    drafted = sum(sum(s.num_draft_tokens) for s in steps)
    assert drafted < 0.25 * 4 * 2 * len(steps)
    assert sum(not s.speculative for s in steps[-10:]) >= 8
