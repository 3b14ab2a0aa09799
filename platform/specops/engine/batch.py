"""The running batch as proposers see it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specops.engine.sampling import RowRandom, SamplingTensors
from specops.engine.transfer import to_device


@dataclass
class SequenceBatch:
    """Sequences decoded together by one `generate` call.

    `tokens[i]` is sequence i's prompt followed by the tokens generated so far (all committed:
    verified, within budget, before any stop). Finished sequences stay in the batch as inactive rows
    so tensor shapes (and captured CUDA graphs) stay put; they feed only padding.
    """

    tokens: list[list[int]]
    active: list[bool]
    sampling: SamplingTensors
    rng: RowRandom
    device: torch.device
    capacity: int  # KV-cache slots per sequence the proposers may allocate

    @property
    def batch_size(self) -> int:
        return len(self.tokens)


def left_padded_rows(sequences: list[list[int]], *, flags: list[bool] | None = None, width: int = 0) -> list[list[int]]:
    """Per sequence: its ids left-padded to `width` (or the longest), then as many 0/1 valid marks,
    then its flag when `flags` are given: the rows of one [batch_size, 2 * width (+ 1)] tensor."""
    width = max(1, width, max(map(len, sequences)))
    rows = [[0] * (width - len(s)) + list(s) + [0] * (width - len(s)) + [1] * len(s) for s in sequences]
    if flags is not None:
        rows = [[*row, int(flag)] for row, flag in zip(rows, flags, strict=True)]
    return rows


def left_padded(
    sequences: list[list[int]], device: torch.device, *, flags: list[bool] | None = None, width: int = 0
) -> tuple[torch.Tensor, ...]:
    """Left-pad token lists: ids [batch_size, width] long and valid [batch_size, width] bool (width:
    the longest, or more), plus `flags` as a [batch_size] bool tensor when given; one host-to-device
    copy for all."""
    staged = to_device(left_padded_rows(sequences, flags=flags, width=width), torch.long, device)
    width = staged.shape[1] // 2
    ids, valid = staged[:, :width], staged[:, width : 2 * width].bool()
    return (ids, valid) if flags is None else (ids, valid, staged[:, 2 * width].bool())
