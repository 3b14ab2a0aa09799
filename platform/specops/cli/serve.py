"""`specops serve`: one pair version in the KServe model server, until SIGTERM/SIGINT.

The command's options are not written here: `serving_command` builds one typer option per
`ServingConfig` field (flag, environment variable, default and help all come from the field).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import typer

from specops.serving import config as serving_config


def install(app: typer.Typer) -> None:
    app.command("serve")(serving_command())


def serving_command() -> Callable[..., None]:
    """The ``serve`` command function, its parameters derived from `ServingConfig`'s fields."""

    def serve(**settings: Any) -> None:
        """Serve a pair version: OpenAI-compatible /openai/v1, KServe v1/v2, /metrics, on one port."""
        started = time.perf_counter()
        from specops.serving import server
        from specops.telemetry import records

        config = serving_config.ServingConfig(**settings)
        records.PromptRedaction.parse(config.record_prompt)  # refuse a bad value before loading anything
        server.serve(config, started=started)

    parameters = [
        inspect.Parameter(
            option.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                option.default, option.flags, envvar=option.envvar, help=option.help, min=option.low, max=option.high
            ),
            annotation=option.annotation,
        )
        for option in serving_config.options()
    ]
    serve.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    serve.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return serve
