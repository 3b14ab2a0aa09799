"""Prompt-lookup proposer: find the sequence's last n-gram earlier in its prompt or output, draft what followed."""

from __future__ import annotations

import torch

from specops.engine.batch import SequenceBatch
from specops.engine.config import SpeculationConfig
from specops.engine.proposers.base import Proposal
from specops.engine.runner import ModelRunner
from specops.engine.transfer import to_device


class PromptLookupProposer:
    """N-gram matching with no model (Saxena, "Prompt Lookup Decoding", 2023; vLLM's ngram proposer).

    For n from `max_ngram` down to `min_ngram`, the latest earlier occurrence of the sequence's last
    n tokens gives the draft: the (up to k) tokens that followed it. An index of n-gram -> latest start
    is kept per sequence and extended with each step's tokens, so a lookup costs O(1).
    Drafts are deterministic, so the verifier treats q as one-hot.
    """

    def __init__(self, *, min_ngram: int = 1, max_ngram: int = 3) -> None:
        self.min_ngram, self.max_ngram = min_ngram, max_ngram
        self._index: list[dict[tuple[int, ...], int]] = []
        self._indexed: list[int] = []  # tokens of each sequence seen by its index

    @classmethod
    def build(
        cls, config: SpeculationConfig, *, target: ModelRunner, draft: torch.nn.Module | None
    ) -> PromptLookupProposer:
        """The proposer of `config.prompt_lookup`'s n-gram lengths (no model: `draft` is not used)."""
        return cls(min_ngram=config.prompt_lookup.min_ngram, max_ngram=config.prompt_lookup.max_ngram)

    def start(self, batch: SequenceBatch) -> None:
        self._index = [{} for _ in range(batch.batch_size)]
        self._indexed = [0] * batch.batch_size
        for row in range(batch.batch_size):
            self._extend(row, batch.tokens[row])

    def _extend(self, row: int, tokens: list[int]) -> None:
        """Index n-grams that now have a following token: starts i with i + n <= len(tokens) - 1."""
        index, old, new = self._index[row], self._indexed[row], len(tokens)
        for n in range(self.min_ngram, self.max_ngram + 1):
            for start in range(max(0, old - n), new - n):
                index[tuple(tokens[start : start + n])] = start
        self._indexed[row] = new

    def admit(self, batch: SequenceBatch, row: int) -> None:
        """Index the new sequence of `row` from scratch."""
        self._index[row], self._indexed[row] = {}, 0
        self._extend(row, batch.tokens[row])

    def lookup(self, tokens: list[int], row: int, k: int) -> list[int]:
        """Up to k tokens that followed the latest earlier occurrence of the longest matching suffix."""
        index = self._index[row]
        for n in range(min(self.max_ngram, len(tokens) - 1), self.min_ngram - 1, -1):
            start = index.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start + n : start + n + k]
        return []

    def propose(self, batch: SequenceBatch, num_tokens: list[int]) -> Proposal:
        drafts = []
        for row, (tokens, k, active) in enumerate(zip(batch.tokens, num_tokens, batch.active, strict=True)):
            drafts.append(self.lookup(tokens, row, k) if active and k > 0 else [])
        width = max(map(len, drafts))
        ids = to_device([d + [0] * (width - len(d)) for d in drafts], torch.long, batch.device)
        return Proposal(
            draft_token_ids=ids.reshape(batch.batch_size, width),
            num_draft_tokens=[len(d) for d in drafts],
            draft_probs=None,
        )

    def settle(self, proposal: Proposal, num_accepted: torch.Tensor) -> None:
        """Nothing on the device to update."""

    def prefetch(self, batch: SequenceBatch, proposal: Proposal, decided: torch.Tensor, max_k: int) -> None:
        """Lookups need the committed tokens: nothing to start early."""

    drafted_ahead = False
    num_graphs = 0

    def warm_up(self, batch_size: int, capacity: int, max_k: int) -> None:
        """No model, no graphs."""

    def commit(self, batch: SequenceBatch, proposal: Proposal, num_accepted: list[int]) -> None:
        for row, (tokens, active) in enumerate(zip(batch.tokens, batch.active, strict=True)):
            if active:
                self._extend(row, tokens)
