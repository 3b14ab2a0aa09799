"""RolloutState to and from plain JSON-able dicts (status subresource, state files, audit payloads)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from specops.rollout.model import (
    CanaryAnalysis,
    Check,
    Decision,
    Histogram,
    Phase,
    RolloutState,
    Transition,
    Verdict,
    WindowMetrics,
)


def state_to_dict(state: RolloutState) -> dict[str, Any]:
    """A JSON-able dict of ``state``."""
    return _plain(dataclasses.asdict(state))


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """A JSON-able dict of ``decision``."""
    return _plain(dataclasses.asdict(decision))


def state_from_dict(data: dict[str, Any]) -> RolloutState:
    """Rebuild a state written by :func:`state_to_dict`."""
    analysis = data.get("last_analysis")
    return RolloutState(
        deployment=data["deployment"],
        pair=data["pair"],
        stable_version=data.get("stable_version"),
        canary_version=data.get("canary_version"),
        previous_version=data.get("previous_version"),
        phase=Phase(data.get("phase", Phase.PENDING)),
        step_index=int(data.get("step_index", -1)),
        weight=int(data.get("weight", 0)),
        consecutive_failures=int(data.get("consecutive_failures", 0)),
        promoted_at=data.get("promoted_at"),
        inconclusive_s=float(data.get("inconclusive_s", 0.0)),
        analysed_at=data.get("analysed_at"),
        last_analysis=analysis_from_dict(analysis) if analysis else None,
        history=tuple(
            Transition(
                at=t["at"],
                from_phase=Phase(t["from_phase"]),
                to_phase=Phase(t["to_phase"]),
                weight=int(t["weight"]),
                reason=t["reason"],
            )
            for t in data.get("history", ())
        ),
    )


def analysis_from_dict(data: dict[str, Any]) -> CanaryAnalysis:
    """Rebuild an analysis written by :func:`state_to_dict`."""
    metrics = data.get("metrics")
    return CanaryAnalysis(
        verdict=Verdict(data["verdict"]),
        checks=tuple(Check(**check) for check in data.get("checks", ())),
        samples=int(data.get("samples", 0)),
        reason=data.get("reason", ""),
        metrics=None if metrics is None else window_from_dict(metrics),
    )


def window_from_dict(data: dict[str, Any]) -> WindowMetrics:
    """Rebuild a window written by :func:`state_to_dict`."""
    histograms = {name: _histogram(data.get(name)) for name in ("request_tokens_per_step", "request_itl")}
    queries = tuple((str(figure), str(query)) for figure, query in data.get("queries", ()))
    return WindowMetrics(**{**data, **histograms, "queries": queries})


def _histogram(data: dict[str, Any] | None) -> Histogram | None:
    if data is None:
        return None
    return Histogram(
        bounds=tuple(float(b) for b in data.get("bounds", ())),
        cumulative=tuple(float(c) for c in data.get("cumulative", ())),
        total=float(data.get("total", 0.0)),
        count=float(data.get("count", 0.0)),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value
