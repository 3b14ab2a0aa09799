"""CUDA-graph capture of one `ModelRunner.replay` computation for fixed shapes."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from specops.engine.kv_cache import KVCache

if TYPE_CHECKING:
    from specops.engine.runner import ModelRunner


class CapturedGraph:
    """A CUDA graph of one `ModelRunner.replay` computation for fixed shapes, attending over the
    whole capacity.

    The first call runs the computation for real (its cache writes are the step's), then records
    it; later calls copy inputs into static buffers and replay.
    """

    def __init__(
        self, runner: ModelRunner, cache: KVCache, compute: Callable[..., torch.Tensor | None], inputs: list
    ) -> None:
        self.runner, self.cache, self.compute = runner, cache, compute
        self.inputs = [torch.empty(x.shape, dtype=x.dtype, device=runner.device) for x in inputs]
        self.start = torch.zeros(1, dtype=torch.long, device=runner.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None

    def run(self, inputs: list[torch.Tensor], start: int) -> torch.Tensor | None:
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value, non_blocking=True)
        self.start.fill_(start)
        if self.graph is not None:
            self.graph.replay()
            return None if self.output is None else self.output.clone()
        # the real call happens on a side stream (also warming up), then the same work is recorded;
        # recording does not execute, so the cache holds exactly one copy of the writes
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        self.runner.run_compiled = True  # it compiles in the real call, before recording
        # no garbage collection while recording: collecting a dropped runner's graphs frees device
        # memory, which a capture forbids (it invalidates the recording)
        collecting = gc.isenabled()
        try:
            with torch.cuda.stream(stream):
                result = self.compute(*self.inputs, self.start, None)
                result = None if result is None else result.clone()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            gc.disable()
            with torch.cuda.graph(self.graph):  # a private memory pool per graph: replay order never matters
                self.output = self.compute(*self.inputs, self.start, None)
        finally:
            self.runner.run_compiled = False
            if collecting:
                gc.enable()
        return result
