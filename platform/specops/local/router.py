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
        """Stop serving."""
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

    def _pick(self) -> tuple[str, str] | None:
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
        picked = self._pick()
        if picked is None:
            return JSONResponse(
                {"error": {"message": "no stable server is deployed", "type": "unavailable"}}, status_code=503
            )
        role, base = picked
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        upstream = self._client.build_request(
            request.method,
            f"{base}{request.url.path}",
            headers=headers,
            content=await request.body(),
            params=request.query_params,
        )
        try:
            response = await self._client.send(upstream, stream=True)
        except httpx.HTTPError as error:
            return JSONResponse(
                {"error": {"message": f"{role} upstream failed: {error}", "type": "unavailable"}}, status_code=502
            )
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
