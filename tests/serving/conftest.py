"""A real served pair (real engine, tiny random Llama pair) behind a real HTTP server in a thread."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from specops.local.servers import free_port
from specops.serving import served_pair
from tests.support.scrape import scrape


@dataclass
class LiveServer:
    base_url: str
    served: served_pair.ServedPair
    database_url: str

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60, **kwargs)

    def metrics(self) -> dict:
        with self.client() as client:
            return scrape(client.get("/metrics").text)


@pytest.fixture(scope="session")
def twin_pair(tiny_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The target as its own draft: greedy drafts are always accepted."""
    root = tmp_path_factory.mktemp("twin") / "twin-pair"
    shutil.copytree(tiny_pair / "target", root / "target")
    shutil.copytree(tiny_pair / "target", root / "draft")
    (root / "pair.json").write_text('{"name": "twin-pair", "version": "7"}')
    return root


def start_server(pair: Path, *, tmp: Path, role: str = "stable", **overrides) -> tuple[LiveServer, object]:
    import uvicorn

    from specops.serving import config, server

    database_url = f"sqlite:///{tmp / 'records.db'}"
    settings = config.ServingConfig(
        pair=str(pair),
        port=free_port(),
        role=role,
        database_url=database_url,
        **{"max_tokens": 24, "max_batch": 8, "max_wait_ms": 20.0, **overrides},
    )
    served = served_pair.ServedPair.load(settings)
    app = server.build_app(served)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{settings.port}", served, database_url), (uv, thread)


@pytest.fixture(scope="session")
def live(tiny_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server, (uv, thread) = start_server(tiny_pair, tmp=tmp_path_factory.mktemp("live"), context_limit=64)
    yield server
    uv.should_exit = True
    thread.join(10)
    if server.served.records is not None:
        server.served.records.close()


@pytest.fixture(scope="session")
def twin(twin_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server, (uv, thread) = start_server(
        twin_pair, tmp=tmp_path_factory.mktemp("twin-live"), role="canary", deployment="chat-prod", adaptive=False
    )
    yield server
    uv.should_exit = True
    thread.join(10)
    if server.served.records is not None:
        server.served.records.close()


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c
