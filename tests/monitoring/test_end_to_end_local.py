"""End to end with the real serving runtime: the local runtime (``specops.local``) runs ``specops serve``
processes with the demo pairs behind its router. v1 pairs the target with its good draft at a fixed k;
v2 pairs it with the draft trained on prose under adaptive speculation, whose engine measures that
this draft does not pay and stops drafting — a canary an acceptance-based judge cannot see,
because it has no draft tokens left to judge.

* by the alert: Prometheus (Debian) scrapes the servers and evaluates the SLO rules with windows of
  seconds; the tokens-per-step page on the canary goes through Alertmanager to the receiver, which
  hands it to the runtime's rollout controller (its own analysis switched off); the automatic policy
  rolls back;
* by the analysis: the runtime's canary analysis (no Prometheus) fails the canary on its tokens per
  target step, and against the stable's on the same window, and rolls it back.

The demo pairs are trained once per machine and cached (a few minutes the first time).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from specops.governance.audit import AuditLog
from specops.governance.store import open_store
from specops.monitoring import receiver, slo_spec, writer
from specops.rollout.model import Alert, DecisionKind, Phase, Role, RolloutPolicy
from tests.support import prometheus_services as services
from tests.support.monitoring_data import TESTDATA
from tests.support.polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

TOKEN = "local-e2e-token"
DEPLOYMENT = "demo"
PAIR = "stdlib-coder"
ROLLBACK_BUDGET_S = 60.0
ALERT_ONLY = RolloutPolicy(
    steps=(50, 100), analysis_interval_s=5.0, min_draft_tokens=10**12, min_requests=10**9, automatic=True
)
"""The runtime's own analysis never has enough data: only the alert can roll back."""
ANALYSIS = RolloutPolicy(
    steps=(50, 100), analysis_interval_s=4.0, min_requests=4, min_target_steps=100, min_draft_tokens=64
)
"""The product's thresholds, with windows of seconds."""
GOOD_CONFIG = {"speculation": {"num_speculative_tokens": 3, "adaptive": False}}
STOPS_DRAFTING = {"speculation": {"num_speculative_tokens": 3, "adaptive": True}}


@dataclass
class RuntimeSink:
    """The receiver's sink for the local runtime: one controller tick per notification."""

    runtime: object
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, tuple[Alert, ...], str]] = field(default_factory=list)
    rolled_back_at: float | None = None

    def __call__(self, deployment: str, alerts: tuple[Alert, ...]) -> None:
        controller = self.runtime.controller  # type: ignore[attr-defined]
        if deployment != controller.deployment:
            return
        with self.lock:
            decision = controller.tick(now=time.time(), alerts=alerts)
            self.calls.append((deployment, alerts, decision.kind.value))
            if decision.kind is DecisionKind.ROLLBACK and controller.state().phase is Phase.ROLLED_BACK:
                self.rolled_back_at = self.rolled_back_at or time.time()


class TargetPublisher:
    """Writes the runtime's servers as a Prometheus file_sd file, twice a second (service discovery)."""

    def __init__(self, runtime: object, path: Path) -> None:
        self.runtime, self.path = runtime, path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="targets", daemon=True)
        self.publish()

    def publish(self) -> None:
        targets = [
            {"targets": [t.url.removeprefix("http://")], "labels": {"deployment": DEPLOYMENT}}
            for t in self.runtime.backend.targets()
        ]  # type: ignore[attr-defined]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        os.replace(tmp, self.path)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.publish()

    def start(self) -> TargetPublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _tokens_per_step_slo() -> slo_spec.SLOSpec:
    """The short-window tokens-per-step SLO alone (latency on a loaded CPU is not under test)."""
    import yaml

    raw = yaml.safe_load((TESTDATA / "in-short-windows.yaml").read_text())
    raw["slos"] = [slo for slo in raw["slos"] if slo["sli"]["kind"] == "tokens_per_step"]
    return slo_spec.parse(yaml.safe_dump(raw), source="in-short-windows.yaml (tokens per step)")


