"""Model-server processes on loopback: each one is `specops serve` for one pair version and role."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from specops.errors import StoreUnavailable

READY_TIMEOUT_S = 120.0
"""Seconds a server may take to load its pair and answer readiness."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """One running `specops serve` child process."""

    pair_dir: Path
    version: str
    role: str
    deployment: str
    model_name: str
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Spawn the process and return once it answers readiness."""
        command = [
            sys.executable, "-m", "specops.cli", "serve",
            "--pair", str(self.pair_dir), "--port", str(self.port), "--role", self.role,
            "--deployment", self.deployment, "--pair-version", self.version,
            "--model-name", self.model_name, *self.extra_args,
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise StoreUnavailable(
                    f"model server for version {self.version} exited with {self._process.returncode}"
                    f" (log: {self.log_path})")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise StoreUnavailable(f"model server for version {self.version} not ready after {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
