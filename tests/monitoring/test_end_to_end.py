"""End to end against real Prometheus and Alertmanager (Debian's binaries, started here on loopback).

A deployment serves a good pair version; a version with a mismatched draft is rolled out as a canary;
Prometheus evaluates the SLO rules generated from ``testdata/in-short-windows.yaml`` (windows of
seconds), the acceptance-rate page fires, Alertmanager delivers it to the receiver (bearer token), the
receiver records the incident and hands the alert to the real rollout controller, whose automatic
policy rolls the canary back. The canary analysis is disabled (it never has enough data), so the
rollback can only come from the alert. Then every PromQL expression of the rules and the dashboards
is executed against that Prometheus and must return data.

The serving side here is a stand-in (``fleet.py``): exporter servers counting simulated requests with
the serving runtime's own telemetry class, so that every SLO can be driven into and out of breach on
purpose and every rule and dashboard expression checked for data. ``test_end_to_end_local.py`` runs the
acceptance path with the real local runtime and ``specops serve`` processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from specops.governance import models
from specops.governance.audit import AuditLog
from specops.monitoring import dashboards, drift, drift_gauges, receiver, slo_spec, writer
from specops.rollout.controller import RolloutController
from specops.rollout.model import Alert, Decision, DecisionKind, Phase, Role, RolloutPolicy, RolloutState, WindowMetrics
from tests.support import prometheus_services as services
from tests.support.exporter_fleet import Behaviour, ExporterFleet, ExporterServer, TrafficDriver
from tests.support.monitoring_data import TESTDATA
from tests.support.polling import wait_for

pytestmark = pytest.mark.slow

TOKEN = "e2e-bearer-token"
DEPLOYMENT = "chat"
GOOD, MISMATCHED = "1", "2"
ROLLBACK_BUDGET_S = 60.0
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$model_name": ".*", "$draft_cost_ratio": "0.1", "$event_window": "5s"}


class NoAnalysis:
    """A MetricsSource that never has enough data: the canary analysis stays inconclusive."""

    def window(self, *, role: Role, version: str, seconds: float) -> WindowMetrics:
        return WindowMetrics()


@dataclass
class MemoryAliases:
    aliases: dict[str, str] = field(default_factory=dict)

    def set_alias(self, pair: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_alias(self, pair: str, alias: str) -> None:
        self.aliases.pop(alias, None)


@dataclass
class MemoryStates:
    states: dict[str, RolloutState] = field(default_factory=dict)

    def load(self, deployment: str) -> RolloutState | None:
        return self.states.get(deployment)

    def save(self, state: RolloutState) -> None:
        self.states[state.deployment] = state


@dataclass
class ControllerSink:
    """The receiver's sink: one controller tick per notification, as the local runtime does."""

    controller: RolloutController
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, tuple[Alert, ...], Decision | None, float]] = field(default_factory=list)
    rolled_back_at: float | None = None

    def __call__(self, deployment: str, alerts: tuple[Alert, ...]) -> None:
        if deployment != self.controller.deployment:
            self.calls.append((deployment, alerts, None, time.time()))
            return
        with self.lock:
            decision = self.controller.tick(now=time.time(), alerts=alerts)
            done = time.time()
            self.calls.append((deployment, alerts, decision, done))
            if decision.kind is DecisionKind.ROLLBACK and self.controller.state().phase is Phase.ROLLED_BACK:
                self.rolled_back_at = self.rolled_back_at or done


