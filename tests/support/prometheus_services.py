"""Real Prometheus and Alertmanager (Debian packages) started on loopback for the end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from specops.local.servers import free_port

START_TIMEOUT_S = 30.0


def binary(name: str) -> str:
    """A Debian-packaged Prometheus binary; the tests need it (``apt-get install prometheus``)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        pytest.fail(f"{name} not found: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager")
    return found


@dataclass
class Service:
    """A child process answering ``/-/ready`` on ``port``; its output goes to ``log``."""

    name: str
    command: list[str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        self.process = subprocess.Popen(
            self.command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT_S} s: {self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def alertmanager(workdir: Path, *, webhook_url: str, token: str) -> Service:
    """Alertmanager with one webhook receiver (bearer token), short grouping and no gossip cluster."""
    port = free_port()
    config = {
        "route": {
            "receiver": "specops",
            "group_by": ["alertname", "deployment", "severity"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "specops",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    (workdir / "am-data").mkdir(exist_ok=True)
    command = [
        binary("prometheus-alertmanager"),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return Service("alertmanager", command, port, workdir / "alertmanager.log")


def prometheus(
    workdir: Path, *, rules: Path, targets_file: Path, static_targets: list[str], alertmanager_port: int
) -> Service:
    """Prometheus scraping every second, evaluating ``rules`` every second, alerting ``alertmanager_port``."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {
                "job_name": "specops-serving",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            },
            {"job_name": "specops-receiver", "static_configs": [{"targets": static_targets}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [
        binary("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",
        "--log.level=warn",
    ]
    return Service("prometheus", command, port, workdir / "prometheus.log")


def query_range(prometheus_url: str, expr: str, *, start: float, end: float, step: float = 1.0) -> list[Any]:
    """The result of a range query (raises on a PromQL error)."""
    response = httpx.get(
        f"{prometheus_url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query failed: {body.get('error')}\n{expr}")
    return body["data"]["result"]


def query(prometheus_url: str, expr: str) -> list[Any]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query failed: {body.get('error')}\n{expr}")
    return body["data"]["result"]


class ASGIServer:
    """An ASGI app served by uvicorn on a loopback port in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, name="receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ASGIServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
