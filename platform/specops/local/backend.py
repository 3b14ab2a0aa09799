"""The local ServingBackend: model-server processes on loopback behind the weighted router."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from specops.local.router import LocalRouter
from specops.local.scrape import ScrapeTarget
from specops.local.servers import ServerProcess
from specops.rollout.model import Role


class LocalServingBackend:
    """Runs one server per role; promotion starts the winner as stable and retires the rest.

    resolve: maps a version label to its pair folder (a registry download or a local folder).
    model_name: the ``model`` clients name in requests (default: the pair's name).
    """

    def __init__(
        self,
        *,
        deployment: str,
        pair: str,
        resolve: Callable[[str], Path],
        router: LocalRouter,
        logs_dir: Path,
        server_args: tuple[str, ...] = (),
        model_name: str | None = None,
    ) -> None:
        self.deployment = deployment
        self.pair = pair
        self.model_name = model_name or pair
        self.router = router
        self._resolve = resolve
        self._logs_dir = logs_dir
        self._server_args = server_args
        self.servers: dict[Role, ServerProcess] = {}

    def deploy_stable(self, version: str) -> None:
        """Start ``version`` as stable, switch the router to it, retire the old stable."""
        new = self._start(version, Role.STABLE)
        old = self.servers.get(Role.STABLE)
        self.servers[Role.STABLE] = new
        self.router.route(stable=new.url)
        if old is not None:
            old.stop()

    def start_canary(self, version: str, weight: int) -> None:
        """Start ``version`` as canary and route ``weight`` percent to it once it is ready."""
        self.remove_canary()
        server = self._start(version, Role.CANARY)
        self.servers[Role.CANARY] = server
        self.router.route(canary=server.url, weight=weight)

    def set_canary_weight(self, weight: int) -> None:
        """Move the split."""
        self.router.route(weight=weight)

    def promote_canary(self) -> None:
        """Serve the canary's version as stable at 100 % and stop the canary."""
        canary = self.servers.get(Role.CANARY)
        if canary is None:
            return
        self.deploy_stable(canary.version)
        self.remove_canary()

    def remove_canary(self, stable_version: str | None = None) -> None:
        """All traffic to stable (``stable_version`` started first if another runs); stop the canary."""
        self.router.clear_canary()
        canary = self.servers.pop(Role.CANARY, None)
        if canary is not None:
            canary.stop()
        stable = self.servers.get(Role.STABLE)
        if stable_version is not None and (stable is None or stable.version != stable_version):
            self.deploy_stable(stable_version)

    def targets(self) -> list[ScrapeTarget]:
        """The servers the metrics source scrapes."""
        return [ScrapeTarget(s.url, role, s.version) for role, s in list(self.servers.items())]

    def shutdown(self) -> None:
        """Stop every server."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def _start(self, version: str, role: Role) -> ServerProcess:
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        return ServerProcess(
            pair_dir=self._resolve(version),
            version=version,
            role=role.value,
            deployment=self.deployment,
            model_name=self.model_name,
            log_path=self._logs_dir / f"{self.deployment}-{role.value}-v{version}.log",
            extra_args=self._server_args,
        ).start()
