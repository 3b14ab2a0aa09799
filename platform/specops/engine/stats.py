"""Speculation statistics per request and per engine step (vLLM's meaning of drafts and accepts)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestStats:
    """What speculation did for one request.

    A *draft* is one proposal of `k >= 1` tokens; `num_draft_tokens` sums those k.
    `num_accepted_per_position[j]` counts drafts whose token j (0-based) was accepted.
    A *bonus* token is the target's own token after a fully accepted draft.
    `draft_seconds` and `target_seconds` are the time of the batched phases this request took part in
    (device time on a GPU, measured with events; wall time elsewhere).
    """

    num_steps: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    num_accepted_per_position: list[int] = field(default_factory=list)
    num_bonus_tokens: int = 0
    draft_seconds: float = 0.0
    target_seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens; 0.0 when nothing was drafted."""
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens gained per draft: 1 (the target's token) + accepted tokens per draft."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0

    @property
    def tokens_per_step(self) -> float:
        """Tokens per target step: 1 + accepted tokens per step taken (1.0 when it never drafted)."""
        return 1.0 + self.num_accepted_tokens / self.num_steps if self.num_steps else 1.0

    def record(self, *, num_draft_tokens: int, num_accepted: int) -> None:
        """Count one step in which this request drafted `num_draft_tokens` and kept `num_accepted`."""
        self.num_steps += 1
        if num_draft_tokens == 0:
            return
        self.num_drafts += 1
        self.num_draft_tokens += num_draft_tokens
        self.num_accepted_tokens += num_accepted
        if len(self.num_accepted_per_position) < num_draft_tokens:
            self.num_accepted_per_position.extend([0] * (num_draft_tokens - len(self.num_accepted_per_position)))
        for position in range(num_accepted):
            self.num_accepted_per_position[position] += 1
        if num_accepted == num_draft_tokens:
            self.num_bonus_tokens += 1


@dataclass(frozen=True)
class StepStats:
    """One engine step over the batch (passed to `generate(on_step=...)`).

    Lists are indexed by the sequence's position in the `generate` call; finished sequences
    report 0 draft tokens and 0 accepted tokens, and `running` False: a row counts as one target
    step of its sequence only when it ran (speculative when it drafted, plain otherwise).
    """

    step: int
    batch_size: int  # sequences still running
    num_draft_tokens: list[int]  # k per sequence this step
    num_accepted_tokens: list[int]  # accepted draft tokens per sequence
    num_emitted_tokens: list[int]  # tokens each sequence gained (accepted + recovered/bonus, after stops)
    draft_seconds: float
    target_seconds: float
    speculative: bool  # False when the step was plain decoding for every sequence
    running: list[bool] = field(default_factory=list)  # sequences that took part in the step
