"""The pure functions of a forward, plain or through torch.compile.

A forward's elementwise work around the matrix products is a few pure functions (`Kernels`). Eagerly
they run as written; while a CUDA graph records (`ModelRunner.run_compiled`) they run compiled, so
each becomes a few fused kernels inside the graph. Compiled code never mutates its inputs: the cache
writes stay eager, between the kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from specops.engine import forward, fused_layer


class Kernels(NamedTuple):
    """The pure functions of a forward: plain, or compiled (`compiled_kernels`)."""

    step_inputs: Callable[..., tuple[torch.Tensor, ...]]
    before: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    after: Callable[..., torch.Tensor]
    head: Callable[..., torch.Tensor]


PLAIN_KERNELS = Kernels(
    forward.step_inputs, fused_layer.attention_inputs, fused_layer.attention_output_and_mlp, fused_layer.final_logits
)


@functools.cache
def compiled_kernels() -> Kernels:
    """`PLAIN_KERNELS` through torch.compile: shapes symbolic, so every batch size, step width and
    model of a process shares a few compilations. Compiling happens at the first call of each shape
    family, which CUDA-graph capture runs eagerly before it records."""
    return Kernels(*map(compiled, PLAIN_KERNELS))


@functools.cache
def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` through torch.compile, shapes symbolic."""
    _allow_recompiles()
    return torch.compile(fn, dynamic=True, fullgraph=True)


def _allow_recompiles() -> None:
    """Room for one compilation per shape family (batch or width 1 are specialised) of each model."""
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))


def last_argmax(logits: torch.Tensor) -> torch.Tensor:
    """The last position's argmax [batch_size] of logits [batch_size, q, vocab]."""
    return logits[:, -1].argmax(dim=-1)
