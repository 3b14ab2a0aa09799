"""The qualification gate's floors and sampling settings, and the sentences that explain a verdict."""

from __future__ import annotations

import math

from specops.errors import InvalidInput
from specops.pairs.qualification_report import CHAT_TEMPERATURE, CHAT_TOP_P

DEFAULT_MIN_ACCEPTANCE = 0.2
"""Acceptance-rate floor when neither the spec nor a flag says otherwise."""


def default_min_speedup(device: str) -> float:
    """The speedup floor when neither the spec (``slos.min_speedup``) nor a flag sets one.

    1.0 on a CUDA device; 0.0 (recorded, not judged) on a CPU and on any other device.

    Why: qualification runs on the machine the pair will serve on, so its speedup is the one traffic
    will get. Speculation exists to make decoding faster on accelerators, where a step of a real LLM is
    bound by memory bandwidth and verifying k + 1 tokens costs little more than decoding one; a pair
    that decodes slower than its target alone there (under 1×, greedy or sampled) only adds cost and
    is refused. That holds for tiny models too: a 4 M-parameter pair is bound by kernel launches on a
    GPU, and is refused there unless a floor is given.
    On a CPU a step is bound by compute and per-step overhead, so only a draft the target keeps most
    of pays, and run-to-run noise on shared cores is as large as the effect (see the demo pair's
    figures in ``benchmarks/results/demo-cpu.json``): judging it would
    refuse pairs the tests and the demo qualify by chance, and says nothing about the GPU it may
    serve on later. So on a CPU the figures
    are recorded, and the report says plainly when they are under 1. Other devices (mps, xpu, …) have
    no measured basis here yet: not judged either.
    """
    return 1.0 if device_kind(device) == "cuda" else 0.0


def check_floors(
    *,
    min_acceptance: float | None,
    min_speedup: float | None,
    names: tuple[str, str] = ("min_acceptance", "min_speedup"),
) -> None:
    """Refuse an acceptance floor outside [0, 1] or a negative (or NaN) speedup floor, naming it as ``names``."""
    if min_acceptance is not None and not 0.0 <= min_acceptance <= 1.0:
        raise InvalidInput(f"{names[0]} must be within [0, 1], got {min_acceptance:g}")
    if min_speedup is not None and (math.isnan(min_speedup) or min_speedup < 0.0):
        raise InvalidInput(f"{names[1]} must be >= 0 (0 records without judging), got {min_speedup:g}")


def sampled_settings(*, temperature: float, top_p: float, top_k: int) -> tuple[float, float, int, str]:
    """(temperature, top_p, top_k, where they come from) of the sampled speedup measurement.

    The pair's default sampling when it samples; the typical chat setting (``CHAT_TEMPERATURE``,
    ``CHAT_TOP_P``, the pair's top_k) when its default is greedy — a greedy default says nothing about
    how its sampled requests will run.
    """
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
        raise InvalidInput(
            f"sampling settings must have temperature >= 0, top_p in (0, 1] and top_k >= 0, got "
            f"temperature {temperature:g}, top_p {top_p:g}, top_k {top_k}"
        )
    if temperature > 0:
        return temperature, top_p, top_k, "the pair's default sampling"
    return (
        CHAT_TEMPERATURE,
        CHAT_TOP_P,
        top_k,
        f"the typical chat setting (temperature {CHAT_TEMPERATURE:g}, top_p {CHAT_TOP_P:g}): "
        "the pair's default is greedy",
    )


def speedup_note(*, greedy: float, sampled: float, floor: float, source: str, device: str) -> str:
    """A plain sentence when speculation does not pay here (a figure under 1) and the floor let it pass.

    "" when both figures are at least 1, or when the floor refuses the pair (its reason says so).
    ``source`` is how the floor was chosen: "given", or "default on DEVICE" (:func:`default_min_speedup`).
    """
    if min(greedy, sampled) >= 1.0 or (floor > 0 and min(greedy, sampled) < floor):
        return ""  # it pays, or the gate refuses it (the reason says so)
    figures = f"speculation does not pay on this machine (greedy {greedy:.2f}×, sampled {sampled:.2f}×)"
    if floor > 0:
        return f"{figures}: at or above the floor {floor:g}"
    if source == "given":
        return f"{figures}: not judged (floor 0 given)"
    return f"{figures}: not judged here (floor 0 on {device_kind(device)}); pass --min-speedup to enforce"


def speedup_reason(*, greedy: float, sampled: float, floor: float, temperature: float, top_p: float) -> str:
    """One line naming the figure(s) under the floor, or "" when both are at or above it."""
    if greedy < floor and sampled < floor:
        return f"speedup is under the floor {floor:g}×: greedy {greedy:.3f}×, sampled {sampled:.3f}×"
    if greedy < floor:
        return f"greedy speedup {greedy:.3f}× is under the floor {floor:g}× (sampled {sampled:.3f}×)"
    if sampled < floor:
        return (
            f"sampled speedup {sampled:.3f}× (temperature {temperature:g}, top_p {top_p:g}) is under the floor "
            f"{floor:g}× (greedy {greedy:.3f}×)"
        )
    return ""


def device_kind(device: str) -> str:
    """The device type of a torch device string: "cuda" for "cuda:1"."""
    return str(device).split(":", 1)[0].strip().lower()
