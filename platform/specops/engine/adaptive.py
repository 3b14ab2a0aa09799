"""Adaptive speculation: the batch's draft length from measured step times, each sequence's from its acceptance.

A step drafting K tokens per sequence yields, for a sequence with per-token acceptance alpha,
(1 - alpha^(K+1)) / (1 - alpha) tokens in expectation (Leviathan et al., arXiv 2211.17192). What it
costs depends on the hardware, the batch size and K, and no formula gets that right everywhere
(on a GPU the k+1-token verify is nearly free, on a CPU or at a large batch it is not). So
`SpeculationGovernor` measures it: per batch-size bucket it keeps the tokens and wall time of recent steps
for every K in 0..cap, tries each K once, then picks the K with the most tokens per second, and
re-measures a neighbouring K or K = 0 for a few steps every `probe_interval` steps. K = 0 is plain
decoding, so a pair whose speculation slows decoding falls back to plain decoding by itself, and
comes back when it pays.

Within a step each sequence drafts at most the batch's K, and fewer when its own acceptance is low
(`DraftLengthController`): it stops where the chance that the whole draft survives falls under
`MIN_SURVIVAL` (dynamic draft length, as in EAGLE-2 / vLLM's adaptive drafting).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from specops.engine.config import SpeculationConfig

MAX_TRIES = 3
"""Choices of a K whose steps were never measured before the governor stops trying it."""

MIN_SURVIVAL = 0.1
"""A sequence drafts token j only while alpha^j >= this (the chance all j survive verification)."""


def expected_tokens(alpha: float, k: int) -> float:
    """Expected tokens a step gains with draft length k and per-token acceptance alpha."""
    alpha = min(max(alpha, 0.0), 0.999)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """(1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)): theoretical speedup of draft length k at cost ratio c."""
    return expected_tokens(alpha, k) / (k * c + 1.0)


class DraftLengthController:
    """Per-sequence acceptance estimate and the draft length it allows."""

    def __init__(self, config: SpeculationConfig, batch_size: int, *, prior_alpha: float = 0.6) -> None:
        self.weight = config.acceptance_smoothing
        self.adaptive = config.adaptive
        # geometric estimator: alpha = accepted / (accepted + rejections), both smoothed
        self.successes = [prior_alpha] * batch_size
        self.trials = [1.0] * batch_size

    def alpha(self, row: int) -> float:
        return self.successes[row] / self.trials[row]

    def length(self, row: int, max_k: int) -> int:
        """Draft length for `row` under the batch's `max_k`: at least 1 when max_k >= 1."""
        if max_k <= 0 or not self.adaptive:
            return max(max_k, 0)
        alpha = self.alpha(row)
        if alpha <= 0.0:
            return 1
        if alpha >= 1.0:
            return max_k
        return max(1, min(max_k, int(math.log(MIN_SURVIVAL) / math.log(alpha))))

    def update(self, row: int, num_draft_tokens: int, num_accepted: int) -> None:
        if num_draft_tokens == 0:
            return
        rejected = 1.0 if num_accepted < num_draft_tokens else 0.0
        w = self.weight
        self.successes[row] = (1 - w) * self.successes[row] + w * num_accepted
        self.trials[row] = max((1 - w) * self.trials[row] + w * (num_accepted + rejected), 1e-6)


class SpeculationGovernor:
    """Chooses each step's K per batch-size bucket from measured throughput.

    Per (bucket, K) it keeps the last `window` steady steps (tokens emitted, seconds) and rates K by
    mean tokens / median seconds, so a stray slow step (a garbage collection, a cache compaction)
    does not move the choice. A step is steady unless it captured a CUDA graph or the draft had to
    catch up on tokens decoded by plain steps; the engine does not record the others. Every
    `probe_interval` steps a probe of `probe_steps` consecutive steps re-times a neighbouring K or
    plain decoding; it lasts more than one step so that its first step's catch-up is not its price.
    While probes confirm the choice the interval doubles, up to 8 x `probe_interval`.
    Lives as long as the engine, so what one `generate` call measured serves the next.
    """

    def __init__(self, config: SpeculationConfig, *, window: int = 16, probe_steps: int = 3) -> None:
        self.config = config
        self.window = window
        self.probe_steps = probe_steps
        self.samples: dict[tuple[int, int], deque[tuple[float, float]]] = {}
        self.steps: dict[int, int] = {}
        self.tries: dict[tuple[int, int], int] = {}  # choices of an unmeasured K
        self._probe: dict[int, tuple[int, int]] = {}  # bucket -> (K, steps left)
        self._probes: dict[int, int] = {}  # bucket -> probes started
        self._schedule: dict[int, tuple[int, int, int]] = {}  # bucket -> (next probe step, interval, best then)

    @staticmethod
    def bucket(batch_size: int) -> int:
        return 1 << max(0, batch_size - 1).bit_length()

    def tokens_per_second(self, batch_size: int, k: int) -> float | None:
        samples = self.samples.get((self.bucket(batch_size), k))
        if not samples:
            return None
        tokens = sum(t for t, _ in samples) / len(samples)
        return tokens / statistics.median(s for _, s in samples)

    def choose(self, batch_size: int, cap: int) -> int:
        """K for this step: 0..cap, `cap` itself when not adaptive."""
        if cap <= 0 or not self.config.adaptive:
            return max(cap, 0)
        bucket = self.bucket(batch_size)
        step = self.steps.get(bucket, 0)
        self.steps[bucket] = step + 1
        rates = {k: self.tokens_per_second(batch_size, k) for k in range(cap + 1)}
        # each K is tried until measured; one that stays unmeasured is given up after MAX_TRIES
        unknown = [k for k in range(cap, -1, -1) if rates[k] is None and self.tries.get((bucket, k), 0) < MAX_TRIES]
        if unknown:
            self.tries[(bucket, unknown[0])] = self.tries.get((bucket, unknown[0]), 0) + 1
            return unknown[0]
        measured = {k: rate for k, rate in rates.items() if rate is not None}
        if not measured:
            return 0
        probe_k, left = self._probe.get(bucket, (0, 0))
        if left > 0 and probe_k in measured:
            self._probe[bucket] = (probe_k, left - 1)
            return probe_k
        best = max(measured, key=measured.__getitem__)
        others = sorted({0, best - 1, best + 1} & set(measured) - {best})
        next_probe, interval, last_best = self._schedule.get(
            bucket, (step + self.config.probe_interval, self.config.probe_interval, best)
        )
        if others and step >= next_probe:
            # re-measure the neighbours and plain decoding, not far-off lengths that cost a lot to probe;
            # while probes keep confirming the choice they come less often (up to 8x the interval)
            base = self.config.probe_interval
            interval = min(2 * interval, 8 * base) if best == last_best else base
            self._schedule[bucket] = (step + interval, interval, best)
            self._probes[bucket] = self._probes.get(bucket, 0) + 1
            probe_k = others[self._probes[bucket] % len(others)]
            self._probe[bucket] = (probe_k, self.probe_steps - 1)
            return probe_k
        self._schedule[bucket] = (next_probe, interval, last_best)
        return best

    def record(self, *, batch_size: int, k: int, tokens: int, seconds: float) -> None:
        """Record a steady step's emitted tokens and cost."""
        if seconds <= 0:
            return
        key = (self.bucket(batch_size), k)
        self.samples.setdefault(key, deque(maxlen=self.window)).append((float(tokens), seconds))
