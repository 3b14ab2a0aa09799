"""The rollout brain (pure), its ports, and the controller that runs it against adapters."""

from specops.rollout import analysis, brain, codec, controller, model, ports
from specops.rollout.model import (
    Alert,
    CanaryAnalysis,
    Decision,
    DecisionKind,
    ManualAction,
    Observation,
    Phase,
    Role,
    RolloutPolicy,
    RolloutState,
    Verdict,
    WindowMetrics,
)

__all__ = [
    "Alert",
    "CanaryAnalysis",
    "Decision",
    "DecisionKind",
    "ManualAction",
    "Observation",
    "Phase",
    "Role",
    "RolloutPolicy",
    "RolloutState",
    "Verdict",
    "WindowMetrics",
    "analysis",
    "brain",
    "codec",
    "controller",
    "model",
    "ports",
]
