"""What every proposer provides and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from specops.engine.batch import SequenceBatch
from specops.engine.timing import PhaseClock

if TYPE_CHECKING:
    from specops.engine.config import SpeculationConfig
    from specops.engine.runner import ModelRunner


@dataclass(frozen=True)
class Proposal:
    """Draft tokens for one step; what passes from a proposer to the verifier."""

    draft_token_ids: torch.Tensor  # [batch_size, max_k] long, padded past num_draft_tokens
    num_draft_tokens: list[int]  # [batch_size], k per sequence (0 = no draft this step)
    draft_probs: torch.Tensor | None  # [batch_size, max_k, vocab] float32; None = deterministic (one-hot)
    catch_up_tokens: int = 0  # tokens the proposer first had to take in (decoded by plain steps)
    draft_clock: PhaseClock | None = None  # for drafts made ahead (`Proposer.prefetch`): their device time

    @property
    def max_k(self) -> int:
        return self.draft_token_ids.shape[1]


class Proposer(Protocol):
    """Proposes up to k tokens per sequence; one implementation per file, registered in `PROPOSERS`."""

    @property
    def num_graphs(self) -> int:
        """CUDA graphs the proposer captured so far (a step that captured one is not timed)."""

    def warm_up(self, batch_size: int, capacity: int, max_k: int) -> None:
        """Capture the CUDA graphs of drafting up to `max_k` tokens at `batch_size` (a no-op without any)."""

    def start(self, batch: SequenceBatch) -> None:
        """Take in the prompts of a new batch (`batch.tokens`)."""

    def propose(self, batch: SequenceBatch, num_tokens: list[int]) -> Proposal:
        """Draft at most `num_tokens[i]` tokens for each active sequence i (fewer is allowed)."""

    def admit(self, batch: SequenceBatch, row: int) -> None:
        """A new sequence took `row` (its prompt is in `batch.tokens[row]`)."""

    def settle(self, proposal: Proposal, num_accepted: torch.Tensor) -> None:
        """Queue device work that follows from the verifier's decision (`num_accepted` [batch_size],
        on the device) before the host reads that decision; a no-op for proposers without device state."""

    def prefetch(self, batch: SequenceBatch, proposal: Proposal, decided: torch.Tensor, max_k: int) -> None:
        """Optionally start drafting the next step (at most `max_k` tokens a sequence) now, from this
        step's decision still on the device (`decided`: [batch_size, 1 + max_k + 1], accepted count
        then tokens), before the host reads it; `propose` then returns those drafts."""

    @property
    def drafted_ahead(self) -> bool:
        """Whether `prefetch` started drafts that the next `propose` must return."""

    def commit(self, batch: SequenceBatch, proposal: Proposal, num_accepted: list[int]) -> None:
        """Learn the verifier's decision; `batch.tokens` already holds the accepted and new tokens."""


class ProposerFactory(Protocol):
    """Builds a proposer for an engine: what `PROPOSERS` maps a `SpeculationConfig.proposer` name to."""

    def __call__(
        self, config: SpeculationConfig, *, target: ModelRunner, draft: torch.nn.Module | None
    ) -> Proposer: ...
