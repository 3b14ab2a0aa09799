"""What serving needs of a speculative engine: the `ServingEngine` protocol and its `ServingTokenizer`.

Serving holds its engine through this protocol, never through ``Any`` or ``getattr`` with defaults, so
the calls it relies on are written in one place. `specops.engine.SpeculativeEngine` satisfies it; the
engine's types are imported for type checking only, so importing serving does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from specops.engine import GenerationResult, SamplingParams, StepStats


class ServingTokenizer(Protocol):
    """The tokenizer calls serving makes (a Hugging Face tokenizer has them all)."""

    chat_template: str | None  # the chat template, or None (chat prompts then use a plain form)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...

    def __len__(self) -> int: ...


class ServingVocabulary(Protocol):
    """The target model as serving sees it: how many token ids it scores."""

    vocab_size: int  # rows of the output embedding: valid token ids are 0..vocab_size - 1


class ServingEngine(Protocol):
    """A loaded target (+ proposer) that generates batches of sequences; one `generate` call at a time.

    tokenizer: the target's tokenizer (prompts in, text out).
    max_context: most prompt + output tokens of one sequence (the target's position embeddings).
    target: the target model's vocabulary size (prompt token ids are checked against it).
    """

    tokenizer: ServingTokenizer
    max_context: int
    target: ServingVocabulary

    def warm_up(self, batch_sizes: Sequence[int], *, max_tokens: int, continuous: bool = False) -> None:
        """Prepare every batch shape of ``batch_sizes`` (CUDA graphs) before the first request."""
        ...

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        on_tokens: Callable[[int, list[int]], None] | None = None,
        *,
        on_step: Callable[[StepStats], None] | None = None,
        on_finish: Callable[[int, GenerationResult], None] | None = None,
        admit: Callable[[list[int]], Sequence[tuple[Sequence[int], SamplingParams]]] | None = None,
        rows: int = 0,
        max_tokens: int = 0,
    ) -> list[GenerationResult]:
        """Generate each prompt with its own parameters, admitting more sequences into freed rows."""
        ...
