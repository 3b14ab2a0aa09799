"""A stand-in serving fleet for the end-to-end test: in-process exporter servers (one loopback HTTP port
each, like a model server's ``/metrics``) that count simulated requests with the real serving telemetry
(:class:`specops.telemetry.metrics.ServingMetrics`, so every metric name and label is the serving
runtime's own), a weighted traffic driver, and a ServingBackend over them.

A *good* pair accepts each draft position with probability 0.8 (acceptance ≈ 0.59); a *mismatched*
draft with 0.05 (acceptance ≈ 0.013), as a draft trained on the wrong text does; a version with
``drafting=False`` decodes plainly (its engine stopped drafting): no draft tokens at all, one token
per target step.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from specops.local.servers import free_port
from specops.rollout.model import Role
from specops.telemetry.metrics import ServingMetrics

NUM_SPECULATIVE_TOKENS = 4


@dataclass
class Behaviour:
    """How a pair version behaves: draft acceptance per position, server errors, inter-token latency."""

    position_acceptance: float
    internal_error_rate: float = 0.002
    client_error_rate: float = 0.01
    itl_s: float = 0.02
    drafting: bool = True


@dataclass
class ExporterServer:
    """One pair version in one role: a registry of serving metrics on its own loopback HTTP port."""

    deployment: str
    version: str
    role: str
    behaviour: Behaviour
    port: int = field(default_factory=free_port)
    requests: int = 0
    first_request_at: float | None = None

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ServingMetrics(
            model_name=self.deployment, pair_version=self.version, role=self.role, registry=self.registry
        )
        self.metrics.set_draft_length(NUM_SPECULATIVE_TOKENS)
        self._httpd, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._rng = random.Random(hash((self.deployment, self.version, self.role)))
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self) -> None:
        """Count one simulated request exactly as the serving runtime would."""
        rng, b, m = self._rng, self.behaviour, self.metrics
        with self._lock:
            if self.first_request_at is None:
                self.first_request_at = time.time()
            self.requests += 1
            roll = rng.random()
            if roll < b.internal_error_rate:
                m.error("internal")
                return
            if roll < b.internal_error_rate + b.client_error_rate:
                m.error("invalid_request")
                return
            m.admitted(prompt_tokens=rng.randint(16, 120))
            m.first_token(rng.uniform(0.005, 0.05))
            generated = drafts = accepted = 0
            per_position = [0] * NUM_SPECULATIVE_TOKENS
            target = rng.randint(24, 64)
            steps = 0
            while generated < target:
                kept = 0
                while b.drafting and kept < NUM_SPECULATIVE_TOKENS and rng.random() < b.position_acceptance:
                    per_position[kept] += 1
                    kept += 1
                steps += 1
                drafts += b.drafting
                accepted += kept
                generated += kept + 1
                m.inter_token(b.itl_s * (kept + 1) * rng.uniform(0.8, 1.2), num_tokens=kept + 1)
            m.request_stats(
                num_drafts=drafts,
                num_draft_tokens=drafts * NUM_SPECULATIVE_TOKENS,
                num_accepted_tokens=accepted,
                num_accepted_per_position=per_position,
                num_generated_tokens=generated,
                num_steps=steps,
            )
            m.finished(
                finish_reason="length",
                e2e_seconds=generated * b.itl_s,
                num_drafts=drafts,
                acceptance_rate=accepted / (drafts * NUM_SPECULATIVE_TOKENS) if drafts else 0.0,
                mean_accepted_length=1 + accepted / drafts if drafts else 1.0,
                mean_itl_seconds=b.itl_s * rng.uniform(0.9, 1.1),
                tokens_per_step=generated / steps,
            )

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ExporterFleet:
    """A :class:`specops.rollout.ports.ServingBackend` over exporter servers; publishes Prometheus targets
    to a file_sd file (the way a service discovery would), with a ``deployment`` target label."""

    def __init__(
        self,
        *,
        deployment: str,
        behaviours: dict[str, Behaviour],
        targets_file: Path,
        extra: list[ExporterServer] | None = None,
    ) -> None:
        self.deployment = deployment
        self.behaviours = behaviours
        self.targets_file = targets_file
        self.servers: dict[Role, ExporterServer] = {}
        self.weight = 0
        self.extra = extra or []
        self.retired: list[ExporterServer] = []
        self._lock = threading.Lock()
        self._publish()

    def _start(self, version: str, role: Role) -> ExporterServer:
        return ExporterServer(self.deployment, version, role.value, self.behaviours[version])

    def deploy_stable(self, version: str) -> None:
        with self._lock:
            old = self.servers.get(Role.STABLE)
            self.servers[Role.STABLE] = self._start(version, Role.STABLE)
            self._retire(old)

    def start_canary(self, version: str, weight: int) -> None:
        with self._lock:
            self._retire(self.servers.pop(Role.CANARY, None))
            self.servers[Role.CANARY] = self._start(version, Role.CANARY)
            self.weight = weight
            self._publish()

    def set_canary_weight(self, weight: int) -> None:
        self.weight = weight

    def promote_canary(self) -> None:
        with self._lock:
            canary = self.servers.pop(Role.CANARY, None)
            if canary is not None:
                old = self.servers.get(Role.STABLE)
                self.servers[Role.STABLE] = self._start(canary.version, Role.STABLE)
                self._retire(old)
                self._retire(canary)
            self.weight = 0

    def remove_canary(self, stable_version: str | None = None) -> None:
        """Rollback: all traffic to ``stable_version`` (the current stable when None), canary stopped."""
        with self._lock:
            self.weight = 0
            stable = self.servers.get(Role.STABLE)
            if stable_version is not None and (stable is None or stable.version != stable_version):
                self.servers[Role.STABLE] = self._start(stable_version, Role.STABLE)
                self._retire(stable)
            self._retire(self.servers.pop(Role.CANARY, None))

    def pick(self, rng: random.Random) -> ExporterServer | None:
        with self._lock:
            canary = self.servers.get(Role.CANARY)
            if canary is not None and rng.random() * 100 < self.weight:
                return canary
            return self.servers.get(Role.STABLE)

    def _retire(self, server: ExporterServer | None) -> None:
        self._publish()
        if server is not None:
            server.stop()
            self.retired.append(server)
        self._publish()

    def _publish(self) -> None:
        groups = [
            {"targets": [s.address], "labels": {"deployment": s.deployment}}
            for s in [*self.servers.values(), *self.extra]
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, self.targets_file)

    def shutdown(self) -> None:
        for server in [*self.servers.values(), *self.extra]:
            server.stop()


class TrafficDriver:
    """Sends ``rate`` simulated requests per second through the fleet (and to the extra servers)."""

    def __init__(self, fleet: ExporterFleet, *, rate: float = 40.0) -> None:
        self.fleet = fleet
        self.rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._rng = random.Random(7)

    def start(self) -> TrafficDriver:
        self._thread.start()
        return self

    def _run(self) -> None:
        pause = 1.0 / self.rate
        while not self._stop.is_set():
            server = self.fleet.pick(self._rng)
            if server is not None:
                server.serve()
            for extra in self.fleet.extra:
                extra.serve()
            self._stop.wait(pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
