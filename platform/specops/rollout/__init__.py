"""The rollout brain (pure), its intake, its ports, and the controller that runs it against adapters.

Modules: ``model`` (plain data), ``analysis`` and ``comparison`` (the canary's verdict), ``brain`` (the
state machine), ``intake`` (which controller call a body's round makes), ``controller`` (observe →
decide → apply → record over the ports), ``ports`` (the adapters' protocols), ``codec`` (state ⇄ JSON).
This package imports nothing of SpecOps outside itself.
"""

from specops.rollout import analysis, brain, codec, comparison, controller, intake, model, ports
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
    "comparison",
    "controller",
    "intake",
    "model",
    "ports",
]
