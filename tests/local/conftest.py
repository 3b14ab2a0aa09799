"""Small real HTTP servers on loopback for the local runtime's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.named_servers import NamedServer


@pytest.fixture
def servers() -> Iterator[tuple[NamedServer, NamedServer]]:
    pair = (NamedServer("stable"), NamedServer("canary"))
    yield pair
    for server in pair:
        server.httpd.shutdown()
