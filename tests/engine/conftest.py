"""Tiny seeded Llama models and a byte-level tokenizer for engine tests (CPU, fp32)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from tests.support.tiny_llamas import ByteTokenizer, perturbed, tiny_llama


@pytest.fixture(scope="session")
def target() -> LlamaForCausalLM:
    return tiny_llama(0, hidden=48, layers=3)


@pytest.fixture(scope="session")
def draft() -> LlamaForCausalLM:
    return tiny_llama(1, hidden=16, layers=1, heads=2, kv_heads=1)


@pytest.fixture(scope="session")
def tokenizer() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="session")
def near_draft(target: LlamaForCausalLM) -> LlamaForCausalLM:
    """Agrees with the target on roughly a third to a half of draft tokens."""
    return perturbed(target, noise=0.01, seed=7)


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny models run fastest on one thread, and CI's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
