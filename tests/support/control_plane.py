"""A real `specops up` process for tests, the CLI run as a user runs it, and the demo's two versions
registered into a fresh state folder."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from specops.local.plane_files import PlaneFiles, PlaneInfo
from specops.local.servers import free_port
from specops.pairs.demo import DemoPairs

PAIR = "stdlib-coder"
FAST_POLICY = """\
steps: [10, 50, 100]
interval_s: 3
checks:
  min_draft_tokens: 64
  min_requests: 2
  min_target_steps: 48
  failure_limit: 2
deadline_s: 60
"""
"""The demo's short windows: a mismatched canary is judged within seconds."""


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a user whose state folder is ``home`` (and nothing else of the caller's)."""
    env = {**os.environ, "SPECOPS_HOME": str(home), "COLUMNS": "200"}
    for name in ("SPECOPS_DATABASE_URL", "MLFLOW_TRACKING_URI", "SPECOPS_CONFIG", "SPECOPS_RECEIVER_TOKEN"):
        env.pop(name, None)
    return env


def specops(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI once and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "specops.cli", *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home.parent,
    )


def register_demo_versions(home: Path, pairs: DemoPairs) -> tuple[str, str]:
    """Register the demo's good pair (v1) and its mismatched draft (v2) as the demo does; their versions."""
    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.local.demo import DEMO_PAIR_CONFIG, DEMO_QUALIFICATION_FLOOR
    from specops.registry import PairRegistry
    from specops.settings import Settings

    settings = Settings.from_env(home)
    home.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(open_store(settings.database_url))
    registry = PairRegistry.from_settings(settings, audit=audit)
    good = registry.register(
        PAIR, target=pairs.target, draft=pairs.draft, min_acceptance=DEMO_QUALIFICATION_FLOOR, config=DEMO_PAIR_CONFIG
    )
    bad = registry.register(
        PAIR, target=pairs.target, draft=pairs.draft_mismatched, min_acceptance=0.0, config=DEMO_PAIR_CONFIG
    )
    return good.version, bad.version


class PlaneProcess:
    """`specops up` in the foreground of a child process, on free loopback ports."""

    def __init__(self, home: Path, *, config_text: str = "") -> None:
        self.home = home
        self.port = free_port()
        self.config = home.parent / f"specops-{self.port}.yaml"
        self.config.write_text(f"port: {self.port}\nreceiver_port: {free_port()}\ntick_s: 0.25\n{config_text}")
        self.log = home.parent / f"plane-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API's base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, *, timeout_s: float = 180.0) -> PlaneInfo:
        """Start it and wait until it announces itself."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "specops.cli", "up", "--config", str(self.config)],
                env=cli_env(self.home),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home.parent,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = PlaneFiles(self.home).running_plane()
            if info is not None and info.pid == self.process.pid:
                return info
            if self.process.poll() is not None:
                raise AssertionError(
                    f"specops up exited with {self.process.returncode}: {self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"specops up not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the plane, then the model servers it had started (their pids read before the kill), so
        that no process outlives the test."""
        assert self.process is not None
        servers = server_pids(self.process.pid)
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for pid in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


def server_pids(plane_pid: int) -> list[int]:
    """The `specops serve` processes whose parent is ``plane_pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == plane_pid and b"specops.cli\x00serve" in command:
            found.append(int(entry.name))
    return found