@pytest.fixture
def stack(tmp_path: Path, store) -> Iterator[dict[str, object]]:  # type: ignore[no-untyped-def]
    audit = AuditLog(store)
    rules_dir = tmp_path / "rules"
    writer.render_to(rules_dir, slo_spec.load(TESTDATA / "in-short-windows.yaml"))
    metrics_dir = tmp_path / "metrics"
    # The drift monitor's gauges for a second deployment, as `specops drift run` leaves them.
    gauges = drift_gauges.DriftGauges()
    gauges.publish(
        drift.DriftResult(
            drifted=True,
            drift_share=0.5,
            drifted_share=0.6,
            reference_rows=300,
            current_rows=300,
            columns=(
                drift.ColumnDrift("prompt", "Percentile text content drift", 0.99, "roc_auc", 0.95, True),
                drift.ColumnDrift("prompt_tokens", "K-S p_value", 0.001, "p_value", 0.05, True),
            ),
        ),
        deployment="legacy",
        version="9",
        at=time.time(),
    )
    gauges.write(metrics_dir / "drift-legacy.prom")

    # A second, unmanaged deployment that breaks availability and latency, and whose engine does not
    # draft at all (so those alerts and the tokens-per-step page have data).
    legacy = ExporterServer(
        "legacy", "9", "stable", Behaviour(position_acceptance=0.8, internal_error_rate=0.3, itl_s=1.0, drafting=False)
    )
    fleet = ExporterFleet(
        deployment=DEPLOYMENT,
        targets_file=tmp_path / "targets.json",
        extra=[legacy],
        behaviours={GOOD: Behaviour(position_acceptance=0.8), MISMATCHED: Behaviour(position_acceptance=0.05)},
    )
    aliases = MemoryAliases()
    controller = RolloutController(
        deployment=DEPLOYMENT,
        pair="demo",
        serving=fleet,
        metrics=NoAnalysis(),
        aliases=aliases,
        audit=audit,
        states=MemoryStates(),
        policy=RolloutPolicy(steps=(25, 50, 100), analysis_interval_s=5, min_draft_tokens=10**12, automatic=True),
    )
    sink = ControllerSink(controller)
    app = receiver.create_app(token=TOKEN, sink=sink, store=store, audit=audit, textfile_dir=metrics_dir)
    web = services.ASGIServer(app).start()
    started: list[services.Service] = []
    traffic = None
    try:
        am = services.alertmanager(tmp_path, webhook_url=f"{web.url}{receiver.WEBHOOK_PATH}", token=TOKEN).start()
        started.append(am)
        controller.begin(GOOD, now=time.time())
        prom = services.prometheus(
            tmp_path,
            rules=rules_dir / "rules.yaml",
            targets_file=tmp_path / "targets.json",
            static_targets=[f"127.0.0.1:{web.port}"],
            alertmanager_port=am.port,
        ).start()
        started.append(prom)
        traffic = TrafficDriver(fleet, rate=40).start()
        yield {
            "prometheus": prom,
            "alertmanager": am,
            "fleet": fleet,
            "controller": controller,
            "sink": sink,
            "aliases": aliases,
            "audit": audit,
            "store": store,
            "rules": rules_dir / "rules.yaml",
            "started_at": time.time(),
        }
    finally:
        if traffic is not None:
            traffic.stop()
        for service in reversed(started):
            service.stop()
        web.stop()
        fleet.shutdown()


