"""``MetricsSource`` over the Prometheus HTTP API.

A window of one role/version is the increase of the serving counters over the last ``seconds``
(``increase(...[Ns])``, Prometheus' extrapolated counter increase, rounded down) plus the ITL p95
from the histogram buckets. Every figure of both roles is fetched in **one** instant query (the
figure expressions joined with ``or``, each tagged with a ``figure`` label), so a tick costs one HTTP
round trip however many figures it needs; each figure's own expression is what the analysis records
in ``WindowMetrics.queries`` (and the operator in ``status.lastAnalysis.queries``).

Per-request histograms (tokens per step, inter-token latency) come back as one sample per bucket
(``sum by (le) (increase(..._bucket[w]))``) plus their ``_sum`` and ``_count``, for the comparison of
canary and stable (``specops.rollout.comparison``).

Empty results are zeros (no data yet means the brain waits). An unreachable Prometheus or an error
answer raises :class:`MetricsUnavailable`: the reconcile holds and reports ``Degraded``.

Metric names follow ``docs/CONTRACTS.md`` (specops runtime). For the vLLM runtime the same figures
come from vLLM's own counters; ``pair_version`` and ``role`` are then pod labels the chart's
PodMonitor relabels onto the series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from specops.rollout.model import Histogram, Role, WindowMetrics


class MetricsUnavailable(RuntimeError):
    """Prometheus could not answer (network, HTTP or query error)."""


@dataclass(frozen=True)
class MetricNames:
    """Counter/histogram names of one serving runtime (without the ``_total``/``_bucket`` suffixes)."""

    requests: str
    errors: str | None
    drafts: str
    draft_tokens: str
    accepted_tokens: str
    itl: str
    target_steps: str
    speculative_steps: str
    request_tokens_per_step: str | None = None
    request_itl: str | None = None
    error_selector: str = ""
    speculative_selector: str = ""


SPECOPS_METRICS = MetricNames(
    requests="specops_requests_total",
    errors="specops_request_errors_total",
    drafts="specops_spec_decode_num_drafts_total",
    draft_tokens="specops_spec_decode_num_draft_tokens_total",
    accepted_tokens="specops_spec_decode_num_accepted_tokens_total",
    itl="specops_inter_token_latency_seconds",
    target_steps="specops_spec_decode_num_target_steps_total",
    speculative_steps="specops_spec_decode_num_target_steps_total",
    request_tokens_per_step="specops_request_tokens_per_step",
    request_itl="specops_request_inter_token_latency_seconds",
    error_selector='reason="internal"',  # only server faults count against the canary
    speculative_selector='mode="speculative"',
)
# vLLM speculates on every decode step of a request once speculation is configured, so its drafts
# are its target steps (tokens per step = its mean accepted length); its per-request time per output
# token is the latency to compare; it has no per-request tokens-per-step histogram.
VLLM_METRICS = MetricNames(
    requests="vllm:request_success_total",
    errors=None,
    drafts="vllm:spec_decode_num_drafts_total",
    draft_tokens="vllm:spec_decode_num_draft_tokens_total",
    accepted_tokens="vllm:spec_decode_num_accepted_tokens_total",
    itl="vllm:inter_token_latency_seconds",
    target_steps="vllm:spec_decode_num_drafts_total",
    speculative_steps="vllm:spec_decode_num_drafts_total",
    request_itl="vllm:request_time_per_output_token_seconds",
)
RUNTIME_METRICS = {"specops": SPECOPS_METRICS, "vllm": VLLM_METRICS}

ITL_QUANTILE = 0.95


def _selector(*, model: str, version: str, role: str, extra: str = "") -> str:
    parts = [f'model_name="{_escape(model)}"', f'pair_version="{_escape(version)}"', f'role="{role}"']
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def figure_queries(*, names: MetricNames, model: str, version: str, role: str, seconds: float) -> dict[str, str]:
    """figure → the exact PromQL of one role/version over a window of ``seconds``."""
    window = f"[{max(1, round(seconds))}s]"
    sel = _selector(model=model, version=version, role=role)
    speculative = _selector(model=model, version=version, role=role, extra=names.speculative_selector)
    queries = {
        "num_requests": f"sum(increase({names.requests}{sel}{window}))",
        "num_drafts": f"sum(increase({names.drafts}{sel}{window}))",
        "num_draft_tokens": f"sum(increase({names.draft_tokens}{sel}{window}))",
        "num_accepted_tokens": f"sum(increase({names.accepted_tokens}{sel}{window}))",
        "num_target_steps": f"sum(increase({names.target_steps}{sel}{window}))",
        "num_speculative_steps": f"sum(increase({names.speculative_steps}{speculative}{window}))",
        "itl_p95_s": f"histogram_quantile({ITL_QUANTILE}, sum by (le) (rate({names.itl}_bucket{sel}{window})))",
    }
    if names.errors is not None:
        error_sel = _selector(model=model, version=version, role=role, extra=names.error_selector)
        queries["num_errors"] = f"sum(increase({names.errors}{error_sel}{window}))"
    for figure, histogram in (
        ("request_tokens_per_step", names.request_tokens_per_step),
        ("request_itl", names.request_itl),
    ):
        if histogram is not None:
            queries[f"{figure}_bucket"] = f"sum by (le) (increase({histogram}_bucket{sel}{window}))"
            queries[f"{figure}_sum"] = f"sum(increase({histogram}_sum{sel}{window}))"
            queries[f"{figure}_count"] = f"sum(increase({histogram}_count{sel}{window}))"
    return queries


def combined_query(per_side: dict[str, dict[str, str]]) -> str:
    """One query returning every figure of every side, tagged ``side`` and ``figure``."""
    parts = []
    for side, queries in per_side.items():
        for figure, query in queries.items():
            parts.append(
                f'label_replace(label_replace({query}, "figure", "{figure}", "", ""), "side", "{side}", "", "")'
            )
    return " or ".join(parts)


class PrometheusMetrics:
    """Windows of the canary and stable sides of one deployment, one HTTP query per tick.

    ``sides`` maps role → version for the tick (both known before the brain decides); the first
    ``window`` call fetches all of them and the next ones are served from that answer.
    """

    def __init__(
        self,
        *,
        http: httpx.Client,
        url: str,
        model: str,
        runtime: str = "specops",
        sides: dict[Role, str] | None = None,
    ) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.model = model
        self.names = RUNTIME_METRICS[runtime]
        self.sides = dict(sides or {})
        self._answers: dict[tuple[Role, str, float], WindowMetrics] = {}

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        key = (role, version, seconds)
        if key not in self._answers:
            sides = {**self.sides, role: version}
            self._answers.update(self._fetch(sides, seconds))
        return self._answers[key]

    def _fetch(self, sides: dict[Role, str], seconds: float) -> dict[tuple[Role, str, float], WindowMetrics]:
        per_side = {
            role.value: figure_queries(
                names=self.names, model=self.model, version=version, role=role.value, seconds=seconds
            )
            for role, version in sides.items()
        }
        values = self.query(combined_query(per_side))
        answers = {}
        for role, version in sides.items():
            queries = per_side[role.value]
            got = {figure: values.get((role.value, figure)) for figure in queries}
            itl = got.get("itl_p95_s")
            answers[(role, version, seconds)] = WindowMetrics(
                num_requests=_count(got.get("num_requests")),
                num_errors=_count(got.get("num_errors")),
                num_drafts=_count(got.get("num_drafts")),
                num_draft_tokens=_count(got.get("num_draft_tokens")),
                num_accepted_tokens=_count(got.get("num_accepted_tokens")),
                num_target_steps=_count(got.get("num_target_steps")),
                num_speculative_steps=_count(got.get("num_speculative_steps")),
                itl_p95_s=itl if itl is not None and math.isfinite(itl) else None,
                request_tokens_per_step=_histogram(values, role.value, "request_tokens_per_step"),
                request_itl=_histogram(values, role.value, "request_itl"),
                queries=tuple(sorted(queries.items())),
            )
        return answers

    def query(self, promql: str) -> dict[tuple[str, str], float]:
        """(side, figure) → value of an instant query built by :func:`combined_query`; a histogram's
        buckets come back as figure ``NAME_bucket:LE``."""
        try:
            response = self.http.post(f"{self.url}/api/v1/query", data={"query": promql})
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {error}") from error
        if response.status_code != 200 or body.get("status") != "success":
            raise MetricsUnavailable(
                f"Prometheus query failed ({response.status_code}): "
                f"{body.get('errorType', '')} {body.get('error', '')}".strip()
            )
        values: dict[tuple[str, str], float] = {}
        for sample in body["data"].get("result", []):
            labels = sample.get("metric", {})
            figure = labels.get("figure", "")
            if "le" in labels:
                figure = f"{figure}:{labels['le']}"
            values[(labels.get("side", ""), figure)] = float(sample["value"][1])
        return values


def _histogram(values: dict[tuple[str, str], float], side: str, figure: str) -> Histogram | None:
    """A per-request histogram's window from the answers of :func:`figure_queries`; None without data."""
    prefix = f"{figure}_bucket:"
    buckets = {}
    for (got_side, name), value in values.items():
        if got_side == side and name.startswith(prefix) and math.isfinite(value):
            bound = float(name.removeprefix(prefix))
            if math.isfinite(bound):
                buckets[bound] = value
    count, total = values.get((side, f"{figure}_count")), values.get((side, f"{figure}_sum"))
    if not buckets or count is None or total is None or not math.isfinite(count) or count <= 0:
        return None
    bounds = tuple(sorted(buckets))
    return Histogram(bounds=bounds, cumulative=tuple(buckets[b] for b in bounds), total=total, count=count)


def _count(value: float | None) -> int:
    """A counter increase as an int; NaN/None (no series) is 0."""
    if value is None or not math.isfinite(value) or value < 0:
        return 0
    return round(value)
