"""Tiny seeded Llama models, a byte-level tokenizer and the target's own greedy output, for engine tests."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 64
DEFAULT_THREADS = torch.get_num_threads()


class ByteTokenizer:
    """Minimal tokenizer: token id = byte value (ids >= 256 never occur in tests with VOCAB <= 256)."""

    eos_token_id = None

    def decode(self, ids: list[int]) -> str:
        return bytes(i % 256 for i in ids).decode("latin-1")


def tiny_llama(
    seed: int,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = VOCAB,
    init_range: float = 0.3,
) -> LlamaForCausalLM:
    """A random Llama whose logits are peaked (large init), so greedy ties are unlikely."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        initializer_range=init_range,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def hf_greedy(model: LlamaForCausalLM, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The target's own greedy decoding, token by token with HF's cache (the reference)."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


def perturbed(model: LlamaForCausalLM, *, noise: float, seed: int) -> LlamaForCausalLM:
    """A copy of `model` with Gaussian noise on every weight: a draft that agrees often, not always."""
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * noise)
    return clone
