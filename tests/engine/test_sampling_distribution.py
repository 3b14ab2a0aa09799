"""Speculative sampling leaves the target's distribution unchanged (χ² against exact probabilities)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from specops.engine import SamplingParams, SpeculationConfig, SpeculativeEngine, verify
from tests.support.tiny_llamas import hf_greedy, tiny_llama

VOCAB = 12
PROMPT = [1, 2, 3]
NUM_SAMPLES = 3000


@pytest.fixture(scope="module")
def small_pair():
    """Flat-ish small-vocabulary models so every token has real probability."""
    target = tiny_llama(10, hidden=32, layers=2, vocab=VOCAB, init_range=0.08)
    draft = tiny_llama(11, hidden=16, layers=1, heads=2, kv_heads=1, vocab=VOCAB, init_range=0.08)
    return target, draft


def _target_probs(target, prompt: list[int], temperature: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        logits = target(torch.tensor([prompt])).logits[0, -1].double()
    return torch.softmax(logits / temperature, dim=-1)


def _first_tokens(engine, *, num_samples: int, seed0: int, **params) -> torch.Tensor:
    results = engine.generate(
        [PROMPT] * num_samples,
        [SamplingParams(max_new_tokens=3, seed=seed0 + i, **params) for i in range(num_samples)],
    )
    return torch.tensor([r.token_ids[0] for r in results]), results


def _p_value(tokens: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(tokens, minlength=len(probs)).double()
    expected = probs / probs.sum() * counts.sum()
    return float(chisquare(counts.numpy(), expected.numpy()).pvalue)


@pytest.mark.parametrize("proposer", ["draft", "prompt_lookup"])
def test_first_token_follows_the_targets_distribution(small_pair, tokenizer, proposer):
    target, draft = small_pair
    config = SpeculationConfig(proposer=proposer, num_speculative_tokens=2, adaptive=False)
    engine = SpeculativeEngine(target, tokenizer, draft=draft, config=config)
    tokens, results = _first_tokens(engine, num_samples=NUM_SAMPLES, seed0=0, temperature=1.0)
    if proposer == "draft":
        assert 0.3 < sum(r.stats.acceptance_rate for r in results) / NUM_SAMPLES < 1.0
    assert _p_value(tokens, _target_probs(target, PROMPT)) > 1e-3


def test_a_wrong_acceptance_rule_fails_the_same_test(small_pair, tokenizer, monkeypatch):
    """Negative control: accepting every draft token returns the draft's distribution, not the target's."""
    target, draft = small_pair
    monkeypatch.setattr(
        verify, "acceptance_mask", lambda draft_ids, *args: torch.ones_like(draft_ids, dtype=torch.bool)
    )
    config = SpeculationConfig(proposer="draft", num_speculative_tokens=2, adaptive=False)
    engine = SpeculativeEngine(target, tokenizer, draft=draft, config=config)
    tokens, _ = _first_tokens(engine, num_samples=NUM_SAMPLES, seed0=0, temperature=1.0)
    assert _p_value(tokens, _target_probs(target, PROMPT)) < 1e-6


def test_temperature_and_top_k_shape_the_distribution(small_pair, tokenizer):
    target, draft = small_pair
    config = SpeculationConfig(proposer="draft", num_speculative_tokens=2, adaptive=False)
    engine = SpeculativeEngine(target, tokenizer, draft=draft, config=config)
    probs = _target_probs(target, PROMPT, temperature=0.7)
    top = torch.topk(probs, 4).indices
    truncated = torch.zeros_like(probs)
    truncated[top] = probs[top]
    tokens, _ = _first_tokens(engine, num_samples=2000, seed0=10_000, temperature=0.7, top_k=4)
    assert set(tokens.tolist()) <= set(top.tolist())
    counts = torch.bincount(tokens, minlength=VOCAB).double()[top]
    expected = truncated[top] / truncated[top].sum() * counts.sum()
    assert float(chisquare(counts.numpy(), expected.numpy()).pvalue) > 1e-3


def test_top_p_keeps_the_smallest_set_reaching_p(small_pair, tokenizer):
    target, draft = small_pair
    engine = SpeculativeEngine(
        target, tokenizer, draft=draft, config=SpeculationConfig(num_speculative_tokens=2, adaptive=False)
    )
    probs = _target_probs(target, PROMPT)
    order = torch.argsort(probs, descending=True)
    mass_before = torch.cumsum(probs[order], 0) - probs[order]
    kept = set(order[mass_before < 0.5].tolist())
    tokens, _ = _first_tokens(engine, num_samples=400, seed0=20_000, top_p=0.5, temperature=1.0)
    assert set(tokens.tolist()) <= kept


def test_a_seed_reproduces_a_sampled_generation(small_pair, tokenizer):
    target, draft = small_pair
    engine = SpeculativeEngine(
        target, tokenizer, draft=draft, config=SpeculationConfig(num_speculative_tokens=3, adaptive=False)
    )
    params = [SamplingParams(max_new_tokens=12, temperature=1.0, seed=s) for s in (1, 2, 1)]
    first, again = engine.generate([PROMPT] * 3, params), engine.generate([PROMPT] * 3, params)
    assert [r.token_ids for r in first] == [r.token_ids for r in again]
    assert first[0].token_ids == first[2].token_ids


def test_greedy_and_sampled_requests_share_a_batch(target, near_draft, tokenizer):
    engine = SpeculativeEngine(
        target, tokenizer, draft=near_draft, config=SpeculationConfig(num_speculative_tokens=3, adaptive=False)
    )
    params = [SamplingParams(max_new_tokens=16), SamplingParams(max_new_tokens=16, temperature=1.0, seed=3)]
    greedy, sampled = engine.generate([[4, 5, 6], [4, 5, 6]], params)
    assert greedy.token_ids == hf_greedy(target, [4, 5, 6], 16)
    assert len(sampled.token_ids) == 16
