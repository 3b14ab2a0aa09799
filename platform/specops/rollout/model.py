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


class InconclusiveAction(StrEnum):
    """What a canary that stays INCONCLUSIVE past the policy's deadline gets."""

    ROLLBACK = "rollback"
    PAUSE = "pause"


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
    min_requests: finished canary requests (and server errors) in the window before anything is
        judged; the comparisons with the stable need this many on each side.
    min_target_steps: target steps of the canary in the window before its tokens per step is judged.
        Target steps count whether or not the engine drafted, so a canary whose engine stopped
        drafting is judged on them instead of waiting for draft tokens that never come.
    min_acceptance_rate: accepted / draft tokens below this fails the analysis.
    min_tokens_per_step: tokens per target step (1 + accepted / steps; 1.0 is no speculation at all)
        below this fails the analysis. Default 1.1: a pair that saves under a tenth of the target's
        passes serves at about its plain speed plus the draft's cost.
    max_error_rate: server errors / requests above this fails the analysis.
    max_itl_p95_s: inter-token latency p95 above this fails the analysis (None: not judged).
    compare_to_stable: also test the canary against the stable on the same window (per-request
        tokens per step and inter-token latency, one-sided Mann–Whitney U; see comparison.py).
    comparison_alpha: significance level of those tests (default 0.01: two tests per analysis, many
        analyses per rollout; a stricter level keeps false rollbacks rare).
    min_tokens_per_step_effect: the canary's mean tokens per step must be this share below the
        stable's (and significantly so) to fail (default 0.05).
    min_itl_effect: the canary's mean per-request inter-token latency must be this share above the
        stable's (and significantly so) to fail (default 0.2: latency on shared hardware is noisy).
    failure_limit: consecutive failed analyses that trigger a rollback (automatic policy).
    automatic: roll back / advance by itself; False (manual) only holds and reports.
    bake_s: after promotion, a page alert on the new production version within this many seconds
        rolls back to the previous version.
    max_inconclusive_s: the progress deadline: a canary INCONCLUSIVE for longer than this (seconds,
        default 1800: thirty one-minute windows without a verdict) gets ``on_inconclusive``.
    on_inconclusive: ``rollback`` (default: a canary that cannot be judged is not trusted with
        traffic) or ``pause`` (hold for an operator); the reason is audited either way.
    """

    steps: tuple[int, ...] = (10, 25, 50, 100)
    analysis_interval_s: float = 60.0
    min_draft_tokens: int = 500
    min_requests: int = 10
    min_target_steps: int = 200
    min_acceptance_rate: float = 0.3
    min_tokens_per_step: float = 1.1
    max_error_rate: float = 0.05
    max_itl_p95_s: float | None = None
    compare_to_stable: bool = True
    comparison_alpha: float = 0.01
    min_tokens_per_step_effect: float = 0.05
    min_itl_effect: float = 0.2
    failure_limit: int = 2
    automatic: bool = True
    bake_s: float = 3600.0
    max_inconclusive_s: float = 1800.0
    on_inconclusive: InconclusiveAction = InconclusiveAction.ROLLBACK

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
        if self.min_tokens_per_step < 1.0:
            raise ValueError(f"min_tokens_per_step must be at least 1 (no speculation), got {self.min_tokens_per_step}")
        if not 0.0 < self.comparison_alpha < 1.0:
            raise ValueError(f"comparison_alpha must lie in (0, 1), got {self.comparison_alpha}")
        for name in ("min_tokens_per_step_effect", "min_itl_effect"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_inconclusive_s <= 0:
            raise ValueError(f"max_inconclusive_s must be positive, got {self.max_inconclusive_s}")
        if self.min_requests < 0 or self.min_target_steps < 0 or self.min_draft_tokens < 0:
            raise ValueError("sample minimums must be >= 0")
        object.__setattr__(self, "on_inconclusive", InconclusiveAction(self.on_inconclusive))


@dataclass(frozen=True)
class Histogram:
    """Increase of one per-request histogram over a window, as Prometheus keeps it.

    ``bounds`` are the finite upper bounds (ascending), ``cumulative`` the observations at or under
    each; ``count - cumulative[-1]`` lies above the last bound (``+Inf``). ``total`` is the sum of the
    observed values, so ``mean`` is exact, not estimated from buckets.
    """

    bounds: tuple[float, ...] = ()
    cumulative: tuple[float, ...] = ()
    total: float = 0.0
    count: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def bins(self) -> list[float]:
        """Observations per bucket (not cumulative), the last one above the last bound."""
        counts, below = [], 0.0
        for value in self.cumulative:
            counts.append(max(value - below, 0.0))
            below = max(value, below)
        counts.append(max(self.count - below, 0.0))
        return counts


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
    num_target_steps: int = 0
    num_speculative_steps: int = 0
    itl_p95_s: float | None = None
    request_tokens_per_step: Histogram | None = None
    request_itl: Histogram | None = None
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
        """1 + accepted / drafts: tokens gained per draft; None without drafts."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else None

    @property
    def tokens_per_step(self) -> float | None:
        """1 + accepted / target steps: 1.0 when nothing was drafted; None without target steps."""
        return 1.0 + self.num_accepted_tokens / self.num_target_steps if self.num_target_steps else None

    @property
    def speculative_share(self) -> float | None:
        """Share of target steps that verified drafts; None without target steps."""
        return self.num_speculative_steps / self.num_target_steps if self.num_target_steps else None


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
    detail: str = ""  # how it was judged, when the name and figures do not say it all


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
    inconclusive_s: float = 0.0  # seconds of INCONCLUSIVE analyses in a row at this step (brain.py)
    analysed_at: float | None = None  # when the last analysis ran
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
