"""What the qualification gate measures a pair on: its evaluation prompts, and its tokenizers' compatibility."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from specops.errors import InvalidInput
from specops.pairs import pair_spec


def load_prompts(path: str | Path | None = None) -> list[str]:
    """Evaluation prompts: the bundled default, or a file.

    Formats: ``.json`` (a list of strings, or ``{"prompts": [...]}``), ``.jsonl`` (one string or
    ``{"prompt": ...}`` per line), anything else one prompt per non-empty line.
    """
    if path is None:
        text = resources.files("specops.pairs").joinpath("eval-prompts.json").read_text()
        return _prompts_from_json(json.loads(text), "the bundled prompts")
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise InvalidInput(f"prompt file {path} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read prompt file {path}: {error}") from error
    try:
        if path.suffix == ".json":
            prompts = _prompts_from_json(json.loads(text), str(path))
        elif path.suffix == ".jsonl":
            prompts = []
            for line in filter(str.strip, text.splitlines()):
                item = json.loads(line)
                prompts.append(item["prompt"] if isinstance(item, dict) else item)
        else:
            prompts = [line for line in text.splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"prompt file {path} is malformed: {error}") from error
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InvalidInput(f"prompt file {path} holds no prompts (or a prompt that is not text)")
    return prompts


def _prompts_from_json(data: Any, where: str) -> list[str]:
    prompts = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InvalidInput(f"{where} must hold a non-empty list of prompt strings")
    return prompts


def check_tokenizers(target: Path, draft: Path) -> tuple[bool, str, int, int]:
    """(compatible, reason, target vocab size, draft vocab size) of a target/draft pair.

    Compatible means: the models' ``vocab_size`` agree and, when the draft ships tokenizer files,
    they are byte-identical to the target's or define the same vocabulary and special tokens.
    """
    from transformers import AutoTokenizer

    target_vocab = _config_vocab_size(target)
    draft_vocab = _config_vocab_size(draft)
    if target_vocab != draft_vocab:
        return False, f"vocabulary sizes differ (target {target_vocab}, draft {draft_vocab})", target_vocab, draft_vocab
    target_hash = pair_spec.tokenizer_sha256(target)
    if not target_hash:
        raise InvalidInput(f"target checkpoint {target} has no tokenizer files")
    draft_hash = pair_spec.tokenizer_sha256(draft)
    if not draft_hash or draft_hash == target_hash:
        return (
            True,
            "same tokenizer files" if draft_hash else "draft uses the target's tokenizer",
            target_vocab,
            draft_vocab,
        )
    try:
        target_tokenizer = AutoTokenizer.from_pretrained(str(target))
        draft_tokenizer = AutoTokenizer.from_pretrained(str(draft))
    except Exception as error:
        raise InvalidInput(f"cannot load a tokenizer: {first_line(error)}") from error
    if target_tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        return False, "draft tokenizer's vocabulary differs from the target's", target_vocab, draft_vocab
    for special in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(target_tokenizer, special, None) != getattr(draft_tokenizer, special, None):
            return False, f"draft tokenizer's {special} differs from the target's", target_vocab, draft_vocab
    return True, "same vocabulary and special tokens", target_vocab, draft_vocab


def _config_vocab_size(folder: Path) -> int:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise InvalidInput(f"checkpoint {folder} has an unreadable config.json: {error}") from error
    text_config = config.get("text_config") or {}
    value = config.get("vocab_size", text_config.get("vocab_size"))
    if not isinstance(value, int):
        raise InvalidInput(f"checkpoint {folder} config.json has no vocab_size")
    return value


def first_line(error: BaseException) -> str:
    """An error's first line (its type's name when it has no text), at most 300 characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
