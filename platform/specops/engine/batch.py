"""The running batch as proposers see it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specops.engine.sampling import RowRandom, SamplingTensors


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


def host_staged(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host list as a tensor ready to copy to `device` without waiting: in pinned memory for a CUDA
    device (copies from it are asynchronous), as it is otherwise."""
    tensor = torch.tensor(values, dtype=dtype)
    return tensor.pin_memory() if device.type == "cuda" else tensor


def to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A host list as a tensor on `device`, without waiting for the device.

    `torch.tensor(values, device="cuda")` copies synchronously: the host waits until the GPU has
    finished all queued work, and the GPU then idles while the host prepares the next kernels. A
    decoding step builds several small inputs, so it stages them in pinned memory and copies
    asynchronously instead; the host reads the device once per step (the verifier's decision).
    """
    return host_staged(values, dtype, device).to(device, non_blocking=True)


class HostCopy:
    """A device tensor's copy to host memory, queued now; `get()` waits for this copy alone, not for
    device work queued after it (on a CUDA device: into pinned memory, behind an event)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.event: torch.cuda.Event | None = None
        if tensor.device.type != "cuda":
            self.tensor = tensor
            return
        self.tensor = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        self.tensor.copy_(tensor, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()

    def get(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.tensor


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
