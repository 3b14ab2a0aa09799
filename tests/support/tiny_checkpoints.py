"""Tiny random Llama checkpoints with a small byte-level tokenizer, made once per test session (a fixture
plugin registered in ``tests/conftest.py``; ``settings`` gives every store a fresh folder).

- ``target``: 2 layers, 64 hidden.
- ``draft_copy``: the target's exact weights (acceptance 1.0, lossless).
- ``draft_random``: an unrelated 1-layer model (same tokenizer; low acceptance, still lossless).
- ``draft_foreign``: a model with a different tokenizer and vocabulary size (must be refused).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from specops.settings import Settings

TEXT = [
    "def __init__(self, name):\n    self.name = name\n",
    "import os\nimport sys\n\ndef main():\n    return 0\n",
    "class Error(Exception):\n    pass\n",
    "for i in range(len(items)):\n    print(items[i])\n",
] * 20


@dataclass(frozen=True)
class TinyPairs:
    target: Path
    draft_copy: Path
    draft_random: Path
    draft_foreign: Path


def _tokenizer(vocab_size: int, texts: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>", model_max_length=256
    )


def _model(tokenizer, *, layers: int, hidden: int, seed: int):  # type: ignore[no-untyped-def]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # peaked logits: no near-ties between argmax candidates
        model.lm_head.weight.mul_(40.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory: pytest.TempPathFactory) -> TinyPairs:
    root = tmp_path_factory.mktemp("tiny-pairs")
    tokenizer = _tokenizer(320, TEXT)
    target = _model(tokenizer, layers=2, hidden=64, seed=1)
    target.save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    shutil.copytree(root / "target", root / "draft-copy")
    draft = _model(tokenizer, layers=1, hidden=32, seed=2)
    draft.save_pretrained(root / "draft-random")
    tokenizer.save_pretrained(root / "draft-random")
    foreign_tokenizer = _tokenizer(300, [text.upper() for text in TEXT])
    foreign = _model(foreign_tokenizer, layers=1, hidden=32, seed=3)
    foreign.save_pretrained(root / "draft-foreign")
    foreign_tokenizer.save_pretrained(root / "draft-foreign")
    return TinyPairs(root / "target", root / "draft-copy", root / "draft-random", root / "draft-foreign")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with every store in a fresh folder (SQLite MLflow + governance store)."""
    home = tmp_path / "home"
    return Settings(
        home=home,
        database_url=f"sqlite:///{home / 'governance.db'}",
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifacts_dir=home / "artifacts",
    )


PROMPTS = ["def __init__(self, ", "import os\n", "class Error(", "for i in range("]
