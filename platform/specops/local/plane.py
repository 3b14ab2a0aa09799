"""`specops up`: the embedded control plane — every deployment's servers behind one router, the rollout
rounds, server supervision, drift monitors, the alert receiver and ``/metrics``, in one process.

Deployments come from the requests `specops deploy` leaves under the state folder (see
:mod:`specops.local.plane_files`); each is a :class:`LocalDeployment` whose rounds run the same intake and
controller as the operator. A restarted plane resumes every deployment from its saved state.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console

from specops.errors import Conflict, InvalidInput, SpecOpsError
from specops.local import deploy_policy
from specops.local.model_router import ModelRouter
from specops.local.plane_config import PlaneConfig
from specops.local.plane_files import DeploymentHealth, DeployRequest, PlaneFiles, PlaneInfo
from specops.local.supervision import ServerSupervision
from specops.local.wiring import LocalDeployment
from specops.rollout.model import Phase
from specops.settings import Settings
from specops.telemetry import plane_metrics

log = logging.getLogger(__name__)
RECEIVER_TOKEN_ENV = "SPECOPS_RECEIVER_TOKEN"


def check_port_free(port: int, *, what: str) -> None:
    """InvalidInput naming ``what`` when something already listens on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise InvalidInput(f"{what} port {port} is in use ({error.strerror}): choose another") from error


@dataclass
class PlaneDeployment:
    """One deployment the plane runs: its runtime, its supervision, and the request it follows."""

    runtime: LocalDeployment
    supervision: ServerSupervision
    request: DeployRequest


