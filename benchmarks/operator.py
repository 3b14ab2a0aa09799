"""Operator control-loop benchmark: one operator process holding N SpeculativeDeployments mid-rollout.

Three processes besides this one: kmock's Kubernetes emulator, a real Prometheus (Debian package)
scraping an exporter run here, and the operator (``handlers.register`` + ``kopf.run``, as
``python -m specops_operator`` runs it, with in-memory aliases, a SQLite audit log and logging at
WARNING). The deployments are created as a restarted operator finds them (version 1 promoted in
status, version 2 wanted); the operator starts every canary, the script plays KServe (Ready). Every
canary's analysis (every ``--interval`` seconds) stays inconclusive (its minimum sample count is never
reached), so each one queries Prometheus and patches its status every interval: the steady-state cost
of holding them. The emulator runs with :func:`tests.support.kubernetes_emulator.speed_up_kmock`. Measured on
the operator process only:

* cpu_fraction: (user + system CPU seconds) / wall seconds over ``--measure`` seconds (1.0 = one core);
* rss_mib: resident memory at the end of the window (peak in ``rss_peak_mib``);
* verdict_to_rollback_s: for ``--bad`` extra deployments fed a bad canary, the time from the analysis
  that decides the rollback (``status.lastAnalysis.at``) to the route without the canary being visible
  in the API (polled every 20 ms), worst case.

Writes ``benchmarks/results/operator.json`` and prints a table.

Run from the repository root: ``python -m benchmarks.operator``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from specops.local.servers import free_port
from tests.support import deployment_manifests
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the child processes run ``python -m benchmarks.operator`` from it."""

RESULTS = Path(__file__).resolve().parent / "results" / "operator.json"
NAMESPACE = "bench"


# ----------------------------------------------------------------------------- child: emulator


def serve_emulator(port: int) -> None:
    import logging

    from tests.support.kubernetes_emulator import EmulatedCluster

    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    with EmulatedCluster(port):
        print("ready", flush=True)
        threading.Event().wait()


# ----------------------------------------------------------------------------- child: operator


def serve_operator(api_url: str, prometheus_url: str, audit_db: str) -> None:
    import logging

    import httpx
    import kopf

    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops_operator import handlers, kube, reconcile
    from specops_operator.registry import MemoryAliases

    logging.basicConfig(level=logging.WARNING)
    dependencies = reconcile.Dependencies(
        kube=kube.KubeClient(kube.api_client(host=api_url)),
        http=httpx.Client(timeout=10),
        prometheus_url=prometheus_url,
        versions=MemoryAliases(),
        audit=AuditLog(open_store(f"sqlite:///{audit_db}")),
    )
    registry = kopf.OperatorRegistry()
    handlers.register(registry, dependencies)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api_url, insecure=True)

    settings = handlers.settings(posting=False)
    kopf.run(registry=registry, settings=settings, standalone=True, clusterwide=True)


# ----------------------------------------------------------------------------- parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def body(name: str, *, pair: str, interval: float, min_tokens: int) -> dict[str, Any]:
    """A SpeculativeDeployment of ``pair`` version 1 whose canary analysis runs every ``interval`` seconds."""
    return deployment_manifests.speculative_deployment(
        name,
        namespace=NAMESPACE,
        pair=pair,
        rollout={
            "analysisIntervalSeconds": interval,
            "minDraftTokens": min_tokens,
            "minRequests": 1,
            "failureLimit": 1,
            "thresholds": {"minAcceptanceRate": 0.5},
        },
    )


