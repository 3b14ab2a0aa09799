"""Every Prometheus metric SpecOps serving exports, defined once.

The spec-decode counters keep vLLM's meaning (``vllm/v1/spec_decode/metrics.py``):

* a *draft* is one proposal of k >= 1 tokens for one sequence in one engine step;
* *draft tokens* sum those k; *accepted tokens* count the draft tokens the target kept;
* *accepted tokens per position* count, for position j (0-based), the drafts whose token j was kept;
* a *target step* is one sequence's part in one target forward pass (a batch of 8 running sequences
  makes 8), ``mode="speculative"`` when the sequence verified draft tokens in it, ``"plain"`` when not.
  Draft counters stop when an engine stops drafting; target steps do not, so the figures built on
  them (tokens per target step) judge a canary whatever its engine chose.

Every series carries the labels ``model_name``, ``pair_version`` and ``role`` (stable | canary), so
one Prometheus query compares the two sides of a canary. Counters only count; ratios are derived in
PromQL (never an average of per-request averages):

.. code-block:: promql

    # draft acceptance rate (accepted / drafted tokens) over 5 minutes
    sum by (role) (rate(specops_spec_decode_num_accepted_tokens_total[5m]))
      / sum by (role) (rate(specops_spec_decode_num_draft_tokens_total[5m]))

    # mean accepted length: tokens gained per draft = 1 (the target's own token) + accepted per draft
    1 + sum by (role) (rate(specops_spec_decode_num_accepted_tokens_total[5m]))
      / sum by (role) (rate(specops_spec_decode_num_drafts_total[5m]))

    # tokens per target step: output tokens each target forward gave a sequence (1 + accepted per
    # step); exactly 1.0 when speculation is off, and defined whenever there is traffic
    1 + sum by (role) (rate(specops_spec_decode_num_accepted_tokens_total[5m]))
      / sum by (role) (rate(specops_spec_decode_num_target_steps_total[5m]))

    # share of target steps that speculated (the sequence verified >= 1 draft token)
    sum by (role) (rate(specops_spec_decode_num_target_steps_total{mode="speculative"}[5m]))
      / sum by (role) (rate(specops_spec_decode_num_target_steps_total[5m]))

    # acceptance at draft position j: share of drafts whose token j was kept
    sum by (role, position) (rate(specops_spec_decode_num_accepted_tokens_per_pos_total[5m]))
      / ignoring(position) group_left sum by (role) (rate(specops_spec_decode_num_drafts_total[5m]))

    # generation throughput (tokens/s) and request rate by finish reason
    sum by (role) (rate(specops_generation_tokens_total[1m]))
    sum by (role, finish_reason) (rate(specops_requests_total[1m]))

    # availability errors: only reason="internal" counts against the SLO (the others are the client's)
    sum by (role) (rate(specops_request_errors_total{reason="internal"}[5m]))
      / (sum by (role) (rate(specops_requests_total[5m]))
         + sum by (role) (rate(specops_request_errors_total{reason="internal"}[5m])))

    # latency quantiles
    histogram_quantile(0.99, sum by (role, le) (rate(specops_time_to_first_token_seconds_bucket[5m])))
    histogram_quantile(0.99, sum by (role, le) (rate(specops_inter_token_latency_seconds_bucket[5m])))

Inter-token latency: the engine emits a step's tokens together (1 + accepted draft tokens); the gap
since the previous step is spread evenly over them, so each token observes ``gap / k`` once
(tokens that arrive together with the first token observe 0). A request of n tokens therefore
observes n - 1 values, and their mean is the time per output token a client sees.

The histograms ``specops_request_acceptance_rate``, ``specops_request_mean_accepted_length`` and
``specops_request_tokens_per_step`` are per-request distributions (what the drift monitor and the
canary analysis compare, the last one for every finished request, drafted or not); use the counters
above for fleet ratios.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

#: Labels on every SpecOps serving series.
LABELS: tuple[str, ...] = ("model_name", "pair_version", "role")

#: ``specops_request_errors_total`` reasons. Only ``internal`` counts against availability.
ERROR_REASONS: tuple[str, ...] = (
    "invalid_request",
    "context_length",
    "not_found",
    "client_disconnect",
    "internal",
)

#: ``specops_requests_total`` finish reasons: the engine's two, plus ``abort`` (client went away).
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "abort")

#: ``specops_spec_decode_num_target_steps_total`` modes.
STEP_MODES: tuple[str, ...] = ("speculative", "plain")

#: ``specops_request_records_dropped_total`` reasons.
RECORD_DROP_REASONS: tuple[str, ...] = ("queue_full", "store_error")

# Buckets: vLLM's, extended downwards because small CPU pairs answer in milliseconds.
TTFT_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
ITL_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
ACCEPTANCE_RATE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ACCEPTED_LENGTH_BUCKETS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0)
# 1.0 is its own bucket: a request its engine never drafted for lands exactly there.
TOKENS_PER_STEP_BUCKETS = (1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


@dataclass(frozen=True)
class MetricFamilies:
    """The metric objects of one registry (the default one in production)."""

    drafts: Counter
    draft_tokens: Counter
    accepted_tokens: Counter
    accepted_per_position: Counter
    target_steps: Counter
    prompt_tokens: Counter
    generation_tokens: Counter
    requests: Counter
    errors: Counter
    records_dropped: Counter
    records_written: Counter
    ttft: Histogram
    itl: Histogram
    request_itl: Histogram
    e2e: Histogram
    acceptance_rate: Histogram
    mean_accepted_length: Histogram
    tokens_per_step: Histogram
    running: Gauge
    waiting: Gauge
    draft_length: Gauge


def define(registry: CollectorRegistry) -> MetricFamilies:
    """Create every SpecOps serving metric on ``registry`` (call once per registry)."""
    c, h, g = Counter, Histogram, Gauge
    return MetricFamilies(
        drafts=c(
            "specops_spec_decode_num_drafts",
            "Number of drafts (proposals of k >= 1 tokens).",
            LABELS,
            registry=registry,
        ),
        draft_tokens=c(
            "specops_spec_decode_num_draft_tokens", "Number of draft tokens proposed.", LABELS, registry=registry
        ),
        accepted_tokens=c(
            "specops_spec_decode_num_accepted_tokens",
            "Number of draft tokens accepted by the target.",
            LABELS,
            registry=registry,
        ),
        accepted_per_position=c(
            "specops_spec_decode_num_accepted_tokens_per_pos",
            "Drafts whose token at this 0-based position was accepted.",
            (*LABELS, "position"),
            registry=registry,
        ),
        target_steps=c(
            "specops_spec_decode_num_target_steps",
            "Target forward steps per sequence (mode: speculative when it verified drafts, else plain).",
            (*LABELS, "mode"),
            registry=registry,
        ),
        prompt_tokens=c("specops_prompt_tokens", "Prompt tokens of admitted requests.", LABELS, registry=registry),
        generation_tokens=c("specops_generation_tokens", "Tokens generated by the engine.", LABELS, registry=registry),
        requests=c(
            "specops_requests",
            "Finished requests by finish reason (stop, length, abort).",
            (*LABELS, "finish_reason"),
            registry=registry,
        ),
        errors=c(
            "specops_request_errors",
            "Failed requests by reason; only 'internal' is the server's.",
            (*LABELS, "reason"),
            registry=registry,
        ),
        records_dropped=c(
            "specops_request_records_dropped",
            "Request records not stored (writer behind or store failing).",
            (*LABELS, "reason"),
            registry=registry,
        ),
        records_written=c("specops_request_records_written", "Request records stored.", LABELS, registry=registry),
        ttft=h(
            "specops_time_to_first_token_seconds",
            "Time from arrival to the first output token.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=registry,
        ),
        itl=h(
            "specops_inter_token_latency_seconds",
            "Time between output tokens (a step's gap spread over its tokens).",
            LABELS,
            buckets=ITL_BUCKETS,
            registry=registry,
        ),
        request_itl=h(
            "specops_request_inter_token_latency_seconds",
            "Per-request mean inter-token latency: (last - first token) / (output tokens - 1); "
            "the latency SLI counts requests under a threshold.",
            LABELS,
            buckets=ITL_BUCKETS,
            registry=registry,
        ),
        e2e=h(
            "specops_e2e_request_latency_seconds",
            "Time from arrival to the last output token.",
            LABELS,
            buckets=E2E_BUCKETS,
            registry=registry,
        ),
        acceptance_rate=h(
            "specops_request_acceptance_rate",
            "Per-request accepted / draft tokens (requests that drafted).",
            LABELS,
            buckets=ACCEPTANCE_RATE_BUCKETS,
            registry=registry,
        ),
        mean_accepted_length=h(
            "specops_request_mean_accepted_length",
            "Per-request tokens per draft: 1 + accepted / drafts (requests that drafted).",
            LABELS,
            buckets=ACCEPTED_LENGTH_BUCKETS,
            registry=registry,
        ),
        tokens_per_step=h(
            "specops_request_tokens_per_step",
            "Per-request output tokens per target step: 1 + accepted / steps (every finished request).",
            LABELS,
            buckets=TOKENS_PER_STEP_BUCKETS,
            registry=registry,
        ),
        running=g(
            "specops_num_requests_running",
            "Requests in the engine's current batch.",
            LABELS,
            registry=registry,
            multiprocess_mode="livesum",
        ),
        waiting=g(
            "specops_num_requests_waiting",
            "Requests queued for the engine.",
            LABELS,
            registry=registry,
            multiprocess_mode="livesum",
        ),
        draft_length=g(
            "specops_draft_length",
            "Mean draft length k of the last engine step (0: no speculation).",
            LABELS,
            registry=registry,
            multiprocess_mode="liveall",
        ),
    )


#: The families defined on each registry (they belong to it; entries go with the registry).
_FAMILIES_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, MetricFamilies] = weakref.WeakKeyDictionary()
_DEFINE_LOCK = threading.Lock()


def families(registry: CollectorRegistry = REGISTRY) -> MetricFamilies:
    """The metric families on ``registry``, defined on first use (the registry is the only global)."""
    with _DEFINE_LOCK:
        found = _FAMILIES_BY_REGISTRY.get(registry)
        if found is None:
            found = _FAMILIES_BY_REGISTRY[registry] = define(registry)
        return found


class ServingMetrics:
    """The series of one served pair version, with its labels bound once.

    ``enabled=False`` turns every method into a no-op (the benchmark measures telemetry's cost).
    Methods are thread-safe: the engine thread counts steps while the event loop counts requests.
    """

    def __init__(
        self,
        *,
        model_name: str,
        pair_version: str,
        role: str,
        registry: CollectorRegistry = REGISTRY,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.labels = {"model_name": model_name, "pair_version": pair_version, "role": role}
        fam = families(registry)
        self._fam = fam
        lv = (model_name, pair_version, role)
        self._drafts = fam.drafts.labels(*lv)
        self._draft_tokens = fam.draft_tokens.labels(*lv)
        self._accepted = fam.accepted_tokens.labels(*lv)
        self._prompt_tokens = fam.prompt_tokens.labels(*lv)
        self._generation_tokens = fam.generation_tokens.labels(*lv)
        self._ttft = fam.ttft.labels(*lv)
        self._itl = fam.itl.labels(*lv)
        self._request_itl = fam.request_itl.labels(*lv)
        self._e2e = fam.e2e.labels(*lv)
        self._acceptance = fam.acceptance_rate.labels(*lv)
        self._accepted_length = fam.mean_accepted_length.labels(*lv)
        self._tokens_per_step = fam.tokens_per_step.labels(*lv)
        self._running = fam.running.labels(*lv)
        self._waiting = fam.waiting.labels(*lv)
        self._draft_length = fam.draft_length.labels(*lv)
        self._records_written = fam.records_written.labels(*lv)
        self._per_position: list = []
        # Touch the labelled series so they exist (at 0) from the first scrape.
        self._requests = {r: fam.requests.labels(*lv, r) for r in FINISH_REASONS}
        self._errors = {r: fam.errors.labels(*lv, r) for r in ERROR_REASONS}
        self._dropped = {r: fam.records_dropped.labels(*lv, r) for r in RECORD_DROP_REASONS}
        self._steps = {m: fam.target_steps.labels(*lv, m) for m in STEP_MODES}
        self._lv = lv

    # -- engine side (worker thread) ------------------------------------------------------------

    def step(
        self,
        *,
        num_draft_tokens: Sequence[int],
        num_accepted_tokens: Sequence[int],
        num_emitted_tokens: Sequence[int],
        running: Sequence[bool],
    ) -> None:
        """Count one engine step: per sequence, k drafted, accepted, tokens emitted and whether it ran."""
        if not self.enabled:
            return
        drafts = draft_tokens = accepted = 0
        for k, a in zip(num_draft_tokens, num_accepted_tokens, strict=False):
            if k > 0:
                drafts += 1
                draft_tokens += k
                accepted += a
                for position in range(a):
                    self._position(position).inc()
        self._count_steps(speculative=drafts, total=sum(bool(r) for r in running))
        if drafts:
            self._drafts.inc(drafts)
            self._draft_tokens.inc(draft_tokens)
            if accepted:
                self._accepted.inc(accepted)
        self._draft_length.set(draft_tokens / drafts if drafts else 0.0)
        emitted = sum(num_emitted_tokens)
        if emitted:
            self._generation_tokens.inc(emitted)

    def request_stats(
        self,
        *,
        num_drafts: int,
        num_draft_tokens: int,
        num_accepted_tokens: int,
        num_accepted_per_position: Sequence[int],
        num_generated_tokens: int,
        num_steps: int,
    ) -> None:
        """Count one finished request's totals (used when the engine reports no per-step stats);
        ``num_steps`` target steps, of which ``num_drafts`` speculated."""
        if not self.enabled:
            return
        self._count_steps(speculative=num_drafts, total=num_steps)
        if num_drafts:
            self._drafts.inc(num_drafts)
            self._draft_tokens.inc(num_draft_tokens)
            if num_accepted_tokens:
                self._accepted.inc(num_accepted_tokens)
            for position, count in enumerate(num_accepted_per_position):
                if count:
                    self._position(position).inc(count)
        if num_generated_tokens:
            self._generation_tokens.inc(num_generated_tokens)

    def _count_steps(self, *, speculative: int, total: int) -> None:
        """``total`` target steps, of which ``speculative`` verified drafts."""
        if speculative:
            self._steps["speculative"].inc(speculative)
        if total > speculative:
            self._steps["plain"].inc(total - speculative)

    def _position(self, position: int):
        while len(self._per_position) <= position:
            self._per_position.append(self._fam.accepted_per_position.labels(*self._lv, str(len(self._per_position))))
        return self._per_position[position]

    def set_draft_length(self, value: float) -> None:
        if self.enabled:
            self._draft_length.set(value)

    # -- request side (event loop) -----------------------------------------------------------------

    def admitted(self, *, prompt_tokens: int) -> None:
        if self.enabled:
            self._prompt_tokens.inc(prompt_tokens)

    def first_token(self, seconds: float) -> None:
        if self.enabled:
            self._ttft.observe(seconds)

    def inter_token(self, seconds: float, *, num_tokens: int = 1) -> None:
        """Observe a gap of ``seconds`` that brought ``num_tokens`` tokens: ``num_tokens`` x (gap / n)."""
        if not self.enabled or num_tokens <= 0:
            return
        share = seconds / num_tokens
        for _ in range(num_tokens):
            self._itl.observe(share)

    def finished(
        self,
        *,
        finish_reason: str,
        e2e_seconds: float,
        num_drafts: int,
        acceptance_rate: float,
        mean_accepted_length: float,
        mean_itl_seconds: float | None = None,
        tokens_per_step: float | None = None,
    ) -> None:
        """Count a finished request (``abort`` when the client went away); ``mean_itl_seconds`` is None for
        requests with fewer than two output tokens (no gap to measure), ``tokens_per_step`` None for
        one that took no target step."""
        if not self.enabled:
            return
        counter = self._requests.get(finish_reason)
        if counter is None:
            counter = self._requests[finish_reason] = self._fam.requests.labels(*self._lv, finish_reason)
        counter.inc()
        if finish_reason != "abort":
            self._e2e.observe(e2e_seconds)
            if mean_itl_seconds is not None:
                self._request_itl.observe(mean_itl_seconds)
            if tokens_per_step is not None and math.isfinite(tokens_per_step):
                self._tokens_per_step.observe(tokens_per_step)
        if num_drafts and math.isfinite(acceptance_rate):
            self._acceptance.observe(acceptance_rate)
            self._accepted_length.observe(mean_accepted_length)

    def error(self, reason: str) -> None:
        """Count a failed request; ``reason`` is one of `ERROR_REASONS`."""
        if not self.enabled:
            return
        self._errors.get(reason, self._errors["internal"]).inc()

    def queue(self, *, running: int, waiting: int) -> None:
        if self.enabled:
            self._running.set(running)
            self._waiting.set(waiting)

    # -- request records ------------------------------------------------------------------------------

    def records_dropped(self, reason: str, count: int = 1) -> None:
        # Counted even with telemetry off: a dropped record is an operational fact.
        self._dropped.get(reason, self._dropped["store_error"]).inc(count)

    def records_written(self, count: int) -> None:
        self._records_written.inc(count)
