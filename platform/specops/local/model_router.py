"""The plane's one port: OpenAI routes dispatched by the request's ``model`` (the deployment's name),
each deployment's stable/canary split by its :class:`LocalRouter`, plus ``/v1/models`` and ``/metrics``.

``/v1/...`` and the model servers' own ``/openai/v1/...`` paths are both accepted. Stopping drains:
uvicorn stops accepting, then waits for the requests in flight (streams included) to finish.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from specops.local.router import UPSTREAM_TIMEOUT, LocalRouter, proxy
from specops.telemetry.plane_metrics import PlaneMetrics

OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions")
DRAIN_TIMEOUT_S = 30
"""Seconds a stop waits for requests in flight before closing their connections."""


def _error(message: str, *, status_code: int, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status_code)


class ModelRouter:
    """Serves every deployment on ``host:port``; ``attach`` makes a deployment's split reachable."""

    def __init__(
        self, *, port: int, metrics: PlaneMetrics, registry: CollectorRegistry, host: str = "127.0.0.1"
    ) -> None:
        self.port, self.host = port, host
        self._metrics, self._registry = metrics, registry
        self._splits: dict[str, LocalRouter] = {}
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        routes = [Route(path, self._openai, methods=["POST"]) for path in OPENAI_PATHS]
        routes += [Route("/openai" + path, self._openai, methods=["POST"]) for path in OPENAI_PATHS]
        routes += [
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/openai/v1/models", self._models, methods=["GET"]),
            Route("/metrics", self._metrics_text, methods=["GET"]),
            Route("/healthz", lambda _: JSONResponse({"status": "ok"}), methods=["GET"]),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="specops-plane-router", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the OpenAI API (what clients set as ``base_url``)."""
        return f"http://{self.host}:{self.port}/v1"

    def attach(self, deployment: str, split: LocalRouter) -> None:
        """Route requests for ``deployment`` through ``split``."""
        with self._lock:
            self._splits[deployment] = split

    def start(self) -> ModelRouter:
        """Serve in a background thread; return once listening."""
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the router could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop accepting, drain the requests in flight, stop."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=DRAIN_TIMEOUT_S + 5)

    async def _openai(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as error:
            return _error(f"request body is not valid JSON: {error}", status_code=400, kind="invalid_request_error")
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return _error("model is required", status_code=400, kind="invalid_request_error", param="model")
        with self._lock:
            split = self._splits.get(model)
            known = ", ".join(sorted(self._splits)) or "none"
        if split is None:
            message = f"no deployment named {model!r} (deployed: {known})"
            return _error(message, status_code=404, kind="not_found_error", param="model")
        picked = split.pick()
        if picked is None:
            return _error(f"deployment {model!r} has no server yet", status_code=503, kind="unavailable")
        role, base = picked
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)
        path = request.url.path.removeprefix("/openai")
        started = time.monotonic()
        self._metrics.router_in_flight.inc()
        try:
            response = await proxy(self._client, request, role=role, url=f"{base}/openai{path}")
        finally:
            self._metrics.router_in_flight.dec()
        self._metrics.router_seconds.labels(model, role).observe(time.monotonic() - started)
        self._metrics.router_requests.labels(model, role, str(response.status_code)).inc()
        return response

    async def _models(self, _: Request) -> Response:
        with self._lock:
            names = sorted(name for name, split in self._splits.items() if split.upstreams.stable)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "specops"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def _metrics_text(self, _: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)
