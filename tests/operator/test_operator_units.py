"""Pure tests of the operator's adapters: PromQL and its answers, status round trips, alert annotations."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from specops.kube import alerts
from specops.rollout import brain
from specops.rollout.model import (
    Alert,
    Observation,
    Phase,
    Role,
    RolloutPolicy,
    RolloutState,
    Verdict,
    WindowMetrics,
)
from specops_operator import prometheus_source
from specops_operator import status as status_


def test_figure_queries_are_exact_promql_per_version_and_role() -> None:
    queries = prometheus_source.figure_queries(
        names=prometheus_source.SPECOPS_METRICS, model="chat", version="3", role="canary", seconds=60
    )
    selector = '{model_name="chat",pair_version="3",role="canary"}'
    assert queries["num_draft_tokens"] == f"sum(increase(specops_spec_decode_num_draft_tokens_total{selector}[60s]))"
    assert queries["num_errors"] == (
        "sum(increase(specops_request_errors_total"
        '{model_name="chat",pair_version="3",role="canary",reason="internal"}[60s]))'
    )
    assert queries["itl_p95_s"] == (
        f"histogram_quantile(0.95, sum by (le) (rate(specops_inter_token_latency_seconds_bucket{selector}[60s])))"
    )
    vllm = prometheus_source.figure_queries(
        names=prometheus_source.VLLM_METRICS, model="chat", version="3", role="canary", seconds=60
    )
    assert "num_errors" not in vllm and vllm["num_drafts"].startswith("sum(increase(vllm:spec_decode_num_drafts_total")


def prometheus_answering(results: list[dict[str, Any]], *, status: int = 200) -> tuple[httpx.Client, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(dict(httpx.QueryParams(request.content.decode()))["query"])
        body = {"status": "success", "data": {"resultType": "vector", "result": results}}
        if status != 200:
            body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def sample(side: str, figure: str, value: str) -> dict[str, Any]:
    return {"metric": {"side": side, "figure": figure}, "value": [0, value]}


def test_one_query_per_tick_serves_both_sides() -> None:
    http, seen = prometheus_answering(
        [
            sample("canary", "num_draft_tokens", "1000.4"),
            sample("canary", "num_accepted_tokens", "700"),
            sample("canary", "num_requests", "50"),
            sample("canary", "num_drafts", "250"),
            sample("canary", "itl_p95_s", "NaN"),
            sample("stable", "num_draft_tokens", "3000"),
        ]
    )
    source = prometheus_source.PrometheusMetrics(
        http=http, url="http://prom", model="chat", sides={Role.CANARY: "3", Role.STABLE: "2"}
    )
    canary = source.window(role=Role.CANARY, version="3", seconds=60)
    stable = source.window(role=Role.STABLE, version="2", seconds=60)
    assert len(seen) == 1 and " or " in seen[0]
    assert (canary.num_draft_tokens, canary.num_accepted_tokens, canary.num_errors) == (1000, 700, 0)
    assert canary.itl_p95_s is None and canary.acceptance_rate == pytest.approx(0.7)
    assert stable.num_draft_tokens == 3000 and stable.num_requests == 0
    assert dict(canary.queries)["num_requests"].startswith("sum(increase(specops_requests_total")


def test_target_steps_and_per_request_histograms_come_back_for_the_comparison() -> None:
    bucket = "request_tokens_per_step_bucket"
    http, seen = prometheus_answering(
        [
            sample("canary", "num_target_steps", "900"),
            sample("canary", "num_speculative_steps", "0"),
            sample("canary", "num_requests", "30"),
            {"metric": {"side": "canary", "figure": bucket, "le": "1.0"}, "value": [0, "30"]},
            {"metric": {"side": "canary", "figure": bucket, "le": "1.5"}, "value": [0, "30"]},
            {"metric": {"side": "canary", "figure": bucket, "le": "+Inf"}, "value": [0, "30"]},
            sample("canary", "request_tokens_per_step_sum", "30"),
            sample("canary", "request_tokens_per_step_count", "30"),
        ]
    )
    source = prometheus_source.PrometheusMetrics(http=http, url="http://prom", model="chat", sides={Role.CANARY: "3"})
    window = source.window(role=Role.CANARY, version="3", seconds=60)
    assert (window.num_target_steps, window.tokens_per_step, window.speculative_share) == (900, 1.0, 0.0)
    histogram = window.request_tokens_per_step
    assert histogram is not None and (histogram.bounds, histogram.cumulative) == ((1.0, 1.5), (30.0, 30.0))
    assert histogram.mean == 1.0 and window.request_itl is None
    assert 'sum by (le) (increase(specops_request_tokens_per_step_bucket{model_name="chat"' in seen[0]
    assert 'specops_spec_decode_num_target_steps_total{model_name="chat",pair_version="3",role="canary",' in seen[0]
    assert 'mode="speculative"' in seen[0]


def test_empty_answers_are_zeros_and_the_brain_waits() -> None:
    http, _ = prometheus_answering([])
    window = prometheus_source.PrometheusMetrics(http=http, url="http://prom", model="chat").window(
        role=Role.CANARY, version="3", seconds=60
    )
    assert window.num_draft_tokens == 0
    state = RolloutState(
        deployment="ml/chat",
        pair="chat",
        stable_version="2",
        canary_version="3",
        phase=brain.Phase.PROGRESSING,
        step_index=0,
        weight=10,
    )
    new, decision = brain.decide(state, Observation(now=1.0, canary=window), RolloutPolicy())
    assert decision.kind.value == "hold" and new.last_analysis.verdict is Verdict.INCONCLUSIVE


def test_prometheus_errors_raise_metrics_unavailable() -> None:
    http, _ = prometheus_answering([], status=400)
    source = prometheus_source.PrometheusMetrics(http=http, url="http://prom", model="chat")
    with pytest.raises(prometheus_source.MetricsUnavailable, match="bad_data"):
        source.window(role=Role.CANARY, version="3", seconds=60)
    unreachable = prometheus_source.PrometheusMetrics(
        http=httpx.Client(timeout=0.5), url="http://127.0.0.1:9", model="chat"
    )
    with pytest.raises(prometheus_source.MetricsUnavailable, match="did not answer"):
        unreachable.window(role=Role.CANARY, version="3", seconds=60)


def test_status_round_trips_the_rollout_state() -> None:
    policy = RolloutPolicy(min_draft_tokens=10)
    state = RolloutState(deployment="ml/chat", pair="chat", stable_version="2")
    state, _ = brain.start(state, version="3", policy=policy, now=1_795_000_000.25)
    window = WindowMetrics(
        num_requests=20,
        num_draft_tokens=100,
        num_accepted_tokens=80,
        num_drafts=25,
        queries=(("num_draft_tokens", "sum(...)"),),
    )
    state, _ = brain.decide(state, Observation(now=1_795_000_060.5, canary=window), policy)
    rendered = status_.render(state, revision=7, conditions=[], previous=None, analysed_at=1_795_000_060.5)
    rendered = json.loads(json.dumps(rendered))  # what the API stores
    loaded = status_.load_state(rendered)
    assert loaded == state.__class__(**{**state.__dict__, "last_analysis": None})
    assert status_.revision(rendered) == 7 and rendered["canaryWeight"] == 25
    assert rendered["lastAnalysis"]["queries"] == [{"name": "num_draft_tokens", "query": "sum(...)"}]
    assert rendered["acceptanceRate"] == 0.8 and [item["weight"] for item in rendered["history"]] == [10, 25]


def test_alert_annotation_round_trips() -> None:
    batch = (
        Alert("SpecOpsCanaryErrorBurn", "page", role=Role.CANARY, version="3", summary="5% errors"),
        Alert("SpecOpsDrift", "ticket"),
    )
    batch_id, decoded = alerts.decode(alerts.encode(batch, batch_id="b1", at=1.0))
    assert batch_id == "b1" and decoded == batch
    with pytest.raises(ValueError, match="not a specops alerts annotation"):
        alerts.decode('{"alerts": []}')


class FakePairRegistry:
    """The slice of ``specops.registry.PairRegistry`` the adapter calls."""

    def __init__(self) -> None:
        from specops.registry import PairVersion

        self.versions = {
            "3": PairVersion(
                name="chat",
                version="3",
                source="s3://mlflow/1/abc/artifacts/model",
                tags={"qualification.passed": "true", "pair.draft_sha256": "ab", "pair.num_speculative_tokens": "6"},
            ),
            "4": PairVersion(name="chat", version="4", tags={"qualification.passed": "false"}),
        }
        self.aliases = {"candidate": "3", "risky": "4"}
        self.calls: list[tuple[str, ...]] = []

    def alias(self, name: str, alias: str) -> str | None:
        return self.aliases.get(alias)

    def version(self, name: str, version: str) -> Any:
        return self.versions[version]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.calls.append(("set", alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.calls.append(("delete", alias))


def test_registry_adapter_resolves_aliases_refuses_unqualified_versions_and_finds_sources() -> None:
    from specops.errors import Conflict, NotFound
    from specops_operator.registry import RegistryAliases

    adapter = RegistryAliases(FakePairRegistry())
    assert adapter.resolve("chat", "candidate") == "3" and adapter.resolve("chat", "3") == "3"
    with pytest.raises(Conflict, match="did not pass qualification"):
        adapter.resolve("chat", "risky")
    with pytest.raises(NotFound, match="no alias 'gone'"):
        adapter.resolve("chat", "gone")
    source = adapter.source("chat", "3")
    assert (source.storage_uri, source.proposer, source.num_speculative_tokens) == (
        "s3://mlflow/1/abc/artifacts/model",
        "draft",
        6,
    )
    adapter.set_alias("chat", "canary", "3")
    adapter.delete_alias("chat", "canary")
    assert adapter.registry.calls == [("set", "canary", "3"), ("delete", "canary")]


class RecordingKube:
    """A KubeClient stand-in that keeps objects in a dict and records every write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, Any]] = []

    def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.plural, name))

    def create(self, kind: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.objects[(kind.plural, body["metadata"]["name"])] = body
        self.writes.append(("create", body["metadata"]["name"], body))
        return body

    def patch(self, kind: Any, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if (kind.plural, name) not in self.objects:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404)
        self.writes.append(("patch", name, patch))
        body = _merged(self.objects[(kind.plural, name)], patch)
        self.objects[(kind.plural, name)] = body
        return body

    def delete(self, kind: Any, namespace: str, name: str) -> bool:
        self.writes.append(("delete", name, None))
        return self.objects.pop((kind.plural, name), None) is not None

    def list(self, kind: Any, namespace: str, *, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [body for (plural, _), body in self.objects.items() if plural == kind.plural]


def _merged(body: Any, patch: Any) -> Any:
    """``body`` after a JSON merge patch (RFC 7386), as the API server applies it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(body) if isinstance(body, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merged(merged.get(key), value)
    return merged


PROMOTED = RolloutState(
    deployment="ml/chat", pair="chat", stable_version="3", previous_version="2", phase=Phase.PROMOTED, promoted_at=1.0
)
"""Version 3 promoted over version 2, within the bake time."""


def backend(mode: str, prior: RolloutState) -> tuple[Any, RecordingKube]:
    from specops_operator import builders, deployment_spec
    from specops_operator.serving import KServeBackend

    fake = RecordingKube()
    serving = KServeBackend(
        client=fake,
        owner=builders.Owner(name="chat", namespace="ml", uid="u"),  # type: ignore[arg-type]
        spec=deployment_spec.parse({"pair": {"name": "chat", "version": "1"}, "deploymentMode": mode}),
        sources=lambda version: builders.PairSource(storage_uri=f"s3://p/{version}"),
        prior=prior,
        ready=lambda name: True,
    )
    return serving, fake


def test_serverless_canary_promotion_and_rollback_follow_kserve() -> None:
    serving, fake = backend("Serverless", RolloutState(deployment="ml/chat", pair="chat"))
    serving.deploy_stable("1")
    serving.start_canary("2", 10)
    assert fake.writes[-1][2]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    serving.set_canary_weight(25)
    assert fake.writes[-1][2] == {"spec": {"predictor": {"canaryTrafficPercent": 25}}}
    serving.remove_canary()
    assert fake.writes[-1][2]["spec"]["predictor"]["canaryTrafficPercent"] == 0  # KServe's rollback
    serving.start_canary("3", 10)
    serving.promote_canary()
    assert fake.writes[-1][2]["spec"]["predictor"]["canaryTrafficPercent"] is None  # removed: 100 % latest


def test_standard_rollback_after_promotion_restores_the_previous_version_first() -> None:
    serving, fake = backend("Standard", PROMOTED)
    serving.deploy_stable("3")
    fake.writes.clear()
    serving.remove_canary()
    kinds = [(kind, name) for kind, name, _ in fake.writes]
    assert kinds[0] == ("patch", "chat")  # the route moves first
    assert ("create", "chat-v2") in kinds and ("delete", "chat-v3") in kinds
    route = next(body for kind, name, body in fake.writes if name == "chat")
    assert [ref["name"] for ref in route["spec"]["rules"][0]["backendRefs"]] == ["chat-v2-predictor"]


def _role_of(body: dict[str, Any]) -> tuple[str, str]:
    """(label, --role argument) of an InferenceService manifest."""
    args = body["spec"]["predictor"]["containers"][0]["args"]
    return body["metadata"]["labels"]["specops.io/role"], args[args.index("--role") + 1]


def _promoted(mode: str) -> tuple[RolloutState, Any, RecordingKube]:
    """Version 3 promoted over 2 (a canary first) in `mode`: the state and the backend that did it."""
    serving, fake = backend(mode, PROMOTED)
    serving.deploy_stable("2")
    serving.start_canary("3", 10)
    serving.promote_canary()
    return PROMOTED, serving, fake


def test_standard_sync_turns_a_promoted_canary_into_the_stable_role() -> None:
    promoted, serving, fake = _promoted("Standard")
    assert _role_of(fake.objects[("inferenceservices", "chat-v3")]) == ("canary", "canary")
    assert "relabelled InferenceService chat-v3 as stable" in serving.sync(promoted, now=2.0)
    assert _role_of(fake.objects[("inferenceservices", "chat-v3")]) == ("stable", "stable")
    assert not any("relabelled" in change for change in serving.sync(promoted, now=3.0))  # converged


def test_serverless_relabels_a_promoted_revision_only_after_the_bake_time() -> None:
    promoted, serving, fake = _promoted("Serverless")
    bake = serving.spec.policy.bake_s
    assert serving.sync(promoted, now=1.0 + bake / 2) == []  # KServe's rollback still needs the old revision
    assert _role_of(fake.objects[("inferenceservices", "chat")]) == ("canary", "canary")
    assert serving.sync(promoted, now=2.0 + bake) == ["relabelled InferenceService chat as stable"]
    assert _role_of(fake.objects[("inferenceservices", "chat")]) == ("stable", "stable")
