"""The operator end to end: kopf's runner against kmock's Kubernetes emulator, a real Prometheus scraping
a test exporter, the real audit log (SQLite) and in-memory registry aliases. The test plays KServe by
marking InferenceServices Ready."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from specops.kube import actions, alerts
from specops.rollout.model import Alert, Role
from specops_operator import kube
from specops_operator import status as status_

pytestmark = pytest.mark.slow

ROLLOUT = {
    "analysisIntervalSeconds": 2,
    "minDraftTokens": 40,
    "minRequests": 5,
    "failureLimit": 2,
    "thresholds": {"minAcceptanceRate": 0.5, "maxErrorRate": 0.05},
}
GOOD = {"requests": 2, "draft_tokens": 20, "accepted_tokens": 15}  # acceptance 0.75
BAD = {"requests": 2, "draft_tokens": 20, "accepted_tokens": 2}  # acceptance 0.10
STOPPED = {"requests": 2, "draft_tokens": 0, "accepted_tokens": 0, "plain_steps": 60}  # drafts nothing


def status_of(client: Any, helpers: Any, name: str) -> dict[str, Any]:
    return (client.get(kube.DEPLOYMENTS, helpers.namespace, name) or {}).get("status") or {}


def wait_phase(client: Any, helpers: Any, name: str, phase: str, *, timeout: float = 30.0, **fields: Any) -> dict:
    def check() -> dict[str, Any] | None:
        status = status_of(client, helpers, name)
        if status.get("phase") == phase and all(status.get(key) == value for key, value in fields.items()):
            return status
        return None

    return helpers.wait_for(check, timeout=timeout, message=f"{name} phase {phase} {fields}")


def weights(client: Any, helpers: Any, name: str) -> dict[str, int]:
    from specops_operator import builders

    route = client.get(kube.HTTP_ROUTES, helpers.namespace, name)
    return builders.route_weights(route) if route else {}


def start_stable(client: Any, helpers: Any, name: str, pair: str, **spec: Any) -> None:
    """Create the deployment at version 1 and play KServe until it is promoted."""
    client.create(kube.DEPLOYMENTS, helpers.namespace, helpers.deployment(name, pair=pair, version="1", **spec))
    isvc = f"{name}-v1" if spec.get("deploymentMode", "Standard") == "Standard" else name
    helpers.wait_for(lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, isvc), message=f"{isvc}")
    helpers.mark_ready(client, isvc)
    wait_phase(client, helpers, name, "Promoted", stableVersion="1")


def roll_out(client: Any, helpers: Any, name: str, version: str) -> None:
    """Move the deployment to ``version`` and play KServe until its canary InferenceService is Ready."""
    client.patch(kube.DEPLOYMENTS, helpers.namespace, name, {"spec": {"pair": {"version": version}}})
    isvc = f"{name}-v{version}"
    helpers.wait_for(lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, isvc), message=isvc)
    helpers.mark_ready(client, isvc)


def canary_weights(status: dict[str, Any]) -> list[int]:
    return [item["weight"] for item in status["history"] if item["to"] == "Progressing"]


def audit_actions(audit_log: Any, subject: str) -> Counter[str]:
    return Counter(event.action for event in audit_log.events(subject))


def test_good_canary_is_promoted_through_every_step_and_a_later_page_rolls_it_back(
    cluster: Any, operator: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    start_stable(client, helpers, "good", "good-pair", rollout=ROLLOUT)
    assert weights(client, helpers, "good") == {"good-v1-predictor": 100}
    stop = exporter.feed(model="good-pair", version="2", role="canary", **GOOD)
    try:
        client.patch(kube.DEPLOYMENTS, helpers.namespace, "good", {"spec": {"pair": {"version": "2"}}})
        canary = helpers.wait_for(
            lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, "good-v2"), message="canary InferenceService"
        )
        container = canary["spec"]["predictor"]["containers"][0]
        assert canary["metadata"]["labels"]["specops.io/role"] == "canary"
        assert container["args"][container["args"].index("--pair-version") + 1] == "2"
        assert canary["metadata"]["ownerReferences"][0]["kind"] == "SpeculativeDeployment"
        # Not Ready yet: the route keeps every request on stable.
        assert helpers.wait_for(lambda: weights(client, helpers, "good").get("good-v2-predictor") == 0)
        assert weights(client, helpers, "good")["good-v1-predictor"] == 100
        helpers.mark_ready(client, "good-v2")
        status = wait_phase(client, helpers, "good", "Promoted", timeout=60, stableVersion="2")
    finally:
        stop()

    assert canary_weights(status) == [10, 25, 50]
    assert status["previousVersion"] == "1" and "canaryVersion" not in status
    assert weights(client, helpers, "good") == {"good-v2-predictor": 100}
    assert aliases.alias("good-pair", "production") == "2"
    assert aliases.alias("good-pair", "previous") == "1"
    assert aliases.alias("good-pair", "canary") is None
    analysis = status["lastAnalysis"]
    assert analysis["verdict"] == "pass" and analysis["acceptanceRate"] >= 0.5
    assert analysis["numDraftTokens"] >= 40 and analysis["samples"] == analysis["numTargetSteps"] > 0
    queries = {item["name"]: item["query"] for item in analysis["queries"]}
    assert queries["num_draft_tokens"] == (
        "sum(increase(specops_spec_decode_num_draft_tokens_total"
        '{model_name="good-pair",pair_version="2",role="canary"}[2s]))'
    )
    conditions = {item["type"]: item for item in status["conditions"]}
    assert conditions["Promoted"]["status"] == "True" and conditions["Ready"]["status"] == "True"
    counts = audit_actions(audit_log, "ml/good")
    assert counts["rollout.start_canary"] == 1 and counts["rollout.set_weight"] == 2
    assert counts["rollout.promote"] == 2  # the first version, then the canary
    assert audit_log.verify().ok
    # The promoted canary keeps serving and rolls over to the stable role: production metrics say "stable".
    promoted = helpers.wait_for(
        lambda: (
            (isvc := client.get(kube.INFERENCE_SERVICES, helpers.namespace, "good-v2"))
            and isvc["metadata"]["labels"]["specops.io/role"] == "stable"
            and isvc
        ),
        message="promoted InferenceService in the stable role",
    )
    container = promoted["spec"]["predictor"]["containers"][0]
    assert container["args"][container["args"].index("--role") + 1] == "stable"

    # A page on the freshly promoted version (within the bake time) rolls back to the previous one.
    batch = alerts.annotate(
        "good",
        helpers.namespace,
        (Alert("SpecOpsAvailabilityBurn", "page", role=Role.STABLE, version="2"),),
        api=cluster.api(),
    )
    status = wait_phase(client, helpers, "good", "RolledBack", stableVersion="1")
    assert status["lastAlerts"]["id"] == batch and status["rejectedVersion"] == "2"
    assert weights(client, helpers, "good") == {"good-v1-predictor": 100}
    assert aliases.alias("good-pair", "production") == "1"
    helpers.wait_for(
        lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, "good-v2") is None,
        message="promoted-then-rolled-back InferenceService removed",
    )


def test_bad_canary_is_rolled_back_with_aliases_and_audit_and_stays_rolled_back(
    cluster: Any, operator: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    start_stable(client, helpers, "bad", "bad-pair", rollout=ROLLOUT)
    stop = exporter.feed(model="bad-pair", version="2", role="canary", **BAD)
    try:
        roll_out(client, helpers, "bad", "2")
        helpers.wait_for(lambda: weights(client, helpers, "bad").get("bad-v2-predictor") == 10, message="canary at 10%")
        # Watch the route: the rollback is applied when the canary leaves it.
        removed_at = helpers.wait_for(
            lambda: "bad-v2-predictor" not in weights(client, helpers, "bad") and time.time(),
            timeout=30,
            interval=0.02,
            message="canary removed from the route",
        )
        status = wait_phase(client, helpers, "bad", "RolledBack", stableVersion="1")
    finally:
        stop()

    verdict_at = status_.seconds(status["lastAnalysis"]["at"])
    assert 0 <= removed_at - verdict_at <= 2.0, f"verdict→rollback {removed_at - verdict_at:.3f}s"
    assert status["lastAnalysis"]["verdict"] == "fail"
    assert status["lastAnalysis"]["acceptanceRate"] < 0.5
    assert status["rejectedVersion"] == "2" and "canaryVersion" not in status
    assert weights(client, helpers, "bad") == {"bad-v1-predictor": 100}
    assert client.get(kube.INFERENCE_SERVICES, helpers.namespace, "bad-v2") is None
    assert aliases.alias("bad-pair", "production") == "1" and aliases.alias("bad-pair", "canary") is None
    assert ("bad-pair", "canary", "2") in aliases.moves and ("bad-pair", "canary", None) in aliases.moves
    conditions = {item["type"]: item for item in status["conditions"]}
    assert conditions["Degraded"]["status"] == "True" and conditions["Degraded"]["reason"] == "RolledBack"
    assert "acceptance_rate" in conditions["Degraded"]["message"]
    counts = audit_actions(audit_log, "ml/bad")
    assert counts["rollout.rollback"] == 1 and counts["rollout.rolled_back"] == 1

    time.sleep(4)  # two more intervals: the rejected version is not rolled out again
    assert status_of(client, helpers, "bad")["phase"] == "RolledBack"
    assert audit_actions(audit_log, "ml/bad")["rollout.start_canary"] == 1


def test_a_canary_whose_engine_stopped_drafting_is_rolled_back_on_tokens_per_step(
    cluster: Any, operator: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    start_stable(client, helpers, "quiet", "quiet-pair", rollout=ROLLOUT)
    stop = exporter.feed(model="quiet-pair", version="2", role="canary", **STOPPED)
    try:
        roll_out(client, helpers, "quiet", "2")
        status = wait_phase(client, helpers, "quiet", "RolledBack", timeout=40, stableVersion="1")
    finally:
        stop()
    analysis = status["lastAnalysis"]
    assert analysis["verdict"] == "fail" and analysis["numDraftTokens"] == 0
    assert analysis["tokensPerStep"] == 1.0 and analysis["numTargetSteps"] >= 200
    checks = {item["name"]: item for item in analysis["checks"]}
    assert checks["tokens_per_step"]["passed"] is False and checks["acceptance_rate"]["passed"] is None
    degraded = next(item for item in status["conditions"] if item["type"] == "Degraded")
    assert "tokens_per_step 1.000 (must be >= 1.1)" in degraded["message"]
    assert aliases.alias("quiet-pair", "production") == "1"
    assert audit_actions(audit_log, "ml/quiet")["rollout.rollback"] == 1


def test_a_canary_without_a_verdict_is_rolled_back_at_the_progress_deadline(
    cluster: Any, operator: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    rollout = {**ROLLOUT, "maxInconclusiveSeconds": 6}
    start_stable(client, helpers, "mute", "mute-pair", rollout=rollout)
    roll_out(client, helpers, "mute", "2")

    def waiting_message() -> str | None:
        status = status_of(client, helpers, "mute")
        progressing = next((c for c in status.get("conditions", []) if c["type"] == "Progressing"), {})
        return progressing.get("message") if "no verdict for" in progressing.get("message", "") else None

    assert "waiting for data: 0/5 requests" in helpers.wait_for(waiting_message, timeout=20, message="waiting")
    status = wait_phase(client, helpers, "mute", "RolledBack", timeout=40, stableVersion="1")
    degraded = next(item for item in status["conditions"] if item["type"] == "Degraded")
    assert degraded["message"].startswith("no verdict for ") and "progress deadline 6 s" in degraded["message"]
    rollbacks = [e for e in audit_log.events("ml/mute") if e.action == "rollout.rollback"]
    assert len(rollbacks) == 1 and "progress deadline" in json.loads(rollbacks[0].payload)["decision"]["reason"]
    assert aliases.alias("mute-pair", "production") == "1"


def test_operator_restarted_mid_rollout_finishes_it_without_duplicate_transitions(
    cluster: Any, dependencies: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    stop = exporter.feed(model="restart-pair", version="2", role="canary", **GOOD)
    try:
        with helpers.run_operator(cluster, dependencies):
            start_stable(client, helpers, "restart", "restart-pair", rollout=ROLLOUT)
            client.patch(kube.DEPLOYMENTS, helpers.namespace, "restart", {"spec": {"pair": {"version": "2"}}})
            helpers.wait_for(lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, "restart-v2"))
            helpers.mark_ready(client, "restart-v2")
            wait_phase(client, helpers, "restart", "Progressing", canaryWeight=25)
        stopped = status_of(client, helpers, "restart")
        assert stopped["phase"] == "Progressing"
        with helpers.run_operator(cluster, dependencies):
            status = wait_phase(client, helpers, "restart", "Promoted", timeout=40, stableVersion="2")
    finally:
        stop()
    assert canary_weights(status) == [10, 25, 50]
    transitions = [(item["from"], item["to"], item["weight"]) for item in status["history"]]
    assert transitions == [  # each decided once; a promotion is written, applied, then settled
        ("Pending", "Promoting", 0),
        ("Promoting", "Promoted", 0),
        ("Promoted", "Progressing", 10),
        ("Progressing", "Progressing", 25),
        ("Progressing", "Progressing", 50),
        ("Progressing", "Promoting", 0),
        ("Promoting", "Promoted", 0),
    ]
    counts = audit_actions(audit_log, "ml/restart")
    assert counts["rollout.start_canary"] == 1 and counts["rollout.set_weight"] == 2
    assert counts["rollout.promote"] == 2  # first version + canary, each once
    assert aliases.moves.count(("restart-pair", "production", "2")) == 1


def test_an_operator_that_dies_while_promoting_applies_the_same_promotion_after_restart(
    cluster: Any, dependencies: Any, helpers: Any, exporter: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    stop = exporter.feed(model="crash-pair", version="2", role="canary", **GOOD)
    set_alias = aliases.set_alias

    def dies_at_previous(pair: str, alias: str, version: str) -> None:
        if alias == "previous":  # the promotion's traffic is switched, its aliases half moved
            raise RuntimeError("the operator's process dies here")
        set_alias(pair, alias, version)

    try:
        with helpers.run_operator(cluster, dependencies):
            start_stable(client, helpers, "crash", "crash-pair", rollout={**ROLLOUT, "steps": [50, 100]})
            aliases.set_alias = dies_at_previous
            client.patch(kube.DEPLOYMENTS, helpers.namespace, "crash", {"spec": {"pair": {"version": "2"}}})
            helpers.wait_for(lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, "crash-v2"))
            helpers.mark_ready(client, "crash-v2")
            dead = wait_phase(client, helpers, "crash", "Promoting", stableVersion="2", previousVersion="1")
        aliases.set_alias = set_alias
        with helpers.run_operator(cluster, dependencies):
            status = wait_phase(client, helpers, "crash", "Promoted", stableVersion="2")
    finally:
        stop()
    assert dead["conditions"][1]["reason"] == "CanaryPromoting"
    transitions = [(item["from"], item["to"]) for item in status["history"]]
    assert transitions[-3:] == [("Promoted", "Progressing"), ("Progressing", "Promoting"), ("Promoting", "Promoted")]
    assert (aliases.alias("crash-pair", "production"), aliases.alias("crash-pair", "previous")) == ("2", "1")
    assert aliases.alias("crash-pair", "canary") is None
    reasons = [
        json.loads(event.payload)["decision"]["reason"]
        for event in audit_log.events("ml/crash")
        if event.action == "rollout.promote"
    ]
    assert reasons[-1] == "promotion not yet confirmed; applying again"
    assert weights(client, helpers, "crash") == {"crash-v2-predictor": 100}


def test_manual_actions_and_a_canary_page_are_acknowledged_in_status(
    cluster: Any, operator: Any, helpers: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    api = cluster.api()
    start_stable(client, helpers, "manual", "manual-pair", rollout=ROLLOUT)
    client.patch(kube.DEPLOYMENTS, helpers.namespace, "manual", {"spec": {"pair": {"version": "2"}}})
    helpers.wait_for(lambda: client.get(kube.INFERENCE_SERVICES, helpers.namespace, "manual-v2"))
    helpers.mark_ready(client, "manual-v2")
    status = wait_phase(client, helpers, "manual", "Progressing", canaryWeight=10)

    request_id = actions.request("manual", helpers.namespace, "pause", api=api)
    status = wait_phase(client, helpers, "manual", "Paused")
    assert status["lastAction"]["id"] == request_id and status["lastAction"]["action"] == "pause"
    helpers.wait_for(
        lambda: (
            "specops.io/action"
            not in (client.get(kube.DEPLOYMENTS, helpers.namespace, "manual")["metadata"].get("annotations") or {})
        ),
        message="action annotation removed",
    )
    time.sleep(2.5)  # no analysis while paused (no data would mean waiting anyway, but nothing moves)
    assert status_of(client, helpers, "manual")["phase"] == "Paused"
    actions.request("manual", helpers.namespace, "resume", api=api)
    wait_phase(client, helpers, "manual", "Progressing")

    with pytest.raises(Exception, match="unknown action"):
        actions.request("manual", helpers.namespace, "explode", api=api)

    # No traffic at all: too little data means waiting, never promoting or aborting.
    status = helpers.wait_for(
        lambda: (found := status_of(client, helpers, "manual")).get("lastAnalysis") and found,
        message="an analysis after resuming",
    )
    assert status["lastAnalysis"]["verdict"] == "inconclusive"
    assert status["canaryWeight"] == 10

    alerts.annotate(
        "manual", helpers.namespace, (Alert("SpecOpsCanaryErrorBurn", "page", role=Role.CANARY, version="2"),), api=api
    )
    status = wait_phase(client, helpers, "manual", "RolledBack", stableVersion="1")
    assert "page alert SpecOpsCanaryErrorBurn" in status["history"][-2]["reason"]
    assert weights(client, helpers, "manual") == {"manual-v1-predictor": 100}
    assert audit_actions(audit_log, "ml/manual")["rollout.rollback"] == 1


def test_serverless_mode_uses_canary_traffic_percent_and_deletion_cleans_up(
    cluster: Any, operator: Any, helpers: Any, aliases: Any, audit_log: Any
) -> None:
    client = cluster.client()
    start_stable(client, helpers, "knative", "knative-pair", deploymentMode="Serverless", rollout=ROLLOUT)
    isvc = client.get(kube.INFERENCE_SERVICES, helpers.namespace, "knative")
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert client.get(kube.HTTP_ROUTES, helpers.namespace, "knative") is None

    client.patch(kube.DEPLOYMENTS, helpers.namespace, "knative", {"spec": {"pair": {"version": "2"}}})
    isvc = helpers.wait_for(
        lambda: (
            (found := client.get(kube.INFERENCE_SERVICES, helpers.namespace, "knative"))
            and found["spec"]["predictor"].get("canaryTrafficPercent") == 10
            and found
        )
    )
    args = isvc["spec"]["predictor"]["containers"][0]["args"]
    assert args[args.index("--pair-version") + 1] == "2"
    assert aliases.alias("knative-pair", "canary") == "2"

    actions.request("knative", helpers.namespace, "promote", api=cluster.api())
    wait_phase(client, helpers, "knative", "Promoted", stableVersion="2")
    isvc = client.get(kube.INFERENCE_SERVICES, helpers.namespace, "knative")
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert aliases.alias("knative-pair", "production") == "2"

    # A new canary, then the deployment is deleted mid-rollout: the finalizer drops the canary alias.
    client.patch(kube.DEPLOYMENTS, helpers.namespace, "knative", {"spec": {"pair": {"version": "3"}}})
    wait_phase(client, helpers, "knative", "Progressing", canaryVersion="3")
    assert aliases.alias("knative-pair", "canary") == "3"
    client.delete(kube.DEPLOYMENTS, helpers.namespace, "knative")
    helpers.wait_for(
        lambda: client.get(kube.DEPLOYMENTS, helpers.namespace, "knative") is None,
        message="deployment deleted after its finalizer ran",
    )
    assert aliases.alias("knative-pair", "canary") is None
    assert audit_actions(audit_log, "ml/knative")["deployment.deleted"] == 1


def test_manual_rollback_works_while_prometheus_is_down_and_analysis_waits(
    cluster: Any, helpers: Any, aliases: Any, audit_log: Any
) -> None:
    """One reconcile at a time, without kopf: the analysis reports Degraded, the rollback still happens."""
    import httpx

    from specops_operator import constants, reconcile, status_store

    client = cluster.client()
    body = helpers.deployment("dark", pair="dark-pair", version="1", rollout=ROLLOUT)
    client.create(kube.DEPLOYMENTS, helpers.namespace, body)
    clock = [1_800_000_000.0]
    with httpx.Client(timeout=1.0) as http:
        dependencies = reconcile.Dependencies(
            kube=client,
            http=http,
            prometheus_url="http://127.0.0.1:9",
            versions=aliases,
            audit=audit_log,
            clock=lambda: clock[0],
        )
        memory = status_store.Memory()

        def step(**annotations: str) -> reconcile.Outcome:
            found = client.get(kube.DEPLOYMENTS, helpers.namespace, "dark")
            found["metadata"].setdefault("annotations", {}).update(annotations)
            clock[0] += 3
            return reconcile.reconcile(dependencies, reconcile.View.of(found), memory, ready=lambda ns, name: True)

        assert step().decision.kind.value == "promote"
        client.patch(kube.DEPLOYMENTS, helpers.namespace, "dark", {"spec": {"pair": {"version": "2"}}})
        assert step().decision.kind.value == "start_canary"
        outcome = step()  # the analysis is due: Prometheus does not answer
        assert outcome.decision is None and outcome.status["phase"] == "Progressing"
        degraded = next(item for item in outcome.status["conditions"] if item["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "MetricsUnavailable"
        outcome = step(**{constants.ACTION_ANNOTATION: "rollback", constants.ACTION_ID_ANNOTATION: "r-1"})
    assert outcome.decision.kind.value == "rollback" and outcome.status["phase"] == "RolledBack"
    assert outcome.status["lastAction"]["id"] == "r-1"
    assert weights(client, helpers, "dark") == {"dark-v1-predictor": 100}
    assert "specops.io/action" not in (
        client.get(kube.DEPLOYMENTS, helpers.namespace, "dark")["metadata"].get("annotations") or {}
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"pair": {"name": "p", "version": "1"}, "rollout": {"steps": [50, 25, 100]}},
            "spec.rollout.steps must be strictly increasing",
        ),
        (
            {"pair": {"name": "p", "version": "1"}, "rollout": {"thresholds": {"minAcceptanceRate": 1.5}}},
            "spec.rollout.thresholds.minAcceptanceRate must be <= 1",
        ),
        ({"runtime": {"type": "tgi"}}, "spec.pair is required"),
    ],
    ids=["steps-not-increasing", "acceptance-above-one", "pair-missing"],
)
def test_invalid_specs_are_rejected_with_a_clear_condition(
    cluster: Any, operator: Any, helpers: Any, spec: dict[str, Any], message: str
) -> None:
    client = cluster.client()
    body = helpers.deployment("broken", pair="p")
    body["spec"] = spec
    client.create(kube.DEPLOYMENTS, helpers.namespace, body)
    status = wait_phase(client, helpers, "broken", "Failed")
    ready = next(item for item in status["conditions"] if item["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert message in ready["message"] and message in status["message"]
    assert client.list(kube.INFERENCE_SERVICES, helpers.namespace) == []
