"""Fixtures for the operator tests: kmock's Kubernetes emulator in a thread of its own, a real
Prometheus on loopback scraping a test exporter whose counters the tests drive, and the operator run
through ``kopf.testing.KopfRunner`` with test Dependencies (real audit log on SQLite, aliases in memory).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from specops.local.servers import free_port
from tests.support import deployment_manifests
from tests.support.kubernetes_emulator import EmulatedCluster
from tests.support.polling import wait_for

logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "specops" / "crds" / "speculativedeployments.yaml"
NAMESPACE = "ml"


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


# ----------------------------------------------------------------------------- Kubernetes emulator


@pytest.fixture()
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as emulated:
        yield emulated


# ----------------------------------------------------------------------------- Prometheus + exporter


class Exporter:
    """Serving metrics with the exact names of CONTRACTS.md, driven by the test, on a loopback port."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        from specops.telemetry import metrics

        self.registry = CollectorRegistry()
        self.families = metrics.families(self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._feeders: list[threading.Event] = []

    def serve(
        self,
        *,
        model: str,
        version: str,
        role: str,
        requests: int,
        draft_tokens: int,
        accepted_tokens: int,
        errors: int = 0,
        k: int = 4,
        itl_s: float = 0.02,
        plain_steps: int = 0,
    ) -> None:
        """Count ``requests`` finished requests with the given speculation totals; each draft is one
        speculative target step, ``plain_steps`` more were decoded without drafts."""
        labels = (model, version, role)
        fam = self.families
        fam.requests.labels(*labels, "stop").inc(requests)
        if errors:
            fam.errors.labels(*labels, "internal").inc(errors)
        drafts = max(1, draft_tokens // k) if draft_tokens else 0
        if drafts:
            fam.drafts.labels(*labels).inc(drafts)
            fam.draft_tokens.labels(*labels).inc(draft_tokens)
            fam.accepted_tokens.labels(*labels).inc(accepted_tokens)
        fam.target_steps.labels(*labels, "speculative").inc(drafts)
        fam.target_steps.labels(*labels, "plain").inc(plain_steps)
        steps = drafts + plain_steps
        for _ in range(min(requests, 20)):
            fam.itl.labels(*labels).observe(itl_s)
        for _ in range(requests):
            fam.request_itl.labels(*labels).observe(itl_s)
            if steps:
                fam.tokens_per_step.labels(*labels).observe(1 + accepted_tokens / steps)

    def feed(self, *, every_s: float = 0.25, **traffic: Any) -> Callable[[], None]:
        """Keep serving ``traffic`` every ``every_s`` seconds in a thread; returns a stop function."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                self.serve(**traffic)

        threading.Thread(target=loop, daemon=True).start()
        self._feeders.append(stop)
        return stop.set

    def close(self) -> None:
        for stop in self._feeders:
            stop.set()
        self.server.shutdown()


class Prometheus:
    """The Debian ``prometheus`` binary on loopback, scraping targets every second."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: `make services` installs it")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [{"job_name": "serving", "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._ready, timeout=30, message="prometheus ready")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    exported = Exporter()
    yield exported
    exported.close()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory, exporter: Exporter) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{exporter.port}"])
    yield server
    server.close()


# ----------------------------------------------------------------------------- the operator


@pytest.fixture()
def audit_log(tmp_path: Path) -> Any:
    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'governance.db'}")
    yield AuditLog(store)
    store.dispose()


@pytest.fixture()
def aliases() -> Any:
    from specops_operator.registry import MemoryAliases

    return MemoryAliases()


@pytest.fixture()
def dependencies(cluster: EmulatedCluster, prometheus: Prometheus, aliases: Any, audit_log: Any) -> Any:
    from specops_operator import reconcile

    with httpx.Client(timeout=5.0) as http:
        yield reconcile.Dependencies(
            kube=cluster.client(), http=http, prometheus_url=prometheus.url, versions=aliases, audit=audit_log
        )


@contextlib.contextmanager
def run_operator(cluster: EmulatedCluster, dependencies: Any) -> Iterator[Any]:
    """The operator in kopf's test runner, logged in to the emulator."""
    import kopf
    from kopf.testing import KopfRunner

    from specops_operator import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry, dependencies)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=cluster.url, insecure=True)

    settings = handlers.settings(posting=False)
    settings.watching.reconnect_backoff = 0.2
    with KopfRunner(
        ["run", "--all-namespaces", "--standalone"], registry=registry, settings=settings, timeout=30, reraise=True
    ) as runner:
        yield runner


@pytest.fixture()
def operator(cluster: EmulatedCluster, dependencies: Any) -> Iterator[Any]:
    with run_operator(cluster, dependencies) as runner:
        yield runner


# ----------------------------------------------------------------------------- helpers


def deployment(name: str, *, pair: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    """A SpeculativeDeployment manifest in the test namespace."""
    return deployment_manifests.speculative_deployment(name, namespace=NAMESPACE, pair=pair, version=version, **spec)


def mark_ready(client: Any, name: str, *, ready: bool = True) -> None:
    """Play KServe: report the InferenceService Ready (or not)."""
    from specops_operator import kube

    client.patch_status(
        kube.INFERENCE_SERVICES,
        NAMESPACE,
        name,
        {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "url": f"http://{name}.{NAMESPACE}.example.com",
        },
    )


class Helpers:
    """The helpers above, handed to tests as a fixture (test modules do not import conftest)."""

    namespace = NAMESPACE
    wait_for = staticmethod(wait_for)
    deployment = staticmethod(deployment)
    mark_ready = staticmethod(mark_ready)
    run_operator = staticmethod(run_operator)


@pytest.fixture()
def helpers() -> type[Helpers]:
    return Helpers
