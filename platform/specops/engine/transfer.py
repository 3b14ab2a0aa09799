"""Copies between host and device that do not make the host wait for the device's queued work."""

from __future__ import annotations

import torch

from specops.engine import phases


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

    @phases.named("get")
    def get(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.tensor