class ControlPlane:
    """Runs until :meth:`stop` (SIGINT or SIGTERM in the foreground)."""

    def __init__(self, settings: Settings, config: PlaneConfig, *, console: Console | None = None) -> None:
        self.settings, self.config = settings, config
        self.console = console or Console()
        self.files = PlaneFiles(settings.home)
        self.registry = CollectorRegistry()
        self.metrics = plane_metrics.define(self.registry)
        self.router = ModelRouter(port=config.port, metrics=self.metrics, registry=self.registry)
        self.deployments: dict[str, PlaneDeployment] = {}
        self.receiver_url: str | None = None
        self._receiver: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def check_startable(self) -> str | None:
        """Refuse a second plane on this state folder or a port in use; the receiver's token (None: off)."""
        running = self.files.running_plane()
        if running is not None and running.pid != os.getpid():
            raise Conflict(f"a control plane already runs for {self.settings.home} (pid {running.pid}, {running.url})")
        check_port_free(self.config.port, what="router")
        token = os.environ.get(RECEIVER_TOKEN_ENV, "")
        if token:
            check_port_free(self.config.receiver_port, what="alert receiver")
        return token or None

    def run(self) -> None:
        """Start everything, serve until stopped, then drain and stop cleanly."""
        token = self.check_startable()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self._stop.set())
        self.router.start()
        try:
            if token is not None:
                self._start_receiver(token)
            else:
                self.console.print(f"alert receiver off: set {RECEIVER_TOKEN_ENV} to receive Alertmanager webhooks")
            for request in self.files.requests():
                self._open(request)
            self.files.write_plane(
                PlaneInfo(pid=os.getpid(), url=self.router.url, receiver_url=self.receiver_url, started_at=time.time())
            )
            if self.config.drift.enabled:
                self._spawn(self._drift_loop, "specops-drift")
            self.console.print(
                f"[bold green]ready[/bold green]: OpenAI API at {self.router.url} (model = deployment name), "
                f"metrics at http://127.0.0.1:{self.config.port}/metrics; deploy with `specops deploy`",
                highlight=False,
            )
            while not self._stop.is_set():
                self.round(now=time.time())
                self._stop.wait(self.config.tick_s)
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()

    def round(self, *, now: float) -> None:
        """Pick up new requests, supervise servers, run one round per deployment."""
        for request in self.files.requests():
            known = self.deployments.get(request.deployment)
            if known is None:
                self._open(request)
            elif known.request.request_id != request.request_id:
                self._follow(known, request)
        for name, deployment in list(self.deployments.items()):
            if self._stop.is_set():
                return
            if deployment.supervision.check(deployment.runtime.backend.servers, now=now):
                self.files.write_health(name, deployment.supervision.health)
            self._round(name, deployment, now=now)

    def shutdown(self) -> None:
        """Drain the router, stop every server, the receiver and the scrapes; forget the pid file."""
        self._stop.set()
        self.console.print("stopping: draining requests in flight, then the model servers")
        self.router.stop()
        if self._receiver is not None:
            self._receiver.should_exit = True
        for deployment in self.deployments.values():
            deployment.runtime.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self.files.clear_plane()

    def _open(self, request: DeployRequest) -> None:
        """Open (or resume) a deployment's runtime and serve what its saved state says runs."""
        try:
            policy = deploy_policy.from_dict(request.policy)
            runtime = LocalDeployment.open(
                self.settings,
                deployment=request.deployment,
                pair=request.pair,
                policy=policy,
                server_args=self.config.server_args(),
                model_name=request.deployment,
            )
            runtime.start(serve_router=False)
            self.router.attach(request.deployment, runtime.router)
            deployment = PlaneDeployment(runtime, ServerSupervision(request.deployment, self.metrics), request)
            self.deployments[request.deployment] = deployment
            with self.console.status(f"{request.deployment}: loading the model servers of its saved state"):
                state = runtime.resume_serving()
        except SpecOpsError as error:
            self._report(request, f"{request.deployment}: cannot serve: {error}")
            return
        last_change = state.history[-1].at if state.history else 0.0
        rolled_back = state.phase is Phase.ROLLED_BACK and request.version != state.stable_version
        if rolled_back and request.requested_at <= last_change:
            runtime.rejected_version = request.version  # rolled back before this plane stopped: not again
        deployment.supervision.health.request_id = request.request_id
        self.files.write_health(request.deployment, deployment.supervision.health)
        if state.stable_version:
            self.console.print(f"{request.deployment}: resumed in {state.phase.value} (stable v{state.stable_version})")

    def _follow(self, deployment: PlaneDeployment, request: DeployRequest) -> None:
        """A new request for a known deployment: its version and policy apply from the next round."""
        try:
            policy = deploy_policy.from_dict(request.policy)
        except InvalidInput as error:
            self._report(request, str(error))
            return
        deployment.request = request
        deployment.runtime.policy = deployment.runtime.controller.policy = policy
        deployment.runtime.rejected_version = None  # asked again: a new request, even for a rejected version
        deployment.supervision.health.request_id = request.request_id
        deployment.supervision.health.last_error = None

    def _round(self, name: str, deployment: PlaneDeployment, *, now: float) -> None:
        runtime = deployment.runtime
        try:
            turn = runtime.run_round(desired_version=deployment.request.version, now=now)
        except Exception as error:  # one deployment's failure never stops the plane
            self.metrics.round_errors.labels(name).inc()
            self._report(deployment.request, f"{name}: {type(error).__name__}: {error}")
            return
        self.metrics.rounds.labels(name, turn.plan.step.value or "wait").inc()
        self.metrics.canary_weight.labels(name).set(turn.after.weight)
        if len(turn.after.history) > len(turn.before.history):
            self.metrics.transitions.labels(name, turn.after.phase.value).inc()
        if turn.decision is not None:
            self.console.print(f"{name}: {turn.after.phase.value} — {turn.decision.reason}", highlight=False)
        if deployment.supervision.health.last_error and turn.decision is not None:
            deployment.supervision.health.last_error = None
            self.files.write_health(name, deployment.supervision.health)

    def _report(self, request: DeployRequest, message: str) -> None:
        """Log a deployment's error and publish it for `specops deploy` and `specops status`."""
        log.error("%s", message)
        self.console.print(f"[red]error:[/red] {message}", highlight=False)
        known = self.deployments.get(request.deployment)
        health = known.supervision.health if known is not None else None
        if health is None:
            health = DeploymentHealth()
        health.last_error, health.request_id = message, request.request_id
        self.files.write_health(request.deployment, health)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_receiver(self, token: str) -> None:
        """The Alertmanager receiver (:mod:`specops.monitoring.receiver`) on its own port, posting to the
        state files that the rounds read."""
        import uvicorn

        from specops.governance.audit import AuditLog
        from specops.governance.store import open_store
        from specops.local.state_files import FileStateStore
        from specops.monitoring.receiver import create_app

        store = open_store(self.settings.database_url)
        app = create_app(
            token=token,
            sink=FileStateStore(self.settings.home).post_alerts,
            store=store,
            audit=AuditLog(store),
            textfile_dir=self.settings.home / "metrics",
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.config.receiver_port, log_level="warning", lifespan="off")
        )
        self._spawn(server.run, "specops-receiver")
        self._receiver = server
        self.receiver_url = f"http://127.0.0.1:{self.config.receiver_port}"

    def _drift_loop(self) -> None:
        """Every deployment's Evidently drift monitor on the configured schedule, gauges on ``/metrics``."""
        from datetime import timedelta

        from specops.monitoring import drift_gauges, drift_run

        gauges = drift_gauges.DriftGauges(self.registry)
        schedule = self.config.drift
        while not self._stop.wait(schedule.interval_s):
            for name, deployment in list(self.deployments.items()):
                try:
                    done = drift_run.run(
                        deployment.runtime.audit.store,
                        deployment=name,
                        artifacts_dir=self.settings.artifacts_dir,
                        window=timedelta(seconds=schedule.window_s),
                        reference_window=timedelta(seconds=schedule.window_s),
                        min_rows=schedule.min_rows,
                        audit=deployment.runtime.audit,
                        gauges=gauges,
                    )
                    log.info("%s: drift run done: %s", name, done)
                except SpecOpsError as error:
                    log.info("%s: no drift run: %s", name, error)
                except Exception:  # a monitor's failure never stops the plane
                    log.exception("%s: drift run failed", name)
