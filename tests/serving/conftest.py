"""A real served pair (real engine, tiny random Llama pair) behind a real HTTP server in a thread."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live_servers import LiveServer, start_server


@pytest.fixture(scope="session")
def twin_pair(tiny_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The target as its own draft: greedy drafts are always accepted."""
    root = tmp_path_factory.mktemp("twin") / "twin-pair"
    shutil.copytree(tiny_pair / "target", root / "target")
    shutil.copytree(tiny_pair / "target", root / "draft")
    (root / "pair.json").write_text('{"name": "twin-pair", "version": "7"}')
    return root


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
