"""Tiny random Llama pairs for serving tests: a BPE tokenizer trained in a second, 32-wide models (a fixture
plugin registered in ``tests/conftest.py``: ``tiny_pair``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TRAINING_TEXT = [
    "def serve(pair, port):\n    return pair.load(port)\n",
    "The quick brown fox jumps over the lazy dog.\n",
    "Speculative decoding drafts tokens that the target model verifies.\n",
    "import os\nimport sys\nfor line in sys.stdin:\n    print(line.strip())\n",
    "class Model:\n    def forward(self, x):\n        return x * 2\n",
    "Hello, world! Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u65e5\u672c\u8a9e \U0001f600\n",
] * 20


def build_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def build_pair(
    root: Path, *, name: str = "tiny-pair", version: str = "3", max_context: int = 256, seed: int = 0
) -> Path:
    """Write ``root/target``, ``root/draft`` and ``root/pair.json``; return ``root``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    for sub, layers in (("target", 2), ("draft", 1)):
        torch.manual_seed(seed + layers)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_context,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=None,
        )
        model = LlamaForCausalLM(config)
        model.save_pretrained(root / sub)
        tokenizer.save_pretrained(root / sub)
    (root / "pair.json").write_text(json.dumps({"name": name, "version": version}))
    return root


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A target (2 layers) and a random draft (1 layer): low acceptance."""
    return build_pair(tmp_path_factory.mktemp("pair") / "tiny-pair", name="tiny-pair", version="3")
