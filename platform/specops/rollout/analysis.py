"""Canary analysis: turn one window of canary (and stable) metrics into a verdict with the checks behind it.

What speculation delivers is judged on figures that exist whenever there is traffic: *tokens per
target step* (1 + accepted / target steps; 1.0 when the engine drafted nothing) needs requests and
target steps, not draft tokens, so a canary whose engine stopped drafting fails it instead of waiting
for draft tokens that never come. Acceptance is judged as well where there are enough draft tokens.
Beside these thresholds the canary is compared with the stable on the same window (comparison.py).

Too little data is never a failure: below the sample minimums a check is not judged, and with no check
of what speculation delivers judged the verdict is INCONCLUSIVE and the brain waits (up to the
policy's progress deadline, see brain.py).
"""

from __future__ import annotations

from specops.rollout import comparison
from specops.rollout.model import CanaryAnalysis, Check, RolloutPolicy, Verdict, WindowMetrics

SPECULATION_CHECKS = frozenset({"acceptance_rate", "tokens_per_step"})
"""Checks of what speculation delivers: a PASS needs at least one of them judged."""

_RELATION = {"acceptance_rate": ">=", "tokens_per_step": ">=", "error_rate": "<=", "itl_p95_s": "<="}


def analyse(window: WindowMetrics | None, policy: RolloutPolicy, stable: WindowMetrics | None = None) -> CanaryAnalysis:
    """Judge ``window`` (canary counter increases over one interval) against ``policy`` and ``stable``."""
    if window is None:
        return CanaryAnalysis(Verdict.INCONCLUSIVE, (), 0, "waiting for data: no canary metrics yet", None)
    served = window.num_requests + window.num_errors
    checks = [_error_rate(window, policy, enough=served >= policy.min_requests)]
    if served >= policy.min_requests:
        checks.append(_tokens_per_step(window, policy))
        checks.append(_acceptance(window, policy))
        if policy.max_itl_p95_s is not None:
            checks.append(
                Check(
                    name="itl_p95_s",
                    measured=window.itl_p95_s,
                    threshold=policy.max_itl_p95_s,
                    passed=None if window.itl_p95_s is None else window.itl_p95_s <= policy.max_itl_p95_s,
                )
            )
        if policy.compare_to_stable and stable is not None:
            checks.extend(_against_stable(window, stable, policy))
    failed = [check for check in checks if check.passed is False]
    if failed:
        reason = "; ".join(_describe(check) for check in failed)
        return CanaryAnalysis(Verdict.FAIL, tuple(checks), window.num_target_steps, reason, window)
    if not any(check.passed for check in checks if check.name in SPECULATION_CHECKS):
        return CanaryAnalysis(
            Verdict.INCONCLUSIVE, tuple(checks), window.num_target_steps, _waiting(window, policy), window
        )
    reason = "; ".join(_describe(check) for check in checks if check.passed)
    return CanaryAnalysis(Verdict.PASS, tuple(checks), window.num_target_steps, reason, window)


def _error_rate(window: WindowMetrics, policy: RolloutPolicy, *, enough: bool) -> Check:
    passed = (window.error_rate or 0.0) <= policy.max_error_rate if enough else None
    return Check("error_rate", window.error_rate, policy.max_error_rate, passed)


def _tokens_per_step(window: WindowMetrics, policy: RolloutPolicy) -> Check:
    measured = window.tokens_per_step
    share = window.speculative_share
    detail = "" if share is None else f"{share:.0%} of {window.num_target_steps} target steps speculated"
    enough = measured is not None and window.num_target_steps >= policy.min_target_steps
    passed = measured >= policy.min_tokens_per_step if enough and measured is not None else None
    return Check("tokens_per_step", measured, policy.min_tokens_per_step, passed, detail)


def _acceptance(window: WindowMetrics, policy: RolloutPolicy) -> Check:
    measured = window.acceptance_rate
    judged = measured is not None and window.num_draft_tokens >= policy.min_draft_tokens
    passed = measured >= policy.min_acceptance_rate if judged and measured is not None else None
    return Check("acceptance_rate", measured, policy.min_acceptance_rate, passed)


def _against_stable(window: WindowMetrics, stable: WindowMetrics, policy: RolloutPolicy) -> list[Check]:
    """tokens per step and inter-token latency per request, canary against stable (see comparison.py)."""
    figures = (
        ("tokens_per_step_vs_stable", window.request_tokens_per_step, stable.request_tokens_per_step,
         comparison.Worse.LOWER, policy.min_tokens_per_step_effect),
        ("itl_vs_stable", window.request_itl, stable.request_itl, comparison.Worse.HIGHER, policy.min_itl_effect),
    )  # fmt: skip
    checks = []
    for name, canary, base, worse, min_effect in figures:
        result = comparison.compare(canary, base, worse=worse, min_samples=policy.min_requests)
        if result is None:
            checks.append(Check(name, None, min_effect, None, "too few requests on a side to compare"))
            continue
        failed = result.worse(alpha=policy.comparison_alpha, min_effect=min_effect)
        detail = (
            f"canary {result.canary_mean:.3g} vs stable {result.stable_mean:.3g} per request "
            f"({result.effect:+.1%} worse, p={result.p_value:.2g}, n={result.num_canary}/{result.num_stable}; "
            f"fails when >= {min_effect:.0%} worse at p < {policy.comparison_alpha:g})"
        )
        checks.append(Check(name, result.effect, min_effect, not failed, detail))
    return checks


def _waiting(window: WindowMetrics, policy: RolloutPolicy) -> str:
    served = window.num_requests + window.num_errors
    if served < policy.min_requests:
        return f"waiting for data: {served}/{policy.min_requests} requests in the window"
    return (
        f"waiting for data: {window.num_target_steps}/{policy.min_target_steps} target steps, "
        f"{window.num_draft_tokens}/{policy.min_draft_tokens} draft tokens in the window"
    )


def _describe(check: Check) -> str:
    if check.name.endswith("_vs_stable"):
        return f"{check.name}: {check.detail}"
    measured = "n/a" if check.measured is None else f"{check.measured:.3f}"
    text = f"{check.name} {measured} (must be {_RELATION[check.name]} {check.threshold:g})"
    return f"{text}, {check.detail}" if check.detail else text
