"""Per-sequence sampling: temperature / top-k / top-p as tensors, and seeded random draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from specops.engine.config import SamplingParams
from specops.engine.transfer import to_device


@dataclass(frozen=True)
class SamplingTensors:
    """Sampling parameters of a batch, one entry per sequence."""

    temperature: torch.Tensor  # [batch_size] float, 1.0 where greedy (unused there)
    top_k: torch.Tensor  # [batch_size] long, 0 = off
    top_p: torch.Tensor  # [batch_size] float, 1.0 = off
    greedy: torch.Tensor  # [batch_size] bool
    all_greedy: bool
    any_truncation: bool

    @classmethod
    def from_params(cls, params: Sequence[SamplingParams], device: torch.device) -> SamplingTensors:
        # staged copies: a sequence admitted into a running batch must not wait for its queued work
        return cls(
            temperature=to_device([p.temperature if not p.greedy else 1.0 for p in params], torch.float32, device),
            top_k=to_device([p.top_k for p in params], torch.long, device),
            top_p=to_device([p.top_p for p in params], torch.float32, device),
            greedy=to_device([p.greedy for p in params], torch.bool, device),
            all_greedy=all(p.greedy for p in params),
            any_truncation=any(p.top_k > 0 or p.top_p < 1.0 for p in params),
        )


def probabilities(logits: torch.Tensor, sampling: SamplingTensors) -> torch.Tensor:
    """The distribution each sequence samples from.

    logits: [batch_size, n, vocab] float; returns [batch_size, n, vocab] float32 probabilities
    after temperature, then top-k, then top-p (the smallest set whose mass reaches top_p).
    """
    logits = logits.float() / sampling.temperature[:, None, None]
    if sampling.any_truncation:
        vocab = logits.shape[-1]
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        rank = torch.arange(vocab, device=logits.device)
        top_k = torch.where(sampling.top_k > 0, sampling.top_k, vocab)  # [batch_size]
        drop = rank[None, None, :] >= top_k[:, None, None]
        sorted_probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop = drop | (mass_before >= sampling.top_p[:, None, None])  # [batch_size, n, vocab]
        drop[..., 0] = False  # the most likely token always stays
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    return torch.softmax(logits, dim=-1)


class RowRandom:
    """Random draws per sequence: a seeded sequence uses its own generator, the rest share the global one."""

    def __init__(self, seeds: Sequence[int | None], device: torch.device) -> None:
        self.device = device
        self.generators: list[torch.Generator | None] = []
        for seed in seeds:
            if seed is None:
                self.generators.append(None)
            else:
                generator = torch.Generator(device=device)
                generator.manual_seed(seed)
                self.generators.append(generator)
        self._seeded = [i for i, g in enumerate(self.generators) if g is not None]

    def reseed(self, row: int, seed: int | None) -> None:
        """Give `row` a new sequence's seed (its own generator, or the shared one for None)."""
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
        self.generators[row] = generator
        self._seeded = [i for i, g in enumerate(self.generators) if g is not None]

    def uniform(self, batch_size: int, n: int) -> torch.Tensor:
        """[batch_size, n] uniform in [0, 1)."""
        out = torch.rand(batch_size, n, device=self.device)
        for row in self._seeded:
            out[row] = torch.rand(n, device=self.device, generator=self.generators[row])
        return out

    def exponential(self, batch_size: int, vocab: int) -> torch.Tensor:
        """[batch_size, vocab] Exp(1) noise; argmax(p / noise) samples from p (the Gumbel-max trick)."""
        out = torch.empty(batch_size, vocab, device=self.device).exponential_()
        for row in self._seeded:
            out[row].exponential_(generator=self.generators[row])
        return out

    def sample(self, probs: torch.Tensor) -> torch.Tensor:
        """One token per row from probs [batch_size, vocab]; returns [batch_size] long."""
        noise = self.exponential(probs.shape[0], probs.shape[1])
        return torch.argmax(probs / noise, dim=-1)
