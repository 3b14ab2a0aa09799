"""The local StateStore: one JSON file per deployment under ``<home>/deployments/``, written atomically,
plus the hand-offs a running runtime picks up at each tick: a pending-action file that
`specops rollback|promote|pause|resume` drop, and the firing alerts `specops alerts receive` posts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from specops.errors import Conflict, NotFound, StoreUnavailable
from specops.rollout import codec
from specops.rollout.model import Alert, ManualAction, Role, RolloutState


class FileStateStore:
    """Deployment states as JSON files."""

    def __init__(self, home: Path) -> None:
        self.root = home / "deployments"

    def load(self, deployment: str) -> RolloutState | None:
        """The saved state or None."""
        path = self._path(deployment)
        if not path.exists():
            return None
        return codec.state_from_dict(json.loads(path.read_text()))

    def require(self, deployment: str) -> RolloutState:
        """The saved state; NotFound names the known deployments otherwise."""
        state = self.load(deployment)
        if state is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown deployment {deployment!r} (known: {known})")
        return state

    def save(self, state: RolloutState) -> None:
        """Write atomically (temp file + rename)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self._path(state.deployment)
            temp = path.with_suffix(".tmp")
            temp.write_text(json.dumps(codec.state_to_dict(state), indent=2))
            os.replace(temp, path)
        except OSError as error:
            raise StoreUnavailable(f"cannot write deployment state under {self.root}: {error.strerror}") from error

    def names(self) -> list[str]:
        """Every known deployment."""
        return sorted(p.stem for p in self.root.glob("*.json")) if self.root.exists() else []

    def request(self, deployment: str, action: ManualAction) -> None:
        """Leave ``action`` for the runtime that serves ``deployment``; refuse a second pending one."""
        self.require(deployment)
        path = self._path(deployment).with_suffix(".action")
        try:
            with path.open("x") as handle:
                handle.write(action.value)
        except FileExistsError as error:
            raise Conflict(f"{deployment}: a {path.read_text().strip()} request is already pending") from error
        except OSError as error:
            raise StoreUnavailable(f"cannot write {path}: {error.strerror}") from error

    def take_request(self, deployment: str) -> ManualAction | None:
        """The pending action, removed from the store; None when there is none."""
        path = self._path(deployment).with_suffix(".action")
        try:
            action = ManualAction(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return action

    def post_alerts(self, deployment: str, alerts: tuple[Alert, ...]) -> None:
        """Replace the firing alerts of ``deployment`` (the alert receiver's local sink)."""
        self.require(deployment)
        path = self._path(deployment).with_suffix(".alerts")
        temp = path.with_suffix(".alerts-tmp")
        rows = [{**dataclasses.asdict(alert), "role": alert.role.value if alert.role else None} for alert in alerts]
        try:
            temp.write_text(json.dumps(rows))
            os.replace(temp, path)
        except OSError as error:
            raise StoreUnavailable(f"cannot write {path}: {error.strerror}") from error

    def take_alerts(self, deployment: str) -> tuple[Alert, ...]:
        """The alerts last posted for ``deployment``, consumed: the brain acts on a page at once, and
        Alertmanager re-sends what still fires at its repeat interval."""
        path = self._path(deployment).with_suffix(".alerts")
        try:
            rows = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return ()
        path.unlink(missing_ok=True)
        return tuple(Alert(**{**row, "role": Role(row["role"]) if row.get("role") else None}) for row in rows)

    def attach(self, deployment: str) -> None:
        """Record that this process runs ``deployment`` (manual actions then go through it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._path(deployment).with_suffix(".pid").write_text(str(os.getpid()))

    def detach(self, deployment: str) -> None:
        """Forget the running process of ``deployment``."""
        self._path(deployment).with_suffix(".pid").unlink(missing_ok=True)

    def runtime_pid(self, deployment: str) -> int | None:
        """The pid of the live runtime serving ``deployment``, or None."""
        try:
            pid = int(self._path(deployment).with_suffix(".pid").read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def _path(self, deployment: str) -> Path:
        return self.root / f"{deployment}.json"