@pytest.fixture(scope="module")
def demo_pairs():  # type: ignore[no-untyped-def]
    from specops.pairs.demo import train_demo_pairs

    return train_demo_pairs(progress=False)


def _open_runtime(tmp_path: Path, demo_pairs, policy: RolloutPolicy, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The local runtime with v1 (good draft, fixed k) and v2 (prose draft, adaptive) registered."""
    from specops.local.wiring import LocalDeployment
    from specops.pairs.demo import demo_prompts
    from specops.settings import Settings

    for variable in ("SPECOPS_DATABASE_URL", "MLFLOW_TRACKING_URI", "SPECOPS_HOME"):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings.from_env(home=tmp_path / ".specops")
    runtime = LocalDeployment.open(settings, deployment=DEPLOYMENT, pair=PAIR, policy=policy)
    # Both are registered with their figures recorded, not judged (the qualification gate is not under
    # test), on a few held-out prompts to keep the test short.
    prompts = demo_prompts(8, 48)
    good, bad = (
        runtime.registry.register(
            PAIR, target=demo_pairs.target, draft=draft, min_acceptance=0.0, prompts=prompts, note=note, config=config
        )
        for draft, note, config in (
            (demo_pairs.draft, "draft trained on code and on the target's writing", GOOD_CONFIG),
            (demo_pairs.draft_mismatched, "draft trained on prose (mismatched), adaptive", STOPS_DRAFTING),
        )
    )
    return settings, runtime, good, bad


@pytest.fixture
def runtime_stack(tmp_path: Path, demo_pairs, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:  # type: ignore[no-untyped-def]
    settings, runtime, good, bad = _open_runtime(tmp_path, demo_pairs, ALERT_ONLY, monkeypatch)
    store = open_store(settings.database_url)
    audit = AuditLog(store)
    sink = RuntimeSink(runtime)
    rules_dir = tmp_path / "rules"
    writer.render_to(rules_dir, _tokens_per_step_slo())
    web = services.ASGIServer(receiver.create_app(token=TOKEN, sink=sink, store=store, audit=audit)).start()
    started: list[object] = []
    try:
        am = services.alertmanager(tmp_path, webhook_url=f"{web.url}{receiver.WEBHOOK_PATH}", token=TOKEN).start()
        started.append(am)
        runtime.start()
        started.append(runtime)
        runtime.controller.begin(good.version, now=time.time())
        publisher = TargetPublisher(runtime, tmp_path / "targets.json").start()
        started.append(publisher)
        prom = services.prometheus(
            tmp_path,
            rules=rules_dir / "rules.yaml",
            targets_file=tmp_path / "targets.json",
            static_targets=[f"127.0.0.1:{web.port}"],
            alertmanager_port=am.port,
        ).start()
        started.append(prom)
        yield {"runtime": runtime, "good": good, "bad": bad, "sink": sink, "prometheus": prom, "audit": audit}
    finally:
        for item in reversed(started):
            item.stop()  # type: ignore[attr-defined]
        web.stop()
        store.dispose()


def _traffic(runtime):  # type: ignore[no-untyped-def]
    from specops.local.traffic import ClosedLoopTraffic
    from specops.pairs.demo import demo_prompts

    return ClosedLoopTraffic(
        url=runtime.router.url, model=PAIR, prompts=demo_prompts(32, 48), clients=4, max_tokens=48
    ).start()


def test_a_canary_that_stopped_drafting_is_rolled_back_by_its_tokens_per_step_page(
    runtime_stack: dict[str, object],
) -> None:
    runtime = runtime_stack["runtime"]
    sink: RuntimeSink = runtime_stack["sink"]  # type: ignore[assignment]
    prom: services.Service = runtime_stack["prometheus"]  # type: ignore[assignment]
    good, bad = runtime_stack["good"], runtime_stack["bad"]
    traffic = _traffic(runtime)
    try:
        stable = f'slo:sli_error:ratio_rate20s{{slo="tokens-per-step", deployment="{DEPLOYMENT}", role="stable"}}'
        [sample] = wait_for(
            lambda: services.query(prom.url, stable), timeout=90, message="the stable's tokens-per-step SLI"
        )
        runtime.controller.begin(bad.version, now=time.time())
        first_bad = wait_for(
            lambda: runtime.router.upstreams.first_canary_request_at, timeout=60, message="the canary's first request"
        )
        wait_for(lambda: sink.rolled_back_at, timeout=120, message="the alert-driven rollback")
    finally:
        traffic.stop()
    elapsed = sink.rolled_back_at - first_bad  # type: ignore[operator]
    print(f"\n[real runtime, alert] first bad request → rollback complete: {elapsed:.1f} s")
    assert elapsed <= ROLLBACK_BUDGET_S
    assert 1 / float(sample["value"][1]) > 1.5, "the stable pair should gain well over 1.5 tokens per target step"

    state = runtime.controller.state()
    assert (state.phase, state.stable_version) == (Phase.ROLLED_BACK, good.version)
    assert runtime.registry.alias(PAIR, "production") == good.version
    assert runtime.registry.alias(PAIR, "canary") is None
    rollback = next(call for call in sink.calls if call[2] == "rollback")
    assert any(
        a.name == "SpecOpsTokensPerStepBudgetBurn"
        and a.severity == "page"
        and a.role is Role.CANARY
        and a.version == bad.version
        for a in rollback[1]
    ), sink.calls
    actions = [e.action for e in runtime_stack["audit"].events(subject=DEPLOYMENT)]  # type: ignore[attr-defined]
    for action in ("alert.received", "incident.opened", "alert.forwarded", "rollout.rollback", "rollout.rolled_back"):
        assert action in actions
    assert runtime_stack["audit"].verify().ok  # type: ignore[attr-defined]


def test_a_canary_that_stopped_drafting_is_rolled_back_by_the_analysis(
    tmp_path: Path, demo_pairs, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _, runtime, good, bad = _open_runtime(tmp_path, demo_pairs, ANALYSIS, monkeypatch)
    runtime.start()
    try:
        runtime.controller.begin(good.version, now=time.time())
        traffic = _traffic(runtime)
        try:
            time.sleep(4)
            runtime.controller.begin(bad.version, now=time.time())
            first_bad = wait_for(
                lambda: runtime.router.upstreams.first_canary_request_at,
                timeout=60,
                message="the canary's first request",
            )
            decisions = []

            def rolled_back() -> bool:
                time.sleep(ANALYSIS.analysis_interval_s)
                decisions.append(runtime.controller.tick(now=time.time()))
                return runtime.controller.state().phase is Phase.ROLLED_BACK

            wait_for(rolled_back, timeout=120, message="the analysis' rollback")
            elapsed = time.time() - first_bad
        finally:
            traffic.stop()
    finally:
        runtime.stop()
    print(f"\n[real runtime, analysis] first bad request → rollback complete: {elapsed:.1f} s")
    assert elapsed <= ROLLBACK_BUDGET_S
    [rollback] = [d for d in decisions if d.kind is DecisionKind.ROLLBACK]
    assert rollback.analysis is not None and rollback.analysis.metrics is not None
    canary = rollback.analysis.metrics
    assert canary.num_target_steps >= ANALYSIS.min_target_steps and canary.tokens_per_step is not None
    assert canary.tokens_per_step < 1.1, canary
    assert "tokens_per_step" in rollback.reason
    compared = {c.name: c for c in rollback.analysis.checks}
    assert compared["tokens_per_step_vs_stable"].passed is False, rollback.analysis.checks
    assert runtime.registry.alias(PAIR, "production") == good.version
    assert runtime.controller.state().stable_version == good.version
