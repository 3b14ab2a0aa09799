"""Named ranges around the engine's host phases, for a profiler's trace or a tally of host time.

`named(phase)` wraps a function. Under `torch.profiler` each call is a `record_function` range named
after its phase; inside `host_microseconds()` its host time (inclusive of the phases it calls) adds
to the tally; otherwise the call goes straight through, at the cost of two flag reads.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import torch

PHASES: tuple[str, ...] = (
    "admit",  # new sequences into free rows, their prompts prefilled
    "verify_step",  # the target's forward over the drafts, the verifier, the read of its decision
    "emit",  # one sequence's verified tokens committed, cut at its stops
    "propose",  # the draft model's drafting
    "catch_up",  # the draft model taking in tokens decoded by plain steps
    "settle",  # the draft cache's drop of rejected drafts
    "commit",  # the draft model learning the verifier's decision
    "forward",  # a model forward over new cache slots
    "greedy_rounds",  # the draft model's greedy drafting rounds
    "tidy",  # the early compaction of a cache full of holes
    "prefill_alone",  # a prompt admitted beside running sequences, prefilled alone
    "append_chunks",  # prefill or catch-up in chunks of the captured widths
    "compact",  # a cache's holes removed
    "get",  # the host waiting for a copy from the device (the verifier's decision)
)
"""Every range name the engine emits."""

_tally: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("engine_phase_tally", default=None)

Params = ParamSpec("Params")
Result = TypeVar("Result")


def named(phase: str) -> Callable[[Callable[Params, Result]], Callable[Params, Result]]:
    """A decorator: each call of the function is a range of `phase` (one of `PHASES`)."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")

    def decorate(fn: Callable[Params, Result]) -> Callable[Params, Result]:
        @functools.wraps(fn)
        def call(*args: Params.args, **kwargs: Params.kwargs) -> Result:
            tally = _tally.get()
            if tally is not None:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    tally[phase] += (time.perf_counter() - started) * 1e6
            if torch.autograd.profiler._is_profiler_enabled:
                with torch.profiler.record_function(phase):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)

        return call

    return decorate


@contextlib.contextmanager
def host_microseconds() -> Iterator[dict[str, float]]:
    """Within the block, add each phase's host time (µs) to the yielded dict: a clock read per call,
    so steps run at their own speed, unlike under the profiler."""
    tally: dict[str, float] = defaultdict(float)
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)
