"""The fused layer path's forward (a GPU's: concatenated projections, queries folded into heads) against
transformers' own, logits compared, on a grouped-query model."""

from __future__ import annotations

import pytest
import torch

from specops.engine.runner import ModelRunner


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("q", [1, 3, 5])
def test_a_fused_forward_of_q_tokens_gives_the_models_own_logits(target, compiled, q):
    runner = ModelRunner(target, cuda_graphs=False, compiled=False)
    runner.attend_capacity = True  # attend over every slot, holes masked, as CUDA graphs do
    runner.fuse(compiled=compiled)
    runner.run_compiled = compiled
    assert runner.fused is not None and runner.num_kv_heads < runner.num_heads
    generator = torch.Generator().manual_seed(q)
    prompts = torch.randint(0, runner.vocab_size, (2, 7), generator=generator)
    steps = torch.randint(0, runner.vocab_size, (2, q), generator=generator)
    cache = runner.cache(2, 32)
    # the second sequence's prompt is 3 tokens shorter: left padding, hidden from every other token
    prompt_valid = torch.ones(2, 7, dtype=torch.bool)
    prompt_valid[1, :3] = False
    runner.forward(cache, prompts, prompt_valid, logits=False)
    logits = runner.forward(cache, steps, torch.ones(2, q, dtype=torch.bool))  # [2, q, vocab]
    with torch.no_grad():
        for row, start in ((0, 0), (1, 3)):
            sequence = torch.cat([prompts[row, start:], steps[row]])[None]
            expected = target(sequence).logits[0, -q:]
            torch.testing.assert_close(logits[row], expected, atol=1e-4, rtol=1e-4)
