"""Adaptive draft length, the batch-size schedule and the measured fallback to plain decoding."""

from __future__ import annotations

import pytest

from specops.engine import AdaptationSettings, SamplingParams, SpeculationConfig, SpeculativeEngine
from specops.engine.adaptive import (
    PRIOR_ALPHA,
    DraftLengthController,
    PairAcceptance,
    SpeculationGovernor,
    expected_speedup,
    expected_tokens,
)
from tests.support.tiny_llamas import hf_greedy, tiny_llama


def test_expected_speedup_matches_the_papers_formula():
    assert expected_speedup(0.0, 3, 0.1) == pytest.approx(1 / 1.3)
    assert expected_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8**5) / (0.2 * 1.2))
    assert expected_tokens(0.5, 0) == pytest.approx(1.0)


def test_a_sequence_drafts_long_when_accepted_and_short_when_rejected():
    controller = DraftLengthController(SpeculationConfig(num_speculative_tokens=8), batch_size=2)
    for _ in range(20):
        controller.update(0, 8, 8)  # always fully accepted
        controller.update(1, 4, 0)  # always rejected at once
    assert controller.length(0, 8) == 8
    assert controller.length(1, 8) == 1
    assert controller.alpha(1) < 0.05
    assert controller.length(0, 0) == 0


@pytest.mark.parametrize(("batch_size", "cap"), [(1, 8), (4, 8), (5, 4), (16, 4), (64, 2), (65, 0)])
def test_the_batch_schedule_caps_k_and_switches_speculation_off(batch_size, cap):
    config = SpeculationConfig(
        num_speculative_tokens=8, adaptation=AdaptationSettings(batch_schedule=((4, 8), (16, 4), (64, 2)))
    )
    assert config.max_draft_length(batch_size) == cap


def test_a_fixed_k_ignores_the_schedule():
    assert SpeculationConfig(num_speculative_tokens=5, adaptive=False).max_draft_length(1000) == 5


def gain_at(alpha: float):
    return lambda k: expected_tokens(alpha, k)


def test_the_governor_times_every_k_then_keeps_the_fastest_and_probes_the_rest():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(probe_interval=8)))
    step_seconds = {0: 1.0, 1: 1.1, 2: 1.2, 3: 1.3}  # drafting costs 10% a token
    tried = []
    for _ in range(4):
        k = governor.choose(1, cap=3, gain=gain_at(0.7))
        tried.append(k)
        governor.record(batch_size=1, k=k, seconds=step_seconds[k])
    assert sorted(tried) == [0, 1, 2, 3]
    choices = [governor.choose(1, cap=3, gain=gain_at(0.7)) for _ in range(32)]
    assert choices.count(3) == 32 - 2 * 3  # 2.53 tokens in 1.3 s beats 1 token in 1 s
    # a probe of 3 consecutive steps re-times a neighbour (2) or plain decoding (0): 8 steps after
    # exploring, then 16 later (it confirmed the choice, so the interval doubled)
    probes = [choices[8:11], choices[24:27]]
    assert all(len(set(run)) == 1 and run[0] in (0, 2) for run in probes)
    assert {run[0] for run in probes} == {0, 2}


def test_the_choice_follows_the_running_sequences_acceptance_not_old_step_yields():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(probe_interval=1000)))
    for k in (2, 1, 0):
        assert governor.choose(1, cap=2, gain=gain_at(0.7)) == k
        governor.record(batch_size=1, k=k, seconds=1.0 + 0.2 * k)
    assert governor.choose(1, cap=2, gain=gain_at(0.8)) == 2  # 2.44 tokens in 1.4 s
    assert governor.choose(1, cap=2, gain=gain_at(0.1)) == 0  # 1.11 tokens in 1.4 s: plain wins


