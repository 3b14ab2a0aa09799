"""Adaptive speculation: the batch's draft length from measured step times, each sequence's from its acceptance.

A step drafting K tokens per sequence yields, for a sequence with per-token acceptance alpha,
(1 - alpha^(K+1)) / (1 - alpha) tokens in expectation (Leviathan et al., arXiv 2211.17192). What it
costs depends on the hardware, the batch size and K, and no formula gets that right everywhere
(on a GPU the k+1-token verify is nearly free, on a CPU or at a large batch it is not). So
`SpeculationGovernor` measures the cost: per batch-size bucket the wall time of recent steps for
every K in 0..cap (it tries each K once, then re-times a neighbouring K or K = 0 for a few steps now
and then). The gain it does not measure but predicts, from the running sequences' own acceptance:
what a K earns depends on the text being decoded, which changes between the steps that time
different K, while what a K costs does not. It picks the K with the most expected tokens per
second, and leaves its current K only for one `SWITCH_MARGIN` faster. K = 0 is plain decoding, so a
pair whose speculation slows decoding falls back to plain decoding by itself, and comes back when it
pays.

Within a step a sequence drafts at most the batch's K, and fewer when its own acceptance is low
(`DraftLengthController`): it stops where the chance that the whole draft survives falls under
`MIN_SURVIVAL` (dynamic draft length, as in EAGLE-2 / vLLM's adaptive drafting). A batch drafts as
far as its longest such draft, every sequence alike: the step's drafting rounds and verification
cover that many tokens for all rows anyway, so a shorter draft in a batch would save nothing and
lose the tokens it did not propose.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable

from specops.engine.config import SpeculationConfig

MAX_TRIES = 3
"""Choices of a K whose steps were never measured before the governor stops trying it."""

PRIOR_ALPHA = 0.6
"""Acceptance assumed for a sequence before its first verified draft."""

PRIOR_TRIALS = 4.0
"""Weight of `PRIOR_ALPHA`, in draft tokens, in a sequence's long-run acceptance (what `gain` uses)."""

SWITCH_MARGIN = 1.05
"""The governor leaves its current K only for one expected to be this much faster: near a tie,
switching costs more than it gains (the draft catches up after plain steps, the estimates wobble)."""

MIN_SURVIVAL = 0.1
"""A sequence drafts token j only while alpha^j >= this (the chance all j survive verification)."""


def expected_tokens(alpha: float, k: int) -> float:
    """Expected tokens a step gains with draft length k and per-token acceptance alpha."""
    alpha = min(max(alpha, 0.0), 0.999)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """(1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)): theoretical speedup of draft length k at cost ratio c."""
    return expected_tokens(alpha, k) / (k * c + 1.0)


class Acceptance:
    """A geometric acceptance estimate, alpha = accepted / (accepted + rejections), from a prior worth
    `trials` draft tokens. Each update keeps `keep` of the old evidence and adds the new with `weight`."""

    def __init__(self, alpha: float, trials: float, *, keep: float = 1.0, weight: float = 1.0) -> None:
        self.successes, self.trials = alpha * trials, trials
        self.keep, self.weight = keep, weight

    @property
    def alpha(self) -> float:
        return self.successes / self.trials

    def update(self, num_accepted: int, num_rejections: int) -> None:
        """Accepted draft tokens and rejections (drafts not fully accepted) of one step."""
        if num_accepted + num_rejections == 0:
            return
        self.successes = self.keep * self.successes + self.weight * num_accepted
        self.trials = max(self.keep * self.trials + self.weight * (num_accepted + num_rejections), 1e-6)

    def revert(self, alpha: float) -> None:
        """A step without evidence: move towards `alpha` as far as one update would."""
        self.successes = self.keep * self.successes + self.weight * alpha * self.trials


