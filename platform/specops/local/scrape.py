"""The local MetricsSource: scrapes each model server's /metrics and diffs counters over a window.

This is what Prometheus does for the Kubernetes body; the figures mean the same as the PromQL there:
``increase(counter[window])`` becomes the latest snapshot minus the last one taken before the window
began (or zero, when the server started inside the window: its counters began at zero).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from specops.rollout.model import Histogram, Role, WindowMetrics

COUNTERS = {
    "num_requests": "specops_requests_total",
    "num_drafts": "specops_spec_decode_num_drafts_total",
    "num_draft_tokens": "specops_spec_decode_num_draft_tokens_total",
    "num_accepted_tokens": "specops_spec_decode_num_accepted_tokens_total",
    "num_target_steps": "specops_spec_decode_num_target_steps_total",
}
SPECULATIVE_STEPS = "specops_spec_decode_num_target_steps_total:speculative"
"""The target-step counter's ``mode="speculative"`` series, kept apart under this key."""
ERRORS = "specops_request_errors_total"
SERVER_ERROR_REASONS = frozenset({"internal"})
ITL_BUCKETS = "specops_inter_token_latency_seconds_bucket"
REQUEST_HISTOGRAMS = {
    "request_tokens_per_step": "specops_request_tokens_per_step",
    "request_itl": "specops_request_inter_token_latency_seconds",
}
"""Per-request histograms the analysis compares between roles (window field → metric name)."""
HISTORY = 600
"""Snapshots kept per server (one per scrape)."""


@dataclass(frozen=True)
class ScrapeTarget:
    """A server to scrape, with the labels its series carry."""

    url: str
    role: Role
    version: str


@dataclass(frozen=True)
class Snapshot:
    """Counter totals of one server at one time."""

    at: float
    totals: dict[str, float]
    itl_buckets: dict[float, float]
    histograms: dict[str, dict[float, float]]  # metric → upper bound → cumulative count (+Inf too)


_HISTOGRAM_TOTALS = {f"{name}{suffix}" for name in REQUEST_HISTOGRAMS.values() for suffix in ("_sum", "_count")}


def parse(
    text: str, *, role: str, version: str
) -> tuple[dict[str, float], dict[float, float], dict[str, dict[float, float]]]:
    """Sum the counters, ITL buckets and per-request histogram buckets of ``text`` for ``role``/``version``."""
    totals = dict.fromkeys((*COUNTERS.values(), ERRORS, SPECULATIVE_STEPS, *_HISTOGRAM_TOTALS), 0.0)
    buckets: dict[float, float] = {}
    histograms: dict[str, dict[float, float]] = {name: {} for name in REQUEST_HISTOGRAMS.values()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("role") != role or labels.get("pair_version") != version:
                continue
            if sample.name == ERRORS:
                if labels.get("reason") in SERVER_ERROR_REASONS:
                    totals[ERRORS] += sample.value
            elif sample.name in totals:
                totals[sample.name] += sample.value
                if sample.name == COUNTERS["num_target_steps"] and labels.get("mode") == "speculative":
                    totals[SPECULATIVE_STEPS] += sample.value
            elif sample.name == ITL_BUCKETS:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_bucket") and sample.name.removesuffix("_bucket") in histograms:
                into = histograms[sample.name.removesuffix("_bucket")]
                bound = float(labels["le"])
                into[bound] = into.get(bound, 0.0) + sample.value
    return totals, buckets, histograms


def histogram(buckets: dict[float, float], *, total: float, count: float) -> Histogram | None:
    """Cumulative buckets (``+Inf`` included) and the sum and count as a :class:`Histogram`; None if empty."""
    bounds = tuple(sorted(bound for bound in buckets if math.isfinite(bound)))
    if count <= 0 or not bounds:
        return None
    return Histogram(bounds=bounds, cumulative=tuple(buckets[b] for b in bounds), total=total, count=count)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative buckets (upper bound → count); None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


class ScrapingMetricsSource:
    """Scrapes the current targets every ``interval_s`` in a background thread."""

    def __init__(self, targets: Callable[[], Iterable[ScrapeTarget]], *, interval_s: float = 1.0) -> None:
        self._targets = targets
        self._interval_s = interval_s
        self._history: dict[tuple[str, str, str], deque[Snapshot]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="specops-scrape", daemon=True)

    def start(self) -> ScrapingMetricsSource:
        """Begin scraping."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop scraping."""
        self._stop.set()
        self._thread.join(timeout=5)

    def scrape_once(self) -> None:
        """Take one snapshot of every target now."""
        with httpx.Client(timeout=2.0) as client:
            for target in list(self._targets()):
                try:
                    text = client.get(f"{target.url}/metrics").text
                except httpx.HTTPError:
                    continue
                totals, buckets, histograms = parse(text, role=target.role.value, version=target.version)
                key = (target.url, target.role.value, target.version)
                snapshot = Snapshot(time.time(), totals, buckets, histograms)
                with self._lock:
                    self._history.setdefault(key, deque(maxlen=HISTORY)).append(snapshot)

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        """Counter increases of ``role``/``version`` over the last ``seconds``, summed over servers."""
        self.scrape_once()
        since = time.time() - seconds
        sums = dict.fromkeys((*COUNTERS.values(), ERRORS, SPECULATIVE_STEPS, *_HISTOGRAM_TOTALS), 0.0)
        buckets: dict[float, float] = {}
        histograms: dict[str, dict[float, float]] = {name: {} for name in REQUEST_HISTOGRAMS.values()}
        with self._lock:
            series = [h for (_, r, v), h in self._history.items() if r == role.value and v == version and h]
            for history in series:
                latest = history[-1]
                base = next((s for s in reversed(history) if s.at <= since), None)
                for name in sums:
                    sums[name] += latest.totals[name] - (base.totals[name] if base else 0.0)
                _add_increase(buckets, latest.itl_buckets, base.itl_buckets if base else {})
                for name, into in histograms.items():
                    _add_increase(into, latest.histograms[name], base.histograms[name] if base else {})
        source = f"scrape of /metrics, {seconds:g}s window, role={role.value}, pair_version={version}"
        per_request = {
            field: histogram(histograms[name], total=sums[f"{name}_sum"], count=sums[f"{name}_count"])
            for field, name in REQUEST_HISTOGRAMS.items()
        }
        return WindowMetrics(
            num_requests=int(sums[COUNTERS["num_requests"]]),
            num_errors=int(sums[ERRORS]),
            num_drafts=int(sums[COUNTERS["num_drafts"]]),
            num_draft_tokens=int(sums[COUNTERS["num_draft_tokens"]]),
            num_accepted_tokens=int(sums[COUNTERS["num_accepted_tokens"]]),
            num_target_steps=int(sums[COUNTERS["num_target_steps"]]),
            num_speculative_steps=int(sums[SPECULATIVE_STEPS]),
            itl_p95_s=quantile(0.95, buckets),
            queries=tuple((field, f"{name} ({source})") for field, name in COUNTERS.items()),
            **per_request,
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.scrape_once()


def _add_increase(into: dict[float, float], latest: dict[float, float], base: dict[float, float]) -> None:
    for bound, count in latest.items():
        into[bound] = into.get(bound, 0.0) + count - base.get(bound, 0.0)
