"""Settings of one request (`SamplingParams`) and of the engine's speculation (`SpeculationConfig`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from specops import errors

#: Default batch-size schedule: (largest batch size, largest draft length) rows, ascending; above the
#: last row speculation is off. From the H100 bench runs (benchmarks/results/engine-h100*.json): with
#: a draft at alpha 0.5 the best k is 2 to 4 at batch 1; at batch 8 (drafts made ahead) fixed k = 3
#: gained 1.20x where the adaptive engine, capped at k = 2, gained 1.08x; at batch 32 fixed k = 3 lost
#: (0.99x): sequences accept at different rates, so a batch runs on for its slowest sequence.
#: Speculation stays on up to batch 8 (k <= 4 above batch 4) and is off beyond.
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
class SpeculationConfig:
    """How the engine speculates.

    proposer: "draft" (a draft model), "prompt_lookup" (n-gram match, no model) or "none".
    num_speculative_tokens: draft length k; the fixed k when `adaptive` is off, else the largest k.
    adaptive: choose each step's k from measured step times (k = 0 is plain decoding, so a pair
        whose speculation does not pay falls back by itself), cap it by `batch_schedule`, and
        shorten it per sequence when that sequence's acceptance is low (see adaptive.py).
    batch_schedule: (largest batch size, largest k) rows in ascending batch size; speculation is
        off above the last row. Only used when `adaptive` is on.
    prompt_lookup_min / prompt_lookup_max: n-gram lengths the prompt-lookup proposer tries, longest first.
    acceptance_smoothing: weight of the newest step in the per-sequence acceptance average (0..1].
    probe_interval: every this many steps the adaptive engine re-times another draft length
        (0 = plain decoding) per batch-size bucket, to keep its choice of k measured.
    cuda_graphs: capture forwards as CUDA graphs on a CUDA device (ignored on CPU).
    compiled: with CUDA graphs, fuse each layer's elementwise work with torch.compile (compiles at
        warm-up or at the first call of a shape: seconds, once per process).
    always_draft: draft up to the schedule's cap every step, never falling back to plain decoding
        by timing (per-sequence lengths still follow acceptance). What a step drafts then depends
        on the pair alone, not on the machine's step times: qualification measures acceptance so.
    pad_batches: pad every call to one of the engine's graph batch sizes, as it always does with CUDA
        graphs (tests set it on a CPU to cover that path).
    draft_ahead: in steady greedy drafting, start the next step's drafts before the host reads the
        verifier's decision (`Proposer.prefetch`); off, each step drafts after that read.
    admit_in_step: with continuous batching, a prompt is admitted into a row freed by the last step
        while the running sequences' step is on the device (admission's host work and prefill overlap
        it), and decodes from the next step; off, it is admitted before the step, which waits for it.
    """

    proposer: str = "draft"
    num_speculative_tokens: int = 4
    adaptive: bool = True
    batch_schedule: tuple[tuple[int, int], ...] = field(default=DEFAULT_BATCH_SCHEDULE)
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 3
    acceptance_smoothing: float = 0.3
    probe_interval: int = 16
    cuda_graphs: bool = True
    compiled: bool = True
    pad_batches: bool = False
    always_draft: bool = False
    draft_ahead: bool = True
    admit_in_step: bool = True

    def __post_init__(self) -> None:
        if self.num_speculative_tokens < 0:
            raise errors.InvalidInput(f"num_speculative_tokens must be >= 0, got {self.num_speculative_tokens}")
        if not 1 <= self.prompt_lookup_min <= self.prompt_lookup_max:
            raise errors.InvalidInput("prompt lookup needs 1 <= prompt_lookup_min <= prompt_lookup_max")
        if not 0.0 < self.acceptance_smoothing <= 1.0:
            raise errors.InvalidInput("acceptance_smoothing must be in (0, 1]")
        rows = tuple((int(b), int(k)) for b, k in self.batch_schedule)
        if any(b2 <= b1 for (b1, _), (b2, _) in itertools.pairwise(rows)):
            raise errors.InvalidInput("batch_schedule rows must have ascending batch sizes")
        object.__setattr__(self, "batch_schedule", rows)

    def max_draft_length(self, batch_size: int) -> int:
        """Largest k allowed for a batch of `batch_size` sequences."""
        if self.proposer == "none":
            return 0
        if not self.adaptive:
            return self.num_speculative_tokens
        for largest_batch, largest_k in self.batch_schedule:
            if batch_size <= largest_batch:
                return min(largest_k, self.num_speculative_tokens)
        return 0
