"""The SpeculativeDeployment ``status``: the rollout state (source of truth after a restart) plus what
people read — phase, versions, weight, conditions, the last analysis with its queries, history.

``status.rollout`` holds the brain's state (:mod:`specops.rollout.codec`) without its history and
last analysis, which live once, readably, in ``status.history`` and ``status.lastAnalysis``.
``status.rollout.revision`` counts saves, so a reconcile that sees an older status than the one it
wrote itself (the watch stream lags behind a patch) keeps its own newer copy.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from specops.rollout import codec
from specops.rollout.brain import APPLYING_PHASES
from specops.rollout.model import CanaryAnalysis, Phase, RolloutState, Transition, Verdict

CONDITION_TYPES = ("Ready", "Progressing", "Promoted", "Degraded")


class Problem(NamedTuple):
    """Why a deployment is not Ready (or is Degraded): a condition's reason and message."""

    reason: str
    message: str


def iso(moment: float) -> str:
    """Seconds since the epoch as RFC 3339 UTC with microseconds (lossless back to float)."""
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(text: str) -> float:
    """Inverse of :func:`iso`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def revision(status: dict[str, Any] | None) -> int:
    """How many times the operator has saved this status (0: never)."""
    return int(((status or {}).get("rollout") or {}).get("revision", 0))


def load_state(status: dict[str, Any] | None) -> RolloutState | None:
    """The rollout state kept in ``status``, or None when the operator never saved one."""
    rollout = (status or {}).get("rollout")
    if not rollout or "deployment" not in rollout:
        return None
    data = {key: value for key, value in rollout.items() if key not in ("history", "last_analysis", "revision")}
    data["history"] = [
        {
            "at": seconds(item["at"]),
            "from_phase": item["from"],
            "to_phase": item["to"],
            "weight": item.get("weight", 0),
            "reason": item.get("reason", ""),
        }
        for item in (status or {}).get("history", [])
    ]
    return codec.state_from_dict(data)


def render(
    state: RolloutState,
    *,
    revision: int,
    conditions: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    analysed_at: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status to merge-patch for ``state`` (None values delete keys)."""
    rollout = codec.state_to_dict(dataclasses.replace(state, history=(), last_analysis=None))
    rollout.pop("history")
    rollout.pop("last_analysis")
    rollout["revision"] = revision
    status: dict[str, Any] = {
        "phase": state.phase.value,
        "stableVersion": state.stable_version,
        "canaryVersion": state.canary_version,
        "previousVersion": state.previous_version,
        "canaryWeight": state.weight,
        "history": [_transition(item) for item in state.history],
        "conditions": keep_transition_times(conditions, (previous or {}).get("conditions", [])),
        "rollout": rollout,
    }
    if state.last_analysis is not None and analysed_at is not None:
        status["lastAnalysis"] = analysis(state.last_analysis, at=analysed_at)
        window = state.last_analysis.metrics
        rate = window.acceptance_rate if window else None
        status["acceptanceRate"] = None if rate is None else round(rate, 4)
        tokens = window.tokens_per_step if window else None
        status["tokensPerStep"] = None if tokens is None else round(tokens, 4)
        status["lastAnalysis"]["inconclusiveSeconds"] = round(state.inconclusive_s, 3)
    status.update(extra or {})
    return status


def analysis(result: CanaryAnalysis, *, at: float) -> dict[str, Any]:
    """``status.lastAnalysis``: verdict, measured values, sample counts and the exact queries."""
    metrics = result.metrics
    rendered: dict[str, Any] = {
        "at": iso(at),
        "verdict": result.verdict.value,
        "reason": result.reason,
        "samples": result.samples,
        "checks": [
            {
                "name": check.name,
                "measured": check.measured,
                "threshold": check.threshold,
                "passed": check.passed,
                "detail": check.detail,
            }
            for check in result.checks
        ],
    }
    if metrics is not None:
        rendered.update(
            {
                "acceptanceRate": metrics.acceptance_rate,
                "errorRate": metrics.error_rate,
                "itlP95Seconds": metrics.itl_p95_s,
                "numRequests": metrics.num_requests,
                "numErrors": metrics.num_errors,
                "numDrafts": metrics.num_drafts,
                "numDraftTokens": metrics.num_draft_tokens,
                "numAcceptedTokens": metrics.num_accepted_tokens,
                "numTargetSteps": metrics.num_target_steps,
                "numSpeculativeSteps": metrics.num_speculative_steps,
                "tokensPerStep": metrics.tokens_per_step,
                "queries": [{"name": name, "query": query} for name, query in metrics.queries],
            }
        )
    return rendered


