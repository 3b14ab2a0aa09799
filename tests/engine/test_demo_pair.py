"""The trained demo pair (specops.pairs.demo): lossless greedy decoding with both proposers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from specops.engine import SamplingParams, SpeculationConfig, SpeculativeEngine
from specops.pairs import demo
from tests.support.tiny_llamas import DEFAULT_THREADS

NEW_TOKENS = 32


@pytest.fixture(scope="module")
def pair():
    threads = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)  # training likes every core
    try:
        pairs = demo.train_demo_pairs(progress=False)  # cached after the first run
    finally:
        torch.set_num_threads(threads)
    prompts_text = demo.demo_prompts(4, 48, seed=1)
    config = SpeculationConfig(num_speculative_tokens=4, adaptive=False)
    engine = SpeculativeEngine.load(pairs.target, pairs.draft, config=config)
    prompts = [engine.tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompts_text]
    target = AutoModelForCausalLM.from_pretrained(str(pairs.target)).eval()
    reference = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = target.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=engine.tokenizer.pad_token_id,
            )
        reference.append(out[0, len(prompt) :].tolist())
    return pairs, engine, prompts, reference


@pytest.mark.parametrize("batch", [1, 4], ids=["batch1", "batch4-ragged"])
@pytest.mark.parametrize("proposer", ["draft", "prompt_lookup"])
def test_the_demo_pair_decodes_exactly_as_its_target(pair, proposer, batch):
    _pairs, draft_engine, prompts, reference = pair
    engine = draft_engine
    if proposer == "prompt_lookup":
        engine = SpeculativeEngine(
            draft_engine.target.model,
            draft_engine.tokenizer,
            config=SpeculationConfig(proposer="prompt_lookup", num_speculative_tokens=4, adaptive=False),
        )
    chosen = prompts[:batch]
    results = engine.generate(chosen, [SamplingParams(max_new_tokens=NEW_TOKENS)] * batch)
    for result, expected in zip(results, reference[:batch], strict=True):
        # HF stops at EOS; the engine keeps EOS and stops there too
        assert result.token_ids == expected[: len(result.token_ids)] and len(result.token_ids) == len(expected)
    if proposer == "draft" and batch > 1:
        assert sum(r.stats.num_accepted_tokens for r in results) > 0  # the pair is ~0.4 agreement
