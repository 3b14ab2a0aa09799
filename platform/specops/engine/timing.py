"""Phase timing of a decoding step that never makes the host wait for the device."""

from __future__ import annotations

import itertools
import time

import torch


class PhaseClock:
    """Marks between a step's phases; `seconds()` gives the time between consecutive marks.

    On a CUDA device the marks are events on the current stream, so timing adds no synchronisation:
    read `seconds()` after the step has synchronised anyway (when the host reads the verifier's
    decision). Elsewhere the work is synchronous and the marks are wall-clock readings.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Seconds between consecutive marks; clears the marks."""
        marks, self._marks = self._marks, []
        if self.cuda:
            return [a.elapsed_time(b) / 1000.0 for a, b in itertools.pairwise(marks)]
        return [b - a for a, b in itertools.pairwise(marks)]
