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


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], *, timeout_s: float = READY_TIMEOUT_S, what: str = "model server"
) -> float:
    """Poll KServe's readiness route until it answers 200; return the seconds it took.

    Raises StoreUnavailable when the process exits first or ``timeout_s`` passes.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise StoreUnavailable(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StoreUnavailable(f"{what} not ready after {timeout_s:.0f} s")


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
    _stopped: bool = False

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Spawn the process and return once it answers readiness."""
        command = [
            sys.executable,
            "-m",
            "specops.cli",
            "serve",
            "--pair",
            str(self.pair_dir),
            "--port",
            str(self.port),
            "--role",
            self.role,
            "--deployment",
            self.deployment,
            "--pair-version",
            self.version,
            "--model-name",
            self.model_name,
            *self.extra_args,
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        try:
            wait_until_ready(
                self.url,
                self._process,
                timeout_s=READY_TIMEOUT_S,
                what=f"model server for version {self.version} (log: {self.log_path})",
            )
        except StoreUnavailable:
            self.stop()
            raise

    def exit_code(self) -> int | None:
        """The exit code of a process that ended without being stopped; None while it runs or once stopped."""
        if self._stopped or self._process is None:
            return None
        return self._process.poll()

    def restart(self) -> ServerProcess:
        """Start the process again on the same port (after a crash); StoreUnavailable if it is not ready."""
        self._stopped = False
        try:
            return self.start()
        except StoreUnavailable:
            self._stopped = False  # still a crashed server, not a stopped one: supervision tries again
            raise

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        self._stopped = True
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
