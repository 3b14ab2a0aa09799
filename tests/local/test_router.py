"""The weighted router splits requests by the canary weight and passes bodies through."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from specops.local.router import LocalRouter
from tests.support.named_servers import NamedServer


@pytest.fixture
def router() -> Iterator[LocalRouter]:
    started = LocalRouter().start()
    yield started
    started.stop()


def _served(router: LocalRouter, n: int) -> list[str]:
    with httpx.Client(base_url=router.url) as client:
        return [client.post("/openai/v1/completions", json={}).json()["server"] for _ in range(n)]


def test_without_a_stable_server_the_router_answers_503(router: LocalRouter) -> None:
    response = httpx.post(f"{router.url}/openai/v1/completions", json={})
    assert response.status_code == 503 and "no stable server" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("weight", "low", "high"),
    [(0, 0, 0), (30, 30, 30), (100, 100, 100)],
    ids=["all-stable", "thirty-percent", "all-canary"],
)
def test_traffic_splits_by_weight(
    router: LocalRouter, servers: tuple[NamedServer, NamedServer], weight: int, low: int, high: int
) -> None:
    stable, canary = servers
    router.route(stable=stable.url, canary=canary.url, weight=weight)
    served = _served(router, 100)
    assert low <= served.count("canary") <= high


def test_clearing_the_canary_sends_everything_to_stable(
    router: LocalRouter, servers: tuple[NamedServer, NamedServer]
) -> None:
    stable, canary = servers
    router.route(stable=stable.url, canary=canary.url, weight=100)
    assert _served(router, 3) == ["canary"] * 3
    assert router.upstreams.first_canary_request_at is not None
    router.clear_canary()
    assert _served(router, 3) == ["stable"] * 3
