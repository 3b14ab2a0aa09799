"""Greedy speculative decoding returns exactly the target's own greedy tokens (CPU, fp32)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specops.engine import ExecutionSettings, SamplingParams, SpeculationConfig, SpeculativeEngine, kv_cache, runner
from tests.support.tiny_llamas import hf_greedy, tiny_llama

PROMPTS = [
    [1, 2, 3, 4, 5],
    [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
    [3],
    [5, 6, 7, 5, 6, 7, 5, 6, 7, 5],
]
NEW_TOKENS = 24


@functools.cache
def _reference(prompt: tuple[int, ...]) -> list[int]:
    return hf_greedy(tiny_llama(0, hidden=48, layers=3), list(prompt), NEW_TOKENS)


def _engine(target, tokenizer, draft, proposer: str, k: int, adaptive: bool = False) -> SpeculativeEngine:
    config = SpeculationConfig(proposer=proposer, num_speculative_tokens=k, adaptive=adaptive)
    return SpeculativeEngine(target, tokenizer, draft=draft if proposer == "draft" else None, config=config)


@pytest.mark.parametrize("batch", [1, 4], ids=["batch1", "batch4-ragged"])
@pytest.mark.parametrize("k", [1, 3, 8], ids=["k1", "k3", "k8"])
@pytest.mark.parametrize("proposer", ["draft", "prompt_lookup"])
def test_greedy_output_equals_the_targets_own_greedy_decoding(target, near_draft, tokenizer, proposer, k, batch):
    engine = _engine(target, tokenizer, near_draft, proposer, k)
    prompts = PROMPTS[:batch] if batch > 1 else [PROMPTS[1]]
    results = engine.generate(prompts, [SamplingParams(max_new_tokens=NEW_TOKENS)] * len(prompts))
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == _reference(tuple(prompt))
        assert result.finish_reason == "length"
    if proposer == "draft":
        assert sum(r.stats.num_accepted_tokens for r in results) > 0, "the near draft should be accepted sometimes"


@pytest.mark.parametrize("proposer", ["none", "draft", "prompt_lookup"])
def test_adaptive_engine_is_lossless_too(target, near_draft, tokenizer, proposer):
    engine = _engine(target, tokenizer, near_draft, proposer, 6, adaptive=True)
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=NEW_TOKENS)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in PROMPTS]


def test_an_unrelated_draft_changes_nothing_but_speed(target, draft, tokenizer):
    engine = _engine(target, tokenizer, draft, "draft", 3)
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=NEW_TOKENS)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in PROMPTS]


def test_different_budgets_in_one_batch_are_each_honoured_exactly(target, near_draft, tokenizer):
    engine = _engine(target, tokenizer, near_draft, "draft", 4)
    budgets = [1, 7, 24, 13]
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=n) for n in budgets])
    for prompt, budget, result in zip(PROMPTS, budgets, results, strict=True):
        assert result.token_ids == _reference(tuple(prompt))[:budget]


def test_self_draft_accepts_everything_and_earns_a_bonus_per_draft(target, tokenizer):
    engine = _engine(target, tokenizer, target, "draft", 4)
    (result,) = engine.generate([PROMPTS[0]], [SamplingParams(max_new_tokens=21)])
    stats = result.stats
    assert result.token_ids == _reference(tuple(PROMPTS[0]))[:21]
    assert stats.acceptance_rate == 1.0
    # 4 steps of 5 tokens, then a 5th whose block is cut to the one token left in the budget
    assert stats.num_drafts == 5 and stats.num_draft_tokens == 5 * 4
    assert stats.num_bonus_tokens == 5
    assert stats.num_accepted_per_position == [5, 5, 5, 5]
    assert stats.mean_accepted_length == 5.0
    assert stats.num_steps == 5


def test_attending_over_the_whole_cache_as_cuda_graphs_do_changes_nothing(target, near_draft, tokenizer):
    engine = _engine(target, tokenizer, near_draft, "draft", 3)
    engine.target.attend_capacity = True
    engine.proposer.runner.attend_capacity = True
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=NEW_TOKENS)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in PROMPTS]


@given(num_tokens=st.integers(min_value=1, max_value=2000))
def test_prefill_chunks_cover_the_tokens_with_at_most_a_third_padding(num_tokens):
    widths = runner.append_chunks(num_tokens)
    assert set(widths) <= set(runner.APPEND_WIDTHS)
    padding = sum(widths) - num_tokens
    assert 0 <= padding <= max(runner.APPEND_WIDTHS[0] - 1, num_tokens // 3)
    assert sum(widths[:-1]) < num_tokens  # no chunk of padding alone


def test_the_fixed_shape_path_prefills_in_chunks_of_the_captured_widths(target, near_draft, tokenizer, monkeypatch):
    engine = _engine(target, tokenizer, near_draft, "draft", 3)
    widths = []

    def recording(forward):
        def record(cache, ids, valid, *, logits=True):
            if not logits:
                widths.append(ids.shape[1])
            return forward(cache, ids, valid, logits=logits)

        return record

    for model_runner in (engine.target, engine.proposer.runner):
        model_runner.attend_capacity = True
        monkeypatch.setattr(model_runner, "forward", recording(model_runner.forward))
    prompts = [list(range(1, 40)), [3]]
    results = engine.generate(prompts, [SamplingParams(max_new_tokens=NEW_TOKENS)] * 2)
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in prompts]
    assert widths and set(widths) <= set(runner.APPEND_WIDTHS)


@pytest.mark.parametrize("proposer", ["none", "draft", "prompt_lookup"])
def test_a_batch_padded_to_a_graph_size_returns_only_its_own_sequences_unchanged(
    target, near_draft, tokenizer, proposer
):
    config = SpeculationConfig(
        proposer=proposer, num_speculative_tokens=3, execution=ExecutionSettings(pad_batches=True)
    )
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft if proposer == "draft" else None, config=config)
    assert [engine.padded_batch_size(n) for n in (1, 3, 5, 16, 17, 300)] == [1, 4, 8, 16, 32, 300]
    prompts = PROMPTS[:3]  # runs as 4 rows, the fourth a finished padding row
    seen: set[int] = set()
    steps = []
    results = engine.generate(
        prompts,
        [SamplingParams(max_new_tokens=NEW_TOKENS)] * 3,
        on_tokens=lambda row, ids: seen.add(row),
        on_step=steps.append,
    )
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in prompts]
    assert seen == {0, 1, 2}
    assert all(len(step.num_draft_tokens) == 4 and step.num_draft_tokens[3] == 0 for step in steps)


@pytest.mark.parametrize("proposer", ["none", "draft"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_the_fused_gpu_layer_path_computes_the_same_tokens(target, near_draft, tokenizer, compiled, proposer):
    engine = _engine(target, tokenizer, near_draft, proposer, 3)
    for model_runner in (engine.target, *([engine.proposer.runner] if engine.proposer else [])):
        model_runner.attend_capacity = True
        model_runner.fuse(compiled=compiled)
        model_runner.run_compiled = compiled  # as while a CUDA graph records
    assert engine.target.fused is not None
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=NEW_TOKENS)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in PROMPTS]


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_a_tight_cache_compacts_its_holes_and_stays_lossless(target, near_draft, tokenizer, temperature, monkeypatch):
    engine = _engine(target, tokenizer, near_draft, "draft", 4)
    monkeypatch.setattr(engine, "_capacity", lambda max_tokens: max_tokens + 6)  # holes overflow it soon
    compactions = []
    real_compact = kv_cache.KVCache.compact
    monkeypatch.setattr(kv_cache.KVCache, "compact", lambda cache: (compactions.append(1), real_compact(cache)))
    params = [SamplingParams(max_new_tokens=NEW_TOKENS, temperature=temperature, seed=i) for i in range(4)]
    results = engine.generate(PROMPTS, params)
    assert compactions
    if temperature == 0.0:
        assert [r.token_ids for r in results] == [_reference(tuple(p)) for p in PROMPTS]
    else:
        assert all(len(r.token_ids) == NEW_TOKENS for r in results)
