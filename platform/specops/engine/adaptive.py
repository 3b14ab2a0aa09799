"""Adaptive speculation: draft length per sequence, and a measured fallback to plain decoding.

Expected tokens per step with per-token acceptance alpha and draft length k are
(1 - alpha^(k+1)) / (1 - alpha); a step costs (k * c + 1) target forwards, where c is the draft's
cost per token relative to one target forward. Their ratio is the speedup over plain decoding
(Leviathan et al., arXiv 2211.17192, Theorem 3.8); each sequence gets the k that maximises it.

The formula trusts that verifying k+1 tokens costs what one target forward does, which fails on a
CPU or a large batch. So `SpeculationGovernor` also times whole steps: per batch-size bucket it keeps
the throughput of speculative and plain steps, probes the other mode every `probe_interval` steps,
and speculates only while that measures faster. A pair whose speculation slows decoding thereby
falls back to plain decoding by itself.
"""

from __future__ import annotations

from specops.engine.config import SpeculationConfig


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """(1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)): theoretical speedup of draft length k."""
    alpha = min(max(alpha, 0.0), 0.999)
    return (1.0 - alpha ** (k + 1)) / ((1.0 - alpha) * (k * c + 1.0))


class DraftLengthController:
    """Per-sequence acceptance estimate and the draft length it calls for."""

    def __init__(self, config: SpeculationConfig, batch_size: int, *, prior_alpha: float = 0.6) -> None:
        self.config = config
        self.weight = config.acceptance_smoothing
        # geometric estimator: alpha = accepted / (accepted + rejections), both smoothed
        self.successes = [prior_alpha] * batch_size
        self.trials = [1.0] * batch_size
        self.steps_off = [0] * batch_size

    def alpha(self, row: int) -> float:
        return self.successes[row] / self.trials[row]

    def choose(self, row: int, cap: int, cost_ratio: float) -> int:
        """Draft length for `row` this step, at most `cap` (0 = do not draft)."""
        if cap <= 0:
            return 0
        if not self.config.adaptive:
            return cap
        alpha = self.alpha(row)
        best_k = max(range(1, cap + 1), key=lambda k: expected_speedup(alpha, k, cost_ratio))
        if expected_speedup(alpha, best_k, cost_ratio) >= 1.0:
            self.steps_off[row] = 0
            return best_k
        # not worth drafting for this sequence; draft one token now and then to keep alpha current
        self.steps_off[row] += 1
        return 1 if self.steps_off[row] % self.config.probe_interval == 0 else 0

    def update(self, row: int, num_draft_tokens: int, num_accepted: int) -> None:
        if num_draft_tokens == 0:
            return
        rejected = 1.0 if num_accepted < num_draft_tokens else 0.0
        w = self.weight
        self.successes[row] = (1 - w) * self.successes[row] + w * num_accepted
        self.trials[row] = (1 - w) * self.trials[row] + w * (num_accepted + rejected)
        self.trials[row] = max(self.trials[row], 1e-6)


class SpeculationGovernor:
    """Chooses speculative or plain steps per batch-size bucket from measured throughput.

    Lives as long as the engine, so what one `generate` call learned serves the next.
    """

    def __init__(self, config: SpeculationConfig, *, smoothing: float = 0.3) -> None:
        self.config = config
        self.smoothing = smoothing
        self.tokens_per_second: dict[tuple[int, bool], float] = {}  # (bucket, speculative) -> EWMA
        self.steps: dict[int, int] = {}
        self.cost_ratio = 0.1  # draft seconds per draft token / target seconds per verify, EWMA

    @staticmethod
    def bucket(batch_size: int) -> int:
        return 1 << max(0, batch_size - 1).bit_length()

    def speculate(self, batch_size: int) -> bool:
        """Whether this step should speculate."""
        if not self.config.adaptive:
            return True
        bucket = self.bucket(batch_size)
        step = self.steps.get(bucket, 0)
        self.steps[bucket] = step + 1
        spec = self.tokens_per_second.get((bucket, True))
        plain = self.tokens_per_second.get((bucket, False))
        if spec is None:
            return True
        if plain is None:
            return step % 2 == 0  # measure plain early: alternate until both are known
        prefer_spec = spec >= plain
        probe = step % self.config.probe_interval == 0
        return prefer_spec != probe

    def record(self, *, batch_size: int, speculative: bool, tokens: int, seconds: float) -> None:
        if seconds <= 0:
            return
        key = (self.bucket(batch_size), speculative)
        rate = tokens / seconds
        old = self.tokens_per_second.get(key)
        self.tokens_per_second[key] = rate if old is None else (1 - self.smoothing) * old + self.smoothing * rate

    def record_cost(self, *, draft_seconds: float, max_k: int, target_seconds: float) -> None:
        if max_k <= 0 or target_seconds <= 0:
            return
        ratio = (draft_seconds / max_k) / target_seconds
        self.cost_ratio = (1 - self.smoothing) * self.cost_ratio + self.smoothing * ratio
