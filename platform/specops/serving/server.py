"""Start the KServe model server with the speculative pair: `serve` (the CLI) and `build_app` (tests).

Two quirks of kserve 0.21 shape this module:

* ``kserve.model_server`` parses ``sys.argv`` when imported, so it is imported with an argv of just
  the program name (our flags are not KServe's);
* its OpenAI routes need vLLM, so ours are added to ``kserve.model_server.app`` before
  ``ModelServer.start`` (see `specops.serving.openai_routes`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.serving.config import ServingConfig, resolve_pair

if TYPE_CHECKING:
    from specops.serving.served_pair import ServedPair

log = logging.getLogger(__name__)


def import_kserve_model_server() -> Any:
    """Import ``kserve.model_server`` without letting it parse our command line."""
    if "kserve.model_server" in sys.modules:
        return sys.modules["kserve.model_server"]
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve.model_server as model_server
    finally:
        sys.argv = saved
    return model_server


class ClientErrorLogFilter(logging.Filter):
    """KServe logs every error response with a traceback at ERROR; for the client's mistakes
    (bad input, unknown model, unsupported feature) keep one WARNING line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno >= logging.ERROR:
            error = record.exc_info[1]
            from kserve.errors import InvalidInput, ModelNotFound

            if isinstance(error, InvalidInput | ModelNotFound | NotImplementedError):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.msg, record.args = "client error: %s: %s", (type(error).__name__, error)
                record.exc_info = record.exc_text = None
        return True


def quiet_client_errors() -> None:
    """Install `ClientErrorLogFilter` on KServe's logger (idempotent)."""
    kserve_logger = logging.getLogger("kserve")
    if not any(isinstance(f, ClientErrorLogFilter) for f in kserve_logger.filters):
        kserve_logger.addFilter(ClientErrorLogFilter())


def build_app(served: ServedPair) -> Any:
    """A fresh FastAPI app with KServe's routes, middlewares and error handlers plus ours (for tests).

    Production uses `serve`, which puts the same routes on ``kserve.model_server.app``.
    """
    import_kserve_model_server()
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    from specops.serving import kserve_model, openai_routes

    quiet_client_errors()
    repository = ModelRepository()
    repository.update(kserve_model.SpeculativeModel(served))
    rest = RESTServer(
        "kserve.model_server:app",
        DataPlane(model_registry=repository),
        ModelRepositoryExtension(model_registry=repository),
        http_port=0,
    )
    app = FastAPI(title="SpecOps serving", default_response_class=ORJSONResponse, docs_url=None, redoc_url=None)
    openai_routes.install(app, served)
    rest._add_middlewares(app)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return app


def serve(config: ServingConfig, *, started: float | None = None) -> None:
    """Load the pair and serve it until SIGTERM/SIGINT (then flush request records and return)."""
    started = started or time.perf_counter()
    pair = resolve_pair(config.pair)
    import prometheus_client

    prometheus_client.disable_created_metrics()  # scrapes every second: skip the *_created series
    phase = time.perf_counter()
    model_server = import_kserve_model_server()
    from specops.serving import kserve_model, openai_routes, served_pair

    phases = {"import kserve": time.perf_counter() - phase}
    phase = time.perf_counter()
    served = served_pair.ServedPair.load(config, pair)
    phases["load engine"] = time.perf_counter() - phase
    quiet_client_errors()
    openai_routes.install(model_server.app, served)
    _log_ready_time(model_server.app, served, started, phases)
    server = model_server.ModelServer(http_port=config.port, enable_grpc=False, workers=1, enable_latency_logging=False)
    try:
        server.start([kserve_model.SpeculativeModel(served)])
    finally:
        served.batcher.stop()
        written = dropped = 0
        if served.records is not None:
            served.records.close()
            written, dropped = served.records.num_written, served.records.num_dropped
        log.info("specops serve stopped (records written %s, dropped %s)", written, dropped)


def _seconds_since_process_start() -> float | None:
    """Age of this process from /proc (Linux); None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return time.time() - (boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _log_ready_time(app: Any, served: ServedPair, started: float, phases: dict[str, float]) -> None:
    async def report() -> None:
        age = _seconds_since_process_start()
        seconds = age if age is not None else time.perf_counter() - started
        detail = ", ".join(f"{name} {value:.2f} s" for name, value in phases.items())
        message = (
            f"specops serve ready: model {served.model_name} pair {served.pair.name} "
            f"version {served.pair_version} role {served.role} in {seconds:.2f} s since process "
            f"start ({detail})"
        )
        log.info(message)
        print(message, file=sys.stderr, flush=True)

    app.router.on_startup.append(report)