def promoted_state(client: Any, name: str, *, pair: str, interval: float, min_tokens: int) -> None:
    """Create a deployment whose status says version 1 is promoted, wanting version 2, with v1 Ready."""
    from specops.rollout.model import Phase, RolloutState
    from specops_operator import builders, deployment_spec, kube
    from specops_operator import status as status_

    manifest = body(name, pair=pair, interval=interval, min_tokens=min_tokens)
    manifest["spec"]["pair"]["version"] = "2"
    state = RolloutState(
        deployment=f"{NAMESPACE}/{name}", pair=pair, stable_version="1", phase=Phase.PROMOTED, promoted_at=time.time()
    )
    manifest["status"] = status_.render(state, revision=1, conditions=[], previous=None)
    client.create(kube.DEPLOYMENTS, NAMESPACE, manifest)
    owner = builders.Owner(name=name, namespace=NAMESPACE, uid=manifest["metadata"]["uid"])
    isvc = builders.inference_service(
        owner=owner,
        spec=deployment_spec.parse(manifest["spec"]),
        version="1",
        role="stable",
        source=builders.PairSource(storage_uri=f"s3://pairs/{pair}/1"),
    )
    isvc["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    client.create(kube.INFERENCE_SERVICES, NAMESPACE, isvc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--measure", type=float, default=60.0, help="seconds of steady state measured")
    parser.add_argument("--bad", type=int, default=5, help="extra deployments rolled back to time verdict→rollback")
    parser.add_argument("--role", choices=["parent", "emulator", "operator"], default="parent")
    parser.add_argument("--port", type=int)
    parser.add_argument("--api")
    parser.add_argument("--prometheus")
    parser.add_argument("--audit-db")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role == "emulator":
        serve_emulator(args.port)
        return 0
    if args.role == "operator":
        serve_operator(args.api, args.prometheus, args.audit_db)
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from specops.telemetry import metrics
    from specops_operator import builders, kube
    from specops_operator import status as status_

    workdir = Path(tempfile.mkdtemp(prefix="specops-operator-bench-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        emulator = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.operator", "--role", "emulator", "--port", str(port)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        children.append(emulator)
        assert emulator.stdout is not None
        emulator.stdout.readline()
        api_url = f"http://127.0.0.1:{port}"
        client = kube.KubeClient(kube.api_client(host=api_url))

        registry = CollectorRegistry()
        families = metrics.families(registry)
        exporter_port = free_port()
        start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
        prometheus_port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "serving", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
                    ],
                }
            )
        )
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("prometheus is not installed (apt-get install prometheus)")
        children.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"

        names = [f"hold-{index:03d}" for index in range(args.deployments)]
        bad = [f"bad-{index:02d}" for index in range(args.bad)]
        stop = threading.Event()

        def feed() -> None:  # a trickle for the held canaries, a bad canary for the others
            while not stop.wait(0.5):
                for name in names:
                    families.draft_tokens.labels(f"pair-{name}", "2", "canary").inc(4)
                    families.accepted_tokens.labels(f"pair-{name}", "2", "canary").inc(3)
                for name in bad:
                    families.requests.labels(f"pair-{name}", "2", "canary", "stop").inc(2)
                    families.draft_tokens.labels(f"pair-{name}", "2", "canary").inc(40)
                    families.accepted_tokens.labels(f"pair-{name}", "2", "canary").inc(4)

        threading.Thread(target=feed, daemon=True).start()

        # The cluster as a restarted operator finds it: version 1 promoted and serving (state in status),
        # version 2 wanted. The operator starts each canary from status; the script plays KServe.
        started = time.monotonic()
        for name in names:
            promoted_state(client, name, pair=f"pair-{name}", interval=args.interval, min_tokens=10**9)
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.operator",
                "--role",
                "operator",
                "--api",
                api_url,
                "--prometheus",
                prometheus_url,
                "--audit-db",
                str(workdir / "audit.db"),
            ],
            cwd=REPO,
        )
        children.append(operator)

        def mark_ready(isvc: str) -> bool:
            if client.get(kube.INFERENCE_SERVICES, NAMESPACE, isvc) is None:
                return False
            client.patch_status(
                kube.INFERENCE_SERVICES, NAMESPACE, isvc, {"conditions": [{"type": "Ready", "status": "True"}]}
            )
            return True

        def all_ready() -> bool:
            items = client.list(kube.INFERENCE_SERVICES, NAMESPACE)
            pending = [item for item in items if not (item.get("status") or {}).get("conditions")]
            for item in pending:
                mark_ready(item["metadata"]["name"])
            return not pending and len(items) >= 2 * len(names)

        wait_for(all_ready, timeout=900, interval=1.0, message="every canary InferenceService")
        wait_for(
            lambda: all(
                (item.get("status") or {}).get("lastAnalysis") for item in client.list(kube.DEPLOYMENTS, NAMESPACE)
            ),
            timeout=900,
            interval=1.0,
            message="every deployment analysing",
        )
        setup_s = time.monotonic() - started
        print(f"{len(names)} deployments progressing after {setup_s:.1f}s; measuring {args.measure:.0f}s ...")

        def analysed_at() -> dict[str, str]:
            return {
                item["metadata"]["name"]: item["status"]["lastAnalysis"]["at"]
                for item in client.list(kube.DEPLOYMENTS, NAMESPACE)
            }

        before = analysed_at()
        cpu0, wall0 = cpu_seconds(operator.pid), time.monotonic()
        time.sleep(args.measure)
        cpu1, wall1 = cpu_seconds(operator.pid), time.monotonic()
        rss, rss_peak = memory_mib(operator.pid)
        after = analysed_at()
        analyses = sum(1 for name in names if after.get(name, "") > before.get(name, ""))

        # verdict → rollback, on extra deployments fed a bad canary
        delays = []
        for name in bad:
            client.create(kube.DEPLOYMENTS, NAMESPACE, body(name, pair=f"pair-{name}", interval=2.0, min_tokens=20))
            wait_for(lambda name=name: mark_ready(f"{name}-v1"), timeout=180, message=f"{name}-v1")
            wait_for(
                lambda name=name: (
                    (client.get(kube.DEPLOYMENTS, NAMESPACE, name) or {}).get("status", {}).get("phase") == "Promoted"
                ),
                timeout=180,
                message=f"{name} promoted",
            )
            client.patch(kube.DEPLOYMENTS, NAMESPACE, name, {"spec": {"pair": {"version": "2"}}})
            wait_for(lambda name=name: mark_ready(f"{name}-v2"), timeout=180, message=f"{name}-v2")
            wait_for(
                lambda name=name: (
                    builders.route_weights(client.get(kube.HTTP_ROUTES, NAMESPACE, name) or {}).get(
                        f"{name}-v2-predictor"
                    )
                    == 10
                ),
                timeout=180,
                message=f"{name} canary at 10%",
            )
            removed_at = wait_for(
                lambda name=name: (
                    f"{name}-v2-predictor"
                    not in builders.route_weights(client.get(kube.HTTP_ROUTES, NAMESPACE, name) or {})
                    and time.time()
                ),
                timeout=60,
                interval=0.02,
                message=f"{name} rolled back",
            )
            status = wait_for(
                lambda name=name: (
                    (found := (client.get(kube.DEPLOYMENTS, NAMESPACE, name) or {}).get("status", {})).get("phase")
                    == "RolledBack"
                    and found
                ),
                timeout=180,
                message=f"{name} status RolledBack",
            )
            delays.append(removed_at - status_.seconds(status["lastAnalysis"]["at"]))
        stop.set()
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    result = {
        "deployments": args.deployments,
        "interval_s": args.interval,
        "measure_s": round(wall1 - wall0, 1),
        "cpu_fraction": round((cpu1 - cpu0) / (wall1 - wall0), 4),
        "rss_mib": round(rss, 1),
        "rss_peak_mib": round(rss_peak, 1),
        "verdict_to_rollback_s": round(max(delays), 3) if delays else None,
        "verdict_to_rollback_samples_s": [round(delay, 3) for delay in delays],
        "deployments_analysed_in_window": analyses,
        "setup_s": round(setup_s, 1),
        "api": "kmock 0.8 KubernetesEmulator (separate process)",
        "metrics": "Prometheus 2.42 on loopback, 1 s scrape",
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'deployments':<24}{result['deployments']}")
    print(f"{'interval_s':<24}{result['interval_s']}")
    print(f"{'cpu_fraction':<24}{result['cpu_fraction']:.3f}  (budget 0.25)")
    print(f"{'rss_mib':<24}{result['rss_mib']:.1f}  (peak {result['rss_peak_mib']:.1f}; budget 300)")
    print(f"{'verdict_to_rollback_s':<24}{result['verdict_to_rollback_s']}  (budget 2.0)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
