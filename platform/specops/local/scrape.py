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

from specops.rollout.model import Role, WindowMetrics

COUNTERS = {
    "num_requests": "specops_requests_total",
    "num_drafts": "specops_spec_decode_num_drafts_total",
    "num_draft_tokens": "specops_spec_decode_num_draft_tokens_total",
    "num_accepted_tokens": "specops_spec_decode_num_accepted_tokens_total",
}
ERRORS = "specops_request_errors_total"
SERVER_ERROR_REASONS = frozenset({"internal"})
ITL_BUCKETS = "specops_inter_token_latency_seconds_bucket"
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


def parse(text: str, *, role: str, version: str) -> tuple[dict[str, float], dict[float, float]]:
    """Sum the counters of ``text`` that carry ``role`` and ``pair_version`` labels."""
    totals = dict.fromkeys((*COUNTERS.values(), ERRORS), 0.0)
    buckets: dict[float, float] = {}
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
            elif sample.name == ITL_BUCKETS:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return totals, buckets


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
                totals, buckets = parse(text, role=target.role.value, version=target.version)
                key = (target.url, target.role.value, target.version)
                with self._lock:
                    self._history.setdefault(key, deque(maxlen=HISTORY)).append(Snapshot(time.time(), totals, buckets))

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        """Counter increases of ``role``/``version`` over the last ``seconds``, summed over servers."""
        self.scrape_once()
        since = time.time() - seconds
        sums = dict.fromkeys((*COUNTERS.values(), ERRORS), 0.0)
        buckets: dict[float, float] = {}
        with self._lock:
            series = [h for (_, r, v), h in self._history.items() if r == role.value and v == version and h]
            for history in series:
                latest = history[-1]
                base = next((s for s in reversed(history) if s.at <= since), None)
                for name in sums:
                    sums[name] += latest.totals[name] - (base.totals[name] if base else 0.0)
                for bound, count in latest.itl_buckets.items():
                    before = base.itl_buckets.get(bound, 0.0) if base else 0.0
                    buckets[bound] = buckets.get(bound, 0.0) + count - before
        source = f"scrape of /metrics, {seconds:g}s window, role={role.value}, pair_version={version}"
        return WindowMetrics(
            num_requests=int(sums[COUNTERS["num_requests"]]),
            num_errors=int(sums[ERRORS]),
            num_drafts=int(sums[COUNTERS["num_drafts"]]),
            num_draft_tokens=int(sums[COUNTERS["num_draft_tokens"]]),
            num_accepted_tokens=int(sums[COUNTERS["num_accepted_tokens"]]),
            itl_p95_s=quantile(0.95, buckets),
            queries=tuple((field, f"{name} ({source})") for field, name in COUNTERS.items()),
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.scrape_once()
