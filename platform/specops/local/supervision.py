"""Supervision of a deployment's model-server processes: a crashed server is counted and started again
on its port, after a backoff that doubles with each crash in a row (1 s, 2 s, 4 s … 30 s)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from specops.errors import StoreUnavailable
from specops.local.plane_files import DeploymentHealth, ServerHealth
from specops.local.servers import ServerProcess
from specops.rollout.model import Role
from specops.telemetry.plane_metrics import PlaneMetrics

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
"""A server up this long after a restart ends its crash streak (the next crash waits FIRST_BACKOFF_S)."""


@dataclass
class ServerSupervision:
    """Watches one deployment's servers; :meth:`check` runs at every round of the plane."""

    deployment: str
    metrics: PlaneMetrics
    health: DeploymentHealth = field(default_factory=DeploymentHealth)
    _streak: dict[str, int] = field(default_factory=dict)
    _restart_at: dict[str, float] = field(default_factory=dict)
    _up_since: dict[str, float] = field(default_factory=dict)

    def check(self, servers: dict[Role, ServerProcess], *, now: float) -> bool:
        """Count new crashes and restart servers whose backoff ran out; True when the health changed."""
        before = repr(self.health.servers)
        for role in set(self.health.servers) - {role.value for role in servers}:
            del self.health.servers[role]
        for role, server in list(servers.items()):
            self._check_one(role.value, server, now=now)
        return repr(self.health.servers) != before

    def _check_one(self, role: str, server: ServerProcess, *, now: float) -> None:
        entry = self.health.servers.get(role)
        if entry is None or (entry.version, entry.url) != (server.version, server.url):
            entry = self.health.servers[role] = ServerHealth(version=server.version, url=server.url)
            self._streak.pop(role, None)
            self._restart_at.pop(role, None)
            self._up_since[role] = now
        code = server.exit_code()
        if code is None:
            entry.up = True
            if now - self._up_since.get(role, now) >= STABLE_AFTER_S:
                self._streak.pop(role, None)
            self.metrics.server_up.labels(self.deployment, role).set(1)
            return
        if role not in self._restart_at:
            self._crashed(role, entry, code, now=now)
        if now < self._restart_at[role]:
            return
        log.warning("%s: restarting the %s server (v%s)", self.deployment, role, server.version)
        try:
            server.restart()
        except StoreUnavailable as error:
            log.warning("%s: restart of the %s server failed: %s", self.deployment, role, error)
            self._crashed(role, entry, server.exit_code(), now=now)
            return
        entry.restarts += 1
        entry.up = True
        self._restart_at.pop(role, None)
        self._up_since[role] = now
        self.metrics.server_restarts.labels(self.deployment, role).inc()
        self.metrics.server_up.labels(self.deployment, role).set(1)

    def _crashed(self, role: str, entry: ServerHealth, code: int | None, *, now: float) -> None:
        streak = self._streak[role] = self._streak.get(role, 0) + 1
        backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (streak - 1))
        self._restart_at[role] = now + backoff
        entry.crashes += 1
        entry.up = False
        entry.last_exit_code = code
        self.metrics.server_crashes.labels(self.deployment, role).inc()
        self.metrics.server_up.labels(self.deployment, role).set(0)
        log.warning("%s: the %s server exited with %s; restart in %.0f s", self.deployment, role, code, backoff)