def test_a_mismatched_canary_is_rolled_back_by_its_acceptance_alert(stack: dict[str, object]) -> None:
    prom: services.Service = stack["prometheus"]  # type: ignore[assignment]
    fleet: ExporterFleet = stack["fleet"]  # type: ignore[assignment]
    controller: RolloutController = stack["controller"]  # type: ignore[assignment]
    sink: ControllerSink = stack["sink"]  # type: ignore[assignment]
    audit: AuditLog = stack["audit"]  # type: ignore[assignment]
    t0 = float(stack["started_at"])  # type: ignore[arg-type]

    # The good version is scraped and its acceptance SLI recorded; it raises no alert.
    good = 'slo:sli_error:ratio_rate20s{slo="acceptance-rate", deployment="chat", role="stable"}'
    wait_for(lambda: services.query(prom.url, good), timeout=40, message="the stable version's acceptance SLI")
    [sample] = services.query(prom.url, good)
    assert 0.3 < float(sample["value"][1]) < 0.55  # acceptance ≈ 0.59
    assert services.query(prom.url, 'ALERTS{deployment="chat"}') == []

    # Roll out the mismatched draft as a canary at 25 %.
    decision = controller.begin(MISMATCHED, now=time.time())
    assert decision.kind is DecisionKind.START_CANARY
    canary = fleet.servers[Role.CANARY]
    first_bad = wait_for(lambda: canary.first_request_at, timeout=10, message="the canary's first request")

    try:
        wait_for(lambda: sink.rolled_back_at, timeout=90, message="the alert-driven rollback")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_diagnose(stack)}") from None
    elapsed = sink.rolled_back_at - first_bad  # type: ignore[operator]
    print(f"\nfirst bad request → rollback complete: {elapsed:.1f} s")
    (Path(prom.log).parent / "rollback-seconds.json").write_text(json.dumps({"seconds": elapsed}))
    assert elapsed <= ROLLBACK_BUDGET_S

    # The rollback happened because of the page on the canary, and left the stable version serving.
    state = controller.state()
    assert (state.phase, state.stable_version, state.canary_version) == (Phase.ROLLED_BACK, GOOD, None)
    assert stack["aliases"].aliases == {"production": GOOD}  # type: ignore[attr-defined]
    assert Role.CANARY not in fleet.servers and canary in fleet.retired
    trigger = next(call for call in sink.calls if call[2] is not None and call[2].kind is DecisionKind.ROLLBACK)
    assert any(
        a.name == "SpecOpsAcceptanceRateBudgetBurn"
        and a.severity == "page"
        and a.role is Role.CANARY
        and a.version == MISMATCHED
        for a in trigger[1]
    )

    # Every step is on record: incident, alert rows, audit events, an intact chain.
    with stack["store"].session() as session:  # type: ignore[attr-defined]
        incidents = session.query(models.Incident).filter_by(deployment=DEPLOYMENT).all()
        assert incidents and incidents[0].severity == "page"
        names = {a.name for a in session.query(models.Alert).filter(models.Alert.labels.isnot(None))}
        assert "SpecOpsAcceptanceRateBudgetBurn" in names
    actions = [e.action for e in audit.events(subject=DEPLOYMENT)]
    for action in ("alert.received", "incident.opened", "alert.forwarded", "rollout.rollback", "rollout.rolled_back"):
        assert action in actions, actions
    assert actions.index("alert.forwarded") > actions.index("incident.opened")
    assert audit.verify().ok

    # The other deployment's alerts arrived too (mapped by label, no controller to act on them).
    wait_for(
        lambda: (
            {a.name for d, alerts, _, _ in sink.calls if d == "legacy" for a in alerts}
            >= {
                "SpecOpsAvailabilityBudgetBurn",
                "SpecOpsLatencyBudgetBurn",
                "SpecOpsTrafficDrift",
                "SpecOpsTokensPerStepBudgetBurn",
            }
        ),
        timeout=30,
        message="the legacy deployment's availability, latency, tokens-per-step and drift alerts",
    )

    # Let the canary's series go stale so the "canary removed" annotation has its moment, then run every
    # expression of the rules and the dashboards over the whole test.
    time.sleep(7)
    end = time.time()
    rule_exprs = [
        (f"rule {r.get('record') or r.get('alert')} ({g['name']})", r["expr"])
        for g in yaml.safe_load(Path(stack["rules"]).read_text())["groups"]
        for r in g["rules"]
    ]  # type: ignore[arg-type]
    board_exprs = [(where, _substitute(expr)) for where, expr in dashboards.expressions()]
    empty = [
        where
        for where, expr in [*rule_exprs, *board_exprs]
        if not services.query_range(prom.url, expr, start=t0, end=end, step=1)
    ]
    assert not empty, f"expressions without data: {empty}"
    assert len(rule_exprs) >= 30 and len(board_exprs) >= 15


def _diagnose(stack: dict[str, object]) -> str:
    """What each hop saw, for a failure message."""
    import httpx

    prom: services.Service = stack["prometheus"]  # type: ignore[assignment]
    am: services.Service = stack["alertmanager"]  # type: ignore[assignment]
    sink: ControllerSink = stack["sink"]  # type: ignore[assignment]
    alerts = [a["metric"] for a in services.query(prom.url, "ALERTS")]
    targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    am_alerts = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
    return (
        f"prometheus ALERTS: {alerts}\ntargets: {[(t['scrapeUrl'], t['health']) for t in targets]}\n"
        f"alertmanager: {[a['labels'] for a in am_alerts]}\nsink calls: {sink.calls}\n"
        f"prometheus log: {prom.tail()}\nalertmanager log: {am.tail()}"
    )


def _substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr
