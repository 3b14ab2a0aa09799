"""A serving runtime on a loopback port, in a thread of the test process, and a client for it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

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


def start_server(pair: Path, *, tmp: Path, role: str = "stable", **overrides) -> tuple[LiveServer, object]:
    """Serve ``pair`` on a free port (settings overridden by ``overrides``); returns it and (uvicorn, thread)."""
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