class PairAcceptance(Acceptance):
    """The pair's recent acceptance over all sequences: where a new sequence's estimate starts.

    A fixed prior would make every new sequence of a poorly matched pair draft optimistically for its
    first steps; the pair's own recent figure does not. Keeps `decay` per step (about 50 steps).
    """

    def __init__(self, *, prior_alpha: float = PRIOR_ALPHA, decay: float = 0.98) -> None:
        super().__init__(prior_alpha, PRIOR_TRIALS, keep=decay)


class DraftLengthController:
    """Per-sequence acceptance estimates: a recent one sets the sequence's draft length, a long-run one
    its expected gain.

    The draft length follows acceptance within a few steps (a hard passage drafts short). The gain,
    which decides whether the batch speculates at all, uses the sequence's acceptance since it
    started (with `PRIOR_TRIALS` of the prior). A plain step teaches nothing: during plain steps the
    recent estimate reverts to the long-run one, so a short run of rejections cannot keep a sequence
    in plain decoding on a stale, low estimate.
    """

    def __init__(self, config: SpeculationConfig, batch_size: int, *, prior_alpha: float = PRIOR_ALPHA) -> None:
        self.smoothing = config.adaptation.acceptance_smoothing
        self.adaptive = config.adaptive
        self.recent = [self._recent(prior_alpha) for _ in range(batch_size)]
        self.long_run = [Acceptance(prior_alpha, PRIOR_TRIALS) for _ in range(batch_size)]

    def _recent(self, prior_alpha: float) -> Acceptance:
        return Acceptance(prior_alpha, 1.0, keep=1 - self.smoothing, weight=self.smoothing)

    def reset(self, row: int, prior_alpha: float = PRIOR_ALPHA) -> None:
        """A new sequence in `row`: back to the prior."""
        self.recent[row], self.long_run[row] = self._recent(prior_alpha), Acceptance(prior_alpha, PRIOR_TRIALS)

    def alpha(self, row: int) -> float:
        """Recent acceptance of `row`."""
        return self.recent[row].alpha

    def long_run_alpha(self, row: int) -> float:
        """Acceptance of `row` since its sequence started, the prior included."""
        return self.long_run[row].alpha

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

    def batch_length(self, active: list[bool], max_k: int) -> int:
        """Draft length of every active sequence in a step with cap `max_k`: the longest `length`."""
        return max((self.length(row, max_k) for row, on in enumerate(active) if on), default=0)

    def gain(self, active: list[bool], max_k: int) -> float:
        """Tokens the active sequences are expected to emit in a step with cap `max_k`."""
        k = self.batch_length(active, max_k)
        return sum(expected_tokens(self.long_run_alpha(row), k) for row, on in enumerate(active) if on)

    def update(self, row: int, num_draft_tokens: int, num_accepted: int) -> None:
        """Learn from one step of `row`.

        A plain step (nothing drafted) brings no evidence, so the recent estimate drifts back towards
        the long-run one: a sequence that a few rejections pushed to short drafts, and so to plain
        decoding, returns to drafting once the stale evidence has faded.
        """
        if num_draft_tokens == 0:
            self.recent[row].revert(self.long_run_alpha(row))
            return
        rejected = int(num_accepted < num_draft_tokens)
        self.recent[row].update(num_accepted, rejected)
        self.long_run[row].update(num_accepted, rejected)