def ready_condition(problems: list[Problem], state: RolloutState) -> dict[str, Any]:
    """``Ready``: the first problem, else whether a version serves."""
    if problems:
        return condition("Ready", False, problems[0].reason, problems[0].message)
    if state.stable_version is None:
        return condition("Ready", False, "NothingServing", "no version deployed yet")
    return condition("Ready", True, "Serving", f"version {state.stable_version} is serving")


def condition(kind: str, value: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    """One condition; ``value`` None is ``Unknown``."""
    assert kind in CONDITION_TYPES, kind
    text = "Unknown" if value is None else ("True" if value else "False")
    return {"type": kind, "status": text, "reason": reason, "message": message}


def phase_conditions(state: RolloutState) -> list[dict[str, Any]]:
    """Progressing / Promoted / Degraded as the phase implies them (Ready is the caller's)."""
    phase = state.phase
    last = state.history[-1].reason if state.history else ""
    if phase is Phase.ROLLED_BACK:  # say why it rolled back, not that the rollback was applied
        last = next((item.reason for item in reversed(state.history) if item.to_phase is Phase.ROLLING_BACK), last)
    progressing = phase in (Phase.PROGRESSING, Phase.PAUSED, *APPLYING_PHASES)
    if phase is Phase.PROMOTING:
        message = f"promoting {state.stable_version}"
    else:
        message = f"canary {state.canary_version} at {state.weight}%" if state.canary_version else ""
    waiting = state.last_analysis is not None and state.last_analysis.verdict is Verdict.INCONCLUSIVE
    if phase is Phase.PROGRESSING and waiting and state.last_analysis is not None:
        message += f"; no verdict for {state.inconclusive_s:.0f} s: {state.last_analysis.reason}"
    return [
        condition("Progressing", progressing, "Canary" + phase.value if progressing else "Idle", message),
        condition(
            "Promoted",
            phase is Phase.PROMOTED,
            "Promoted" if phase is Phase.PROMOTED else "NotPromoted",
            f"version {state.stable_version} serves all traffic" if phase is Phase.PROMOTED else "",
        ),
        condition(
            "Degraded",
            phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED),
            phase.value if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED) else "Healthy",
            last if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED) else "",
        ),
    ]


def _transition(item: Transition) -> dict[str, Any]:
    return {
        "at": iso(item.at),
        "from": item.from_phase.value,
        "to": item.to_phase.value,
        "weight": item.weight,
        "reason": item.reason,
    }


def keep_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = {item.get("type"): item for item in old}
    now = iso(datetime.now(tz=UTC).timestamp())
    result = []
    for item in new:
        prior = before.get(item["type"])
        same = prior is not None and prior.get("status") == item["status"] and prior.get("lastTransitionTime")
        result.append({**item, "lastTransitionTime": prior["lastTransitionTime"] if same else now})
    return result


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` after a JSON merge patch."""
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def unchanged(current: dict[str, Any], patch: dict[str, Any]) -> bool:
    """Whether merging ``patch`` changes nothing in ``current`` but the revision counter."""

    def strip(status: dict[str, Any]) -> str:
        rollout = {k: v for k, v in (status.get("rollout") or {}).items() if k != "revision"}
        return json.dumps({**status, "rollout": rollout}, sort_keys=True, default=str)

    return strip(merged(current, patch)) == strip(current)


def newest(mine: dict[str, Any] | None, seen: dict[str, Any] | None) -> dict[str, Any] | None:
    """The process's own last write unless the object's status is at least as new (revision)."""
    if mine is None:
        return seen or None
    return seen if revision(seen) >= revision(mine) else mine


def window_started_at(status: dict[str, Any] | None) -> float | None:
    """When the current analysis window began (``status.rollout.tickedAt``)."""
    return ((status or {}).get("rollout") or {}).get("tickedAt")
