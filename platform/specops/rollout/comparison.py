"""Canary against stable on the same window: a one-sided Mann–Whitney U test over per-request figures.

Kayenta (Spinnaker's canary judge) compares a canary with its baseline by a Mann–Whitney U test rather
than by thresholds alone: a threshold says whether a figure is good enough, the comparison says whether
the new version is *worse than what it replaces*, on the same traffic at the same time.

**The data.** Both roles export per-request histograms (``specops_request_tokens_per_step``,
``specops_request_inter_token_latency_seconds``); their increases over the window give, per role, how
many requests fell in each bucket, plus the exact sum of the values. So each side is a sample of
``n`` per-request figures, known up to its bucket: bucket ``i`` is the ordinal value ``i``.

**The statistic.** With canary counts ``c_i`` and stable counts ``s_i`` per bucket::

    U = sum_i c_i * (S_below_i + s_i / 2)        # pairs (canary, stable) with canary above, ties half

is the Mann–Whitney U of the canary (the number of pairs in which the canary's request beats the
stable's). Under H0 (the two sides come from one distribution) ``E[U] = n_c n_s / 2`` and, with
``t_i = c_i + s_i`` requests tied in bucket ``i`` and ``N = n_c + n_s``::

    Var[U] = n_c n_s / 12 * ((N + 1) - sum_i (t_i^3 - t_i) / (N (N - 1)))

(the tie-corrected variance; buckets are ties by construction). For ``n`` in the tens the normal
approximation with a continuity correction of 1/2 is accurate; the one-sided p-value is
``Phi((U - E[U] + 1/2) / sd)`` for "the canary is lower" (tokens per step: lower is worse) and the
mirror image for "the canary is higher" (latency). This is scipy's ``mannwhitneyu(..., method=
"asymptotic")`` on the bucket indices (the tests check that), in a few lines without scipy at run time.

**The minimum effect.** Significance alone fails a canary over a difference nobody would care about
once the sample is large. A check fails only when the test is significant (``p < alpha``) *and* the
means (exact, from the histograms' sums) differ by at least the policy's minimum effect, as a share of
the stable's mean. Too few requests on either side (``min_requests``) means the check is not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from specops.rollout.model import Histogram


class Worse(StrEnum):
    """Which direction of a figure is worse for the canary."""

    LOWER = "lower"  # tokens per step
    HIGHER = "higher"  # latency


@dataclass(frozen=True)
class Comparison:
    """The canary's figure against the stable's on one window."""

    canary_mean: float
    stable_mean: float
    effect: float  # how much worse the canary's mean is, as a share of the stable's (negative: better)
    p_value: float  # one-sided: the canary is worse
    num_canary: int
    num_stable: int

    def worse(self, *, alpha: float, min_effect: float) -> bool:
        """Significantly worse, and by at least ``min_effect``."""
        return self.p_value < alpha and self.effect >= min_effect


def mann_whitney_u(canary: list[float], stable: list[float], *, worse: Worse) -> tuple[float, float]:
    """(U of the canary, one-sided p-value that the canary is ``worse``) from per-bucket counts."""
    if len(canary) != len(stable):
        raise ValueError(f"bucket counts differ in length: {len(canary)} vs {len(stable)}")
    n_c, n_s = sum(canary), sum(stable)
    total = n_c + n_s
    if n_c <= 0 or n_s <= 0:
        raise ValueError("both sides need at least one observation")
    u, below, ties = 0.0, 0.0, 0.0
    for c, s in zip(canary, stable, strict=True):
        u += c * (below + s / 2.0)
        below += s
        t = c + s
        ties += t**3 - t
    mean = n_c * n_s / 2.0
    variance = n_c * n_s / 12.0 * ((total + 1) - ties / (total * (total - 1))) if total > 1 else 0.0
    if variance <= 0:  # every request of both sides in one bucket: no evidence of any difference
        return u, 1.0
    deviation = (u - mean) if worse is Worse.LOWER else (mean - u)
    z = (deviation + 0.5) / math.sqrt(variance)
    return u, 0.5 * math.erfc(-z / math.sqrt(2.0))


def compare(canary: Histogram | None, stable: Histogram | None, *, worse: Worse, min_samples: int) -> Comparison | None:
    """Compare two windows of one per-request histogram; None when either side is too thin to judge."""
    if canary is None or stable is None or canary.bounds != stable.bounds:
        return None
    if canary.count < max(min_samples, 1) or stable.count < max(min_samples, 1):
        return None
    canary_mean, stable_mean = canary.mean, stable.mean
    if canary_mean is None or stable_mean is None or stable_mean <= 0:
        return None
    _, p_value = mann_whitney_u(canary.bins(), stable.bins(), worse=worse)
    difference = canary_mean - stable_mean
    effect = (-difference if worse is Worse.LOWER else difference) / stable_mean
    return Comparison(
        canary_mean=canary_mean,
        stable_mean=stable_mean,
        effect=effect,
        p_value=p_value,
        num_canary=round(canary.count),
        num_stable=round(stable.count),
    )