class SpeculationGovernor:
    """Chooses each step's K per batch-size bucket: expected tokens (from acceptance) / measured cost.

    Per (bucket, K) it keeps the wall time of the last `window` steady steps and takes their median,
    so a stray slow step (a garbage collection, a cache compaction) does not move the choice. A
    step is steady unless it captured a CUDA graph or the draft had to catch up on tokens decoded by
    plain steps; the engine does not record the others. Every `probe_interval` steps a probe of
    `probe_steps` consecutive steps re-times a neighbouring K or plain decoding (and refreshes the
    acceptance estimates, which plain steps leave alone); it lasts more than one step so that its
    first step's catch-up is not its price. While probes confirm the choice the interval doubles,
    up to 8 x `probe_interval`. Lives as long as the engine, so what one call measured serves the next.
    """

    def __init__(self, config: SpeculationConfig, *, window: int = 16, probe_steps: int = 3) -> None:
        self.config = config
        self.window = window
        self.probe_steps = probe_steps
        self.samples: dict[tuple[int, int], deque[float]] = {}  # (bucket, K) -> recent step seconds
        self.steps: dict[int, int] = {}
        self.tries: dict[tuple[int, int], int] = {}  # choices of an unmeasured K
        self._probe: dict[int, tuple[int, int]] = {}  # bucket -> (K, steps left)
        self._probes: dict[int, int] = {}  # bucket -> probes started
        self._schedule: dict[int, tuple[int, int, int]] = {}  # bucket -> (next probe step, interval, best then)
        self._current: dict[int, int] = {}  # bucket -> the K last chosen on rates (not by a probe)

    @staticmethod
    def bucket(batch_size: int) -> int:
        return 1 << max(0, batch_size - 1).bit_length()

    def step_seconds(self, batch_size: int, k: int) -> float | None:
        """Median wall time of a recent steady step with cap K at this batch size; None if unmeasured."""
        samples = self.samples.get((self.bucket(batch_size), k))
        return statistics.median(samples) if samples else None

    def choose(self, batch_size: int, cap: int, gain: Callable[[int], float] | None = None) -> int:
        """K for this step: 0..cap, `cap` itself when not adaptive.

        gain(K): tokens the step is expected to emit with cap K (default: `expected_tokens` at the
        prior acceptance, one sequence).
        """
        if cap <= 0 or not self.config.adaptive or self.config.adaptation.always_draft:
            return max(cap, 0)
        gain = gain or (lambda k: expected_tokens(PRIOR_ALPHA, k))
        bucket = self.bucket(batch_size)
        step = self.steps.get(bucket, 0)
        self.steps[bucket] = step + 1
        costs = {k: self.step_seconds(batch_size, k) for k in range(cap + 1)}
        # each K is timed once before any is chosen; one that stays unmeasured is given up after MAX_TRIES
        unknown = [k for k in range(cap, -1, -1) if costs[k] is None and self.tries.get((bucket, k), 0) < MAX_TRIES]
        if unknown:
            self.tries[(bucket, unknown[0])] = self.tries.get((bucket, unknown[0]), 0) + 1
            return unknown[0]
        rates = {k: gain(k) / cost for k, cost in costs.items() if cost}
        if not rates:
            return 0
        probe_k, left = self._probe.get(bucket, (0, 0))
        if left > 0 and probe_k in rates:
            self._probe[bucket] = (probe_k, left - 1)
            return probe_k
        best = max(rates, key=rates.__getitem__)
        current = self._current.get(bucket)
        if current in rates and rates[best] < SWITCH_MARGIN * rates[current]:
            best = current
        self._current[bucket] = best
        others = sorted({0, best - 1, best + 1} & set(rates) - {best})
        base = self.config.adaptation.probe_interval
        next_probe, interval, last_best = self._schedule.get(bucket, (step + base, base, best))
        if others and step >= next_probe:
            # re-time the neighbours and plain decoding, not far-off lengths that cost a lot to probe;
            # while probes keep confirming the choice they come less often
            interval = min(2 * interval, 8 * base) if best == last_best else base
            self._schedule[bucket] = (step + interval, interval, best)
            self._probes[bucket] = self._probes.get(bucket, 0) + 1
            probe_k = others[self._probes[bucket] % len(others)]
            self._probe[bucket] = (probe_k, self.probe_steps - 1)
            return probe_k
        self._schedule[bucket] = (next_probe, interval, last_best)
        return best

    def record(self, *, batch_size: int, k: int, seconds: float) -> None:
        """Record the wall time of a steady step that ran with cap K."""
        if seconds > 0:
            self.samples.setdefault((self.bucket(batch_size), k), deque(maxlen=self.window)).append(seconds)
