"""Plain data the rollout brain reads and writes. No I/O, no imports of other SpecOps packages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Phase(StrEnum):
    """Where a deployment's rollout stands."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Role(StrEnum):
    """Which side of a canary split a server or a metric belongs to."""

    STABLE = "stable"
    CANARY = "canary"


class ManualAction(StrEnum):
    """What an operator can ask for by hand (CLI or ``specops.io/action`` annotation)."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"


class DecisionKind(StrEnum):
    """What the adapters must do after a decision."""

    START_CANARY = "start_canary"
    SET_WEIGHT = "set_weight"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"
    FAIL = "fail"


class Verdict(StrEnum):
    """Outcome of one canary analysis."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RolloutPolicy:
    """How a canary is rolled out and judged.

    steps: canary traffic percentages in order; the last must be 100 (promotion).
    analysis_interval_s: seconds between analyses; also the metric window length.
    min_draft_tokens: draft tokens the canary must have verified in the window before its acceptance
        rate is judged (too little data means wait, never promote, never abort).
    min_requests: finished canary requests in the window before error rate is judged.
    min_acceptance_rate: accepted / draft tokens below this fails the analysis.
    max_error_rate: server errors / requests above this fails the analysis.
    max_itl_p95_s: inter-token latency p95 above this fails the analysis (None: not judged).
    failure_limit: consecutive failed analyses that trigger a rollback (automatic policy).
    automatic: roll back / advance by itself; False (manual) only holds and reports.
    bake_s: after promotion, a page alert on the new production version within this many seconds
        rolls back to the previous version.
    """

    steps: tuple[int, ...] = (10, 25, 50, 100)
    analysis_interval_s: float = 60.0
    min_draft_tokens: int = 500
    min_requests: int = 10
    min_acceptance_rate: float = 0.3
    max_error_rate: float = 0.05
    max_itl_p95_s: float | None = None
    failure_limit: int = 2
    automatic: bool = True
    bake_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.steps or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps must be strictly increasing, got {self.steps}")
        if self.steps[0] <= 0 or self.steps[-1] != 100:
            raise ValueError(f"steps must lie in (0, 100] and end at 100, got {self.steps}")
        if not 0.0 <= self.min_acceptance_rate <= 1.0:
            raise ValueError(f"min_acceptance_rate must lie in [0, 1], got {self.min_acceptance_rate}")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate must lie in [0, 1], got {self.max_error_rate}")
        if self.failure_limit < 1:
            raise ValueError(f"failure_limit must be at least 1, got {self.failure_limit}")
        if self.analysis_interval_s <= 0:
            raise ValueError(f"analysis_interval_s must be positive, got {self.analysis_interval_s}")


@dataclass(frozen=True)
class WindowMetrics:
    """Counter increases of one role over one analysis window.

    ``queries`` names the exact queries (PromQL or scrape description) that produced each figure.
    """

    num_requests: int = 0
    num_errors: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    itl_p95_s: float | None = None
    queries: tuple[tuple[str, str], ...] = ()

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / draft tokens; None without drafts."""
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else None

    @property
    def error_rate(self) -> float | None:
        """Server errors / requests; None without requests."""
        total = self.num_requests + self.num_errors
        return self.num_errors / total if total else None

    @property
    def mean_accepted_length(self) -> float | None:
        """1 + accepted / drafts: tokens gained per target forward pass; None without drafts."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else None


@dataclass(frozen=True)
class Alert:
    """A firing alert mapped to a deployment (from Alertmanager or a local rule evaluation)."""

    name: str
    severity: str  # "page" or "ticket"
    role: Role | None = None
    version: str | None = None
    summary: str = ""


@dataclass(frozen=True)
class Observation:
    """Everything the brain may look at in one decision; ``now`` is seconds since the epoch."""

    now: float
    canary: WindowMetrics | None = None
    stable: WindowMetrics | None = None
    alerts: tuple[Alert, ...] = ()
    action: ManualAction | None = None


@dataclass(frozen=True)
class Check:
    """One threshold test of an analysis: the measured value, the bound and whether it held."""

    name: str
    measured: float | None
    threshold: float
    passed: bool | None  # None: not enough data to judge


@dataclass(frozen=True)
class CanaryAnalysis:
    """The verdict of one analysis window with the checks that produced it."""

    verdict: Verdict
    checks: tuple[Check, ...]
    samples: int
    reason: str
    metrics: WindowMetrics | None = None


@dataclass(frozen=True)
class Transition:
    """One recorded change of phase or weight."""

    at: float
    from_phase: Phase
    to_phase: Phase
    weight: int
    reason: str


@dataclass(frozen=True)
class RolloutState:
    """A deployment's rollout state; the operator keeps it in status, the local runtime in a file."""

    deployment: str
    pair: str
    stable_version: str | None = None
    canary_version: str | None = None
    previous_version: str | None = None
    phase: Phase = Phase.PENDING
    step_index: int = -1
    weight: int = 0
    consecutive_failures: int = 0
    promoted_at: float | None = None
    last_analysis: CanaryAnalysis | None = None
    history: tuple[Transition, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    """What to apply: the new canary weight and, for promote/rollback, which version wins."""

    kind: DecisionKind
    reason: str
    weight: int = 0
    version: str | None = None
    analysis: CanaryAnalysis | None = None