def test_near_a_tie_the_governor_keeps_its_current_k():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(probe_interval=1000)))
    for k in (1, 0):
        governor.choose(1, cap=1, gain=gain_at(0.6))
        governor.record(batch_size=1, k=k, seconds=1.0 + 0.6 * k)
    # k = 1 yields 1 + alpha tokens in 1.6 s, plain 1 token in 1 s: a tie at alpha 0.6. Within the
    # margin the governor keeps the K it chose first on rates, whichever that was
    first = governor.choose(1, cap=1, gain=gain_at(0.6))
    assert [governor.choose(1, cap=1, gain=gain_at(a)) for a in (0.62, 0.58, 0.63, 0.57)] == [first] * 4
    # a clear lead moves it either way
    assert governor.choose(1, cap=1, gain=gain_at(0.9)) == 1
    assert governor.choose(1, cap=1, gain=gain_at(0.55)) == 1  # 0.97 of plain: within the margin
    assert governor.choose(1, cap=1, gain=gain_at(0.2)) == 0
    assert governor.choose(1, cap=1, gain=gain_at(0.65)) == 0  # 1.03 of plain: within the margin


def test_a_stray_slow_step_does_not_move_the_choice():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(probe_interval=1000)))
    for k in (2, 1, 0):
        assert governor.choose(1, cap=2, gain=gain_at(0.7)) == k
        governor.record(batch_size=1, k=k, seconds=1.0 + 0.1 * k)
    for _ in range(5):
        k = governor.choose(1, cap=2, gain=gain_at(0.7))
        governor.record(batch_size=1, k=k, seconds=1.2)
    assert k == 2
    governor.record(batch_size=1, k=2, seconds=30.0)  # a garbage collection, say
    assert governor.choose(1, cap=2, gain=gain_at(0.7)) == 2
    assert governor.step_seconds(1, 2) == 1.2


def test_the_governor_falls_back_to_plain_decoding_when_drafting_does_not_pay():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(probe_interval=8)))
    for k in range(3):
        governor.record(batch_size=1, k=k, seconds=1.0 + k)
    choices = [governor.choose(1, cap=2, gain=gain_at(0.3)) for _ in range(32)]
    assert choices.count(0) == 32 - 2 * 3
    assert governor.step_seconds(1, 0) == 1.0


def test_a_batch_drafts_as_far_as_its_longest_sequence_would():
    """A step's drafting rounds and verification cover the longest draft for every row, so in a batch
    a hard sequence drafts as far as an easy one (it can only gain), and its gain counts so."""
    controller = DraftLengthController(SpeculationConfig(num_speculative_tokens=8), batch_size=3)
    for _ in range(20):
        controller.update(0, 4, 4)  # an easy sequence
        controller.update(1, 4, 0)  # a hard one
    assert controller.length(0, 8) == 8 and controller.length(1, 8) == 1
    assert controller.batch_length([True, True, False], 8) == 8
    assert controller.batch_length([False, True, False], 8) == 1
    assert controller.batch_length([False, False, False], 8) == 0
    hard_alone = controller.gain([False, True, False], 8)
    assert controller.gain([True, True, False], 8) == pytest.approx(
        expected_tokens(controller.long_run_alpha(0), 8) + expected_tokens(controller.long_run_alpha(1), 8)
    )
    assert hard_alone == pytest.approx(expected_tokens(controller.long_run_alpha(1), 1))


def test_the_controller_expects_tokens_from_running_sequences_only():
    controller = DraftLengthController(SpeculationConfig(num_speculative_tokens=4), batch_size=3)
    for _ in range(30):
        controller.update(0, 4, 4)
    assert controller.gain([True, False, False], 0) == pytest.approx(1.0)
    assert controller.gain([True, False, False], 4) > 4.5
    assert controller.gain([True, True, False], 0) == pytest.approx(2.0)


