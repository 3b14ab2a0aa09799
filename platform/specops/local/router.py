"""A weighted HTTP router on loopback: exactly weight out of every 100 requests go to the canary.

It is the local stand-in for KServe's canaryTrafficPercent (or a weighted HTTPRoute). The split is a
smooth credit counter rather than a coin toss, so a 10 % canary gets every tenth request from the first
tenth on: the analysis never waits on an unlucky random sequence. Responses, streamed ones included,
pass through unchanged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from specops.local.servers import free_port

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass
class Upstreams:
    """Where traffic goes now. Mutated only through :class:`LocalRouter`."""

    stable: str | None = None
    canary: str | None = None
    weight: int = 0
    credit: int = 0
    first_canary_request_at: float | None = None
    routed: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})


class LocalRouter:
    """Splits traffic between a stable and a canary server by weight."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.upstreams = Upstreams()
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, name="specops-router", daemon=True)

    @property
    def url(self) -> str:
        """Base URL clients send requests to."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalRouter:
        """Serve in a background thread; returns once listening."""
        self._thread.start()
        while not self._server.started:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving (nothing to do when it never started)."""
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def route(self, *, stable: str | None = None, canary: str | None = None, weight: int | None = None) -> None:
        """Change upstreams and/or the canary weight (percent)."""
        with self._lock:
            if stable is not None:
                self.upstreams.stable = stable
            if canary is not None:
                self.upstreams.canary = canary or None
            if weight is not None:
                self.upstreams.weight = weight

    def clear_canary(self) -> None:
        """Send everything to stable."""
        with self._lock:
            self.upstreams.canary, self.upstreams.weight, self.upstreams.credit = None, 0, 0
            self.upstreams.first_canary_request_at = None

    def pick(self) -> tuple[str, str] | None:
        """The (role, base URL) the next request goes to, by weight; None when nothing is deployed."""
        with self._lock:
            up = self.upstreams
            if up.canary and up.weight > 0:
                up.credit += up.weight
            if up.canary and up.credit >= 100:
                up.credit -= 100
                if up.first_canary_request_at is None:
                    up.first_canary_request_at = time.time()
                up.routed["canary"] += 1
                return "canary", up.canary
            if up.stable is None:
                return None
            up.routed["stable"] += 1
            return "stable", up.stable

    async def _forward(self, request: Request) -> Response:
        picked = self.pick()
        if picked is None:
            return unavailable("no stable server is deployed", status_code=503)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)
        role, base = picked
        return await proxy(self._client, request, role=role, url=f"{base}{request.url.path}")


UPSTREAM_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


def unavailable(message: str, *, status_code: int) -> JSONResponse:
    """An OpenAI-style error body for a request the router cannot place."""
    return JSONResponse({"error": {"message": message, "type": "unavailable"}}, status_code=status_code)


async def proxy(client: httpx.AsyncClient, request: Request, *, role: str, url: str) -> Response:
    """Send ``request`` to ``url`` and stream the answer back unchanged, tagged with the serving role."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    upstream = client.build_request(
        request.method, url, headers=headers, content=await request.body(), params=request.query_params
    )
    try:
        response = await client.send(upstream, stream=True)
    except httpx.HTTPError as error:
        return unavailable(f"{role} upstream failed: {error}", status_code=502)
    passed = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
    passed["x-specops-role"] = role

    async def body() -> object:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except (httpx.HTTPError, asyncio.CancelledError):
            return
        finally:
            await response.aclose()

    return StreamingResponse(body(), status_code=response.status_code, headers=passed)
