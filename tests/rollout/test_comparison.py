"""The Mann–Whitney U test over histogram buckets: scipy's figures, noisy data, the minimum effect."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from specops.rollout import comparison
from specops.rollout.model import Histogram

counts = st.lists(st.integers(min_value=0, max_value=40), min_size=2, max_size=12)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), canary=counts)
def test_the_binned_test_is_scipys_mann_whitney_on_bucket_indices(data: st.DataObject, canary: list[int]) -> None:
    stable = data.draw(st.lists(st.integers(0, 40), min_size=len(canary), max_size=len(canary)))
    if sum(canary) == 0 or sum(stable) == 0 or sum(canary) + sum(stable) < 3:
        return
    x = [i for i, n in enumerate(canary) for _ in range(n)]
    y = [i for i, n in enumerate(stable) for _ in range(n)]
    if len(set(x + y)) == 1:
        assert comparison.mann_whitney_u(canary, stable, worse=comparison.Worse.LOWER)[1] == 1.0
        return
    for worse, alternative in ((comparison.Worse.LOWER, "less"), (comparison.Worse.HIGHER, "greater")):
        u, p = comparison.mann_whitney_u([float(c) for c in canary], [float(s) for s in stable], worse=worse)
        expected = stats.mannwhitneyu(x, y, alternative=alternative, method="asymptotic", use_continuity=True)
        assert u == pytest.approx(expected.statistic)
        assert p == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


def _histogram(rng: random.Random, n: int, mean: float, spread: float, bounds: tuple[float, ...]) -> Histogram:
    values = [max(1.0, rng.gauss(mean, spread)) for _ in range(n)]
    cumulative = tuple(float(sum(v <= b for v in values)) for b in bounds)
    return Histogram(bounds=bounds, cumulative=cumulative, total=sum(values), count=float(n))


BOUNDS = (1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 200), mean=st.floats(1.1, 2.5), spread=st.floats(0.05, 0.6))
def test_one_distribution_on_both_sides_is_never_failed(seed: int, n: int, mean: float, spread: float) -> None:
    # Noisy data from one distribution: the minimum effect keeps chance differences from failing a canary.
    rng = random.Random(seed)
    canary = _histogram(rng, n, mean, spread, BOUNDS)
    stable = _histogram(rng, 3 * n, mean, spread, BOUNDS)
    result = comparison.compare(canary, stable, worse=comparison.Worse.LOWER, min_samples=10)
    assert result is not None
    assert not result.worse(alpha=0.01, min_effect=0.1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 200), spread=st.floats(0.02, 0.3))
def test_a_canary_that_stopped_drafting_is_failed_against_a_drafting_stable(seed: int, n: int, spread: float) -> None:
    rng = random.Random(seed)
    stable = _histogram(rng, 3 * n, 1.5, spread, BOUNDS)
    stopped = Histogram(bounds=BOUNDS, cumulative=tuple(float(n) for _ in BOUNDS), total=float(n), count=float(n))
    result = comparison.compare(stopped, stable, worse=comparison.Worse.LOWER, min_samples=10)
    assert result is not None and result.effect > 0.2
    assert result.worse(alpha=0.01, min_effect=0.05)


def test_the_false_failure_rate_is_about_alpha_without_a_minimum_effect() -> None:
    rng = random.Random(7)
    trials = 400
    failures = 0
    for _ in range(trials):
        canary = _histogram(rng, 40, 1.5, 0.3, BOUNDS)
        stable = _histogram(rng, 120, 1.5, 0.3, BOUNDS)
        result = comparison.compare(canary, stable, worse=comparison.Worse.LOWER, min_samples=10)
        assert result is not None
        failures += result.worse(alpha=0.05, min_effect=0.0)
    assert failures / trials < 0.1  # nominal 0.05; binning and the continuity correction make it conservative


def test_thin_or_mismatched_histograms_are_not_compared() -> None:
    one = Histogram(bounds=(1.0, 2.0), cumulative=(3.0, 5.0), total=7.0, count=5.0)
    other = Histogram(bounds=(1.0, 3.0), cumulative=(3.0, 5.0), total=7.0, count=5.0)
    assert comparison.compare(one, other, worse=comparison.Worse.LOWER, min_samples=1) is None
    assert comparison.compare(one, one, worse=comparison.Worse.LOWER, min_samples=10) is None
    assert comparison.compare(None, one, worse=comparison.Worse.LOWER, min_samples=1) is None
