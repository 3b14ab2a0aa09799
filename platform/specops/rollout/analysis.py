"""Canary analysis: turn one window of canary metrics into a verdict with the checks behind it.

Too little data is never a failure: below the sample minimums the verdict is INCONCLUSIVE and the
brain waits. A check that cannot be judged (no requests yet, no latency figure) does not count.
"""

from __future__ import annotations

from specops.rollout.model import CanaryAnalysis, Check, RolloutPolicy, Verdict, WindowMetrics


def analyse(window: WindowMetrics | None, policy: RolloutPolicy) -> CanaryAnalysis:
    """Judge ``window`` (canary counter increases over one interval) against ``policy``."""
    if window is None or window.num_draft_tokens < policy.min_draft_tokens:
        samples = window.num_draft_tokens if window else 0
        return CanaryAnalysis(
            verdict=Verdict.INCONCLUSIVE,
            checks=(),
            samples=samples,
            reason=f"waiting for data: {samples}/{policy.min_draft_tokens} draft tokens in the window",
            metrics=window,
        )
    checks = [
        Check(
            name="acceptance_rate",
            measured=window.acceptance_rate,
            threshold=policy.min_acceptance_rate,
            passed=window.acceptance_rate is not None and window.acceptance_rate >= policy.min_acceptance_rate,
        )
    ]
    enough_requests = window.num_requests + window.num_errors >= policy.min_requests
    checks.append(
        Check(
            name="error_rate",
            measured=window.error_rate,
            threshold=policy.max_error_rate,
            passed=(window.error_rate or 0.0) <= policy.max_error_rate if enough_requests else None,
        )
    )
    if policy.max_itl_p95_s is not None:
        checks.append(
            Check(
                name="itl_p95_s",
                measured=window.itl_p95_s,
                threshold=policy.max_itl_p95_s,
                passed=None if window.itl_p95_s is None else window.itl_p95_s <= policy.max_itl_p95_s,
            )
        )
    failed = [check for check in checks if check.passed is False]
    if failed:
        reason = "; ".join(_describe(check) for check in failed)
        return CanaryAnalysis(Verdict.FAIL, tuple(checks), window.num_draft_tokens, reason, window)
    reason = "; ".join(_describe(check) for check in checks if check.passed)
    return CanaryAnalysis(Verdict.PASS, tuple(checks), window.num_draft_tokens, reason, window)


def _describe(check: Check) -> str:
    relation = {"acceptance_rate": ">=", "error_rate": "<=", "itl_p95_s": "<="}[check.name]
    measured = "n/a" if check.measured is None else f"{check.measured:.3f}"
    return f"{check.name} {measured} (must be {relation} {check.threshold:g})"