def test_a_run_of_rejections_shortens_drafts_but_does_not_switch_a_good_sequence_to_plain():
    controller = DraftLengthController(SpeculationConfig(num_speculative_tokens=4), batch_size=1)
    for _ in range(40):
        controller.update(0, 2, 1)  # half of the drafted tokens accepted, steadily
    for _ in range(3):
        controller.update(0, 2, 0)  # then a hard passage
    assert controller.length(0, 4) == 1
    assert controller.alpha(0) < 0.3
    assert controller.long_run_alpha(0) > 0.45
    # what the governor weighs against plain decoding (1 token) is the long-run figure
    assert controller.gain([True], 1) == pytest.approx(1 + controller.long_run_alpha(0))
    for _ in range(6):
        controller.update(0, 0, 0)  # plain steps: no evidence, the recent estimate reverts
    assert controller.alpha(0) == pytest.approx(controller.long_run_alpha(0), abs=0.05)
    assert controller.length(0, 4) >= 2


def test_new_sequences_start_from_the_pairs_recent_acceptance():
    pair = PairAcceptance()
    assert pair.alpha == pytest.approx(PRIOR_ALPHA)
    for _ in range(100):
        pair.update(num_accepted=1, num_rejections=3)  # 1 of 4 drafted tokens accepted per step
    assert pair.alpha == pytest.approx(0.25, abs=0.02)
    pair.update(num_accepted=0, num_rejections=0)  # a plain step changes nothing
    assert pair.alpha == pytest.approx(0.25, abs=0.02)
    controller = DraftLengthController(SpeculationConfig(), batch_size=1, prior_alpha=pair.alpha)
    assert controller.long_run_alpha(0) == pytest.approx(pair.alpha)


def test_an_engine_learns_its_pairs_acceptance_as_it_decodes(target, near_draft, tokenizer):
    engine = SpeculativeEngine(
        target, tokenizer, draft=near_draft, config=SpeculationConfig(adaptation=AdaptationSettings(always_draft=True))
    )
    results = engine.generate([[1, 2, 3], [4, 5]], [SamplingParams(max_new_tokens=30)] * 2)
    accepted = sum(r.stats.num_accepted_tokens for r in results)
    rejections = sum(r.stats.num_drafts - r.stats.num_bonus_tokens for r in results)
    assert engine.pair_acceptance.alpha != pytest.approx(PRIOR_ALPHA)
    assert engine.pair_acceptance.alpha == pytest.approx(accepted / (accepted + rejections), abs=0.15)


def test_a_useless_draft_falls_back_to_plain_decoding_by_itself(target, tokenizer):
    """An unrelated draft as large as the target: every draft token is rejected and costs a target forward."""
    useless = tiny_llama(5, hidden=48, layers=3)
    engine = SpeculativeEngine(target, tokenizer, draft=useless, config=SpeculationConfig(num_speculative_tokens=4))
    steps = []
    for _ in range(2):
        engine.generate([[1, 2, 3], [4, 5]], [SamplingParams(max_new_tokens=40)] * 2, on_step=steps.append)
    late = steps[-30:]
    assert sum(not s.speculative for s in late) >= 24


def test_a_draft_that_sat_out_plain_steps_catches_up_losslessly(target, near_draft, tokenizer, monkeypatch):
    """Force plain steps between speculative ones: the draft must catch up on the tokens it missed."""
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=SpeculationConfig(num_speculative_tokens=3))
    pattern = iter([3, 0, 0, 0, 2, 0, 0, 1, 0, 3] * 10)
    monkeypatch.setattr(engine.governor, "choose", lambda batch_size, cap, gain: min(next(pattern), cap))
    prompts = [[1, 2, 3, 4, 5], [9, 8]]
    results = engine.generate(prompts, [SamplingParams(max_new_tokens=24)] * 2)
    assert [r.token_ids for r in results] == [hf_greedy(target, p, 24) for p in prompts]
    assert all(r.stats.num_drafts > 0 for r in results)


def test_always_draft_ignores_step_times_so_qualification_measures_the_pair_alone():
    governor = SpeculationGovernor(SpeculationConfig(adaptation=AdaptationSettings(always_draft=True)))
    governor.record(batch_size=1, k=0, seconds=0.001)
    governor.record(batch_size=1, k=2, seconds=100.0)  # drafting looks hopeless by timing
    assert [governor.choose(1, cap=2, gain=gain_at(0.1)) for _ in range(5)] == [2] * 5
