"""What `specops up` and the CLI exchange under the state folder.

- ``plane.json`` (+ ``plane.pid``): the running plane's pid and URLs; `deploy` and `down` read them.
- ``plane/requests/NAME.json``: the deployment's wanted pair version and policy, written by
  `specops deploy` (atomically) and read by the plane at every round; it stays, like a resource's spec,
  so a restarted plane knows what each deployment wants.
- ``plane/health/NAME.json``: the plane's view of the deployment's server processes (crashes,
  restarts, last error), shown by `specops status`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from specops.errors import Conflict, StoreUnavailable


@dataclass(frozen=True)
class PlaneInfo:
    """A running plane: its pid and where it answers."""

    pid: int
    url: str
    receiver_url: str | None
    started_at: float


@dataclass(frozen=True)
class DeployRequest:
    """What `specops deploy` asked for. ``request_id`` tells a new request from one already seen."""

    deployment: str
    pair: str
    version: str
    policy: dict[str, Any]
    request_id: str
    requested_at: float


@dataclass
class ServerHealth:
    """One role's server as the plane supervises it."""

    version: str
    url: str
    up: bool = True
    crashes: int = 0
    restarts: int = 0
    last_exit_code: int | None = None


@dataclass
class DeploymentHealth:
    """The plane's report on one deployment: its servers and the last error a round met."""

    servers: dict[str, ServerHealth] = field(default_factory=dict)
    last_error: str | None = None
    request_id: str | None = None


class PlaneFiles:
    """Reads and writes the plane's files under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.requests_dir = home / "plane" / "requests"
        self.health_dir = home / "plane" / "health"

    def write_plane(self, info: PlaneInfo) -> None:
        """Announce this process as the running plane."""
        _write_json(self.home / "plane.json", asdict(info))
        _write_text(self.home / "plane.pid", str(info.pid))

    def clear_plane(self) -> None:
        """Forget the running plane on its clean stop (only the plane's own files: never another's)."""
        try:
            if int((self.home / "plane.pid").read_text()) != os.getpid():
                return
        except (FileNotFoundError, ValueError):
            return
        for name in ("plane.json", "plane.pid"):
            (self.home / name).unlink(missing_ok=True)

    def running_plane(self) -> PlaneInfo | None:
        """The live plane, or None (no pid file, or its process is gone)."""
        try:
            pid = int((self.home / "plane.pid").read_text())
            if not _running(pid):
                return None
            return PlaneInfo(**json.loads((self.home / "plane.json").read_text()))
        except (FileNotFoundError, ValueError, TypeError, PermissionError):
            return None

    def require_plane(self) -> PlaneInfo:
        """The live plane; Conflict saying how to start one otherwise."""
        plane = self.running_plane()
        if plane is None:
            raise Conflict(f"no control plane runs for {self.home}: start one with `specops up`")
        return plane

    def stop_plane(self, *, timeout_s: float = 60.0) -> PlaneInfo:
        """SIGTERM the running plane and wait for it to exit; Conflict when none runs or it does not stop."""
        plane = self.require_plane()
        os.kill(plane.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _running(plane.pid):
                return plane
            time.sleep(0.1)
        raise Conflict(f"the control plane (pid {plane.pid}) did not stop within {timeout_s:.0f} s")

    def write_request(self, request: DeployRequest) -> None:
        """Leave ``request`` for the plane (atomic: the plane never reads half a request)."""
        _write_json(self.requests_dir / f"{request.deployment}.json", asdict(request))

    def request(self, deployment: str) -> DeployRequest | None:
        """The deployment's request, or None."""
        try:
            return DeployRequest(**json.loads((self.requests_dir / f"{deployment}.json").read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def requests(self) -> list[DeployRequest]:
        """Every deployment's request."""
        names = sorted(p.stem for p in self.requests_dir.glob("*.json"))
        return [request for name in names if (request := self.request(name)) is not None]

    def write_health(self, deployment: str, health: DeploymentHealth) -> None:
        """Publish the plane's view of ``deployment``."""
        _write_json(self.health_dir / f"{deployment}.json", asdict(health))

    def health(self, deployment: str) -> DeploymentHealth | None:
        """The plane's last view of ``deployment``, or None."""
        try:
            data = json.loads((self.health_dir / f"{deployment}.json").read_text())
            servers = {role: ServerHealth(**row) for role, row in data.pop("servers").items()}
            return DeploymentHealth(servers=servers, **data)
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=2))


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(text)
        os.replace(temp, path)
    except OSError as error:
        raise StoreUnavailable(f"cannot write {path}: {error.strerror}") from error


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs: an exited one its parent has not reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it runs
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the signal check is all there is
    return state not in ("Z", "X")
