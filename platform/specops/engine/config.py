"""Settings of one request (`SamplingParams`) and of the engine's speculation (`SpeculationConfig`).

`SpeculationConfig` holds what a user chooses (the proposer, the draft length, whether k adapts);
its groups hold how k adapts (`AdaptationSettings`), how prompt lookup matches
(`PromptLookupSettings`) and how the engine executes (`ExecutionSettings`: CUDA graphs, compilation,
drafts made ahead, admission). Every group is a frozen dataclass with working defaults.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from specops import errors

#: Default batch-size schedule: (largest batch size, largest draft length) rows, ascending. Up to
#: batch 4 a sequence may draft up to 8 tokens, up to batch 8 up to 4; above batch 8 speculation is
#: off: sequences accept at different rates, so a large batch runs on for its slowest sequence, and
#: verifying k more tokens per sequence stops being nearly free. Measured speedups: docs/engine.md.
DEFAULT_BATCH_SCHEDULE: tuple[tuple[int, int], ...] = ((4, 8), (8, 4))


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples and when it stops.

    `temperature` 0 means greedy. `top_k` 0 and `top_p` 1.0 mean no truncation. `seed` makes a
    sampled request reproducible. Generation stops at the target's EOS token (kept in the output),
    at the token that completes one of `stop` (kept; the serving layer trims the text), or after
    exactly `max_new_tokens` tokens. `ignore_eos` decodes past EOS (benchmarks).
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise errors.InvalidInput(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise errors.InvalidInput(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise errors.InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise errors.InvalidInput(f"top_k must be >= 0, got {self.top_k}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class AdaptationSettings:
    """How the adaptive engine chooses k (used only while `SpeculationConfig.adaptive` is on)."""

    #: (largest batch size, largest k) rows in ascending batch size; speculation is off above the
    #: last row. Default `DEFAULT_BATCH_SCHEDULE`: where batching already fills the device, drafting
    #: costs more than it gains.
    batch_schedule: tuple[tuple[int, int], ...] = field(default=DEFAULT_BATCH_SCHEDULE)

    #: Weight (0..1], no unit, of the newest step in a sequence's recent acceptance. Default 0.3:
    #: a hard passage shortens the drafts within a few steps, one rejection does not.
    acceptance_smoothing: float = 0.3

    #: Steps (default 16) between re-timings of another k (or plain decoding) per batch-size bucket,
    #: so that the choice of k stays measured as the text and the machine's load change.
    probe_interval: int = 16

    #: Draft up to the schedule's cap every step, never falling back to plain decoding by timing
    #: (per-sequence lengths still follow acceptance). Default off. On, what a step drafts depends on
    #: the pair alone, not on the machine's step times: qualification measures acceptance so.
    always_draft: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.acceptance_smoothing <= 1.0:
            raise errors.InvalidInput("acceptance_smoothing must be in (0, 1]")
        rows = tuple((int(b), int(k)) for b, k in self.batch_schedule)
        if any(b2 <= b1 for (b1, _), (b2, _) in itertools.pairwise(rows)):
            raise errors.InvalidInput("batch_schedule rows must have ascending batch sizes")
        object.__setattr__(self, "batch_schedule", rows)


@dataclass(frozen=True)
class PromptLookupSettings:
    """N-gram lengths, in tokens, the prompt-lookup proposer tries, longest first (default 1 to 3:
    longer n-grams rarely match again in short texts, and a 1-gram still finds repeated names)."""

    min_ngram: int = 1
    max_ngram: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise errors.InvalidInput("prompt lookup needs 1 <= min_ngram <= max_ngram")


@dataclass(frozen=True)
class ExecutionSettings:
    """How the engine executes a step; the defaults are the fastest path on each device."""

    #: Capture forwards as CUDA graphs on a CUDA device (ignored on a CPU). Default on: a step's
    #: hundreds of small kernels cost the host more time to launch than the device to run.
    cuda_graphs: bool = True

    #: With CUDA graphs, fuse each layer's elementwise work with torch.compile. Default on; it
    #: compiles at warm-up or at the first call of a shape (seconds, once per process).
    compiled: bool = True

    #: Pad every call to one of the engine's graph batch sizes, as it always does with CUDA graphs.
    #: Default off; tests set it on a CPU to cover that path.
    pad_batches: bool = False

    #: In steady greedy drafting, start the next step's drafts before the host reads the verifier's
    #: decision (`Proposer.prefetch`), so the device drafts while the host commits. Default on; off,
    #: each step drafts after that read.
    draft_ahead: bool = True

    #: With continuous batching, admit a prompt into a row freed by the last step while the running
    #: sequences' step is on the device (admission's host work and prefill overlap it); it decodes
    #: from the next step. Default on; off, it is admitted before the step, which waits for it.
    admit_in_step: bool = True


@dataclass(frozen=True)
class SpeculationConfig:
    """How the engine speculates: what a user chooses, and the groups of finer settings."""

    #: "draft" (a draft model), "prompt_lookup" (n-gram match, no model) or "none" (plain decoding);
    #: the names of `proposers.PROPOSERS`, and "none".
    proposer: str = "draft"

    #: Draft length k in tokens: the fixed k when `adaptive` is off, else the largest k. Default 4.
    num_speculative_tokens: int = 4

    #: Choose each step's k from measured step times (k = 0 is plain decoding, so a pair whose
    #: speculation does not pay falls back by itself), cap it by `adaptation.batch_schedule`, and
    #: shorten it per sequence when that sequence's acceptance is low (see adaptive.py). Default on.
    adaptive: bool = True

    adaptation: AdaptationSettings = field(default_factory=AdaptationSettings)
    prompt_lookup: PromptLookupSettings = field(default_factory=PromptLookupSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)

    def __post_init__(self) -> None:
        if self.num_speculative_tokens < 0:
            raise errors.InvalidInput(f"num_speculative_tokens must be >= 0, got {self.num_speculative_tokens}")

    def max_draft_length(self, batch_size: int) -> int:
        """Largest k allowed for a batch of `batch_size` sequences."""
        if self.proposer == "none":
            return 0
        if not self.adaptive:
            return self.num_speculative_tokens
        for largest_batch, largest_k in self.adaptation.batch_schedule:
            if batch_size <= largest_batch:
                return min(largest_k, self.num_speculative_tokens)
        return 0
