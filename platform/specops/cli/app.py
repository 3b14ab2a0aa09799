"""The ``specops`` command. Each concern's commands live in their own module and install themselves.

Heavy libraries (torch, mlflow, kserve, evidently) are imported inside the commands that use them, so
``specops --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from specops.errors import SpecOpsError

app = typer.Typer(
    name="specops",
    help="Deploy, watch and roll back speculative-decoding model pairs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_CONCERNS = ("pair", "serve", "registry", "audit", "rollout", "demo", "slo", "drift", "alerts", "plane")


def _install_all() -> None:
    """Install every concern's commands once (``main()`` may run several times in one process, as in tests)."""
    import importlib

    if app.registered_commands or app.registered_groups:
        return
    for concern in _CONCERNS:
        try:
            module = importlib.import_module(f"specops.cli.{concern}")
        except ModuleNotFoundError as error:
            if error.name == f"specops.cli.{concern}":
                continue
            raise
        module.install(app)


def main() -> None:
    """Entry point: run the app and turn SpecOps errors into one line and a non-zero exit."""
    # Weights come from local folders only; never wait on a model hub that cannot be reached.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _install_all()
    try:
        app(standalone_mode=False)
    except SpecOpsError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as error:  # usage errors: click's own, or the copy of click typer bundles
        if isinstance(error, _usage_errors()):
            Console(stderr=True).print(f"[red]error:[/red] {error.format_message()}", highlight=False, soft_wrap=True)
            sys.exit(error.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """The usage-error classes of click and of typer's bundled click (typer 0.29 raises the latter)."""
    import click

    bundled = getattr(getattr(getattr(typer, "_click", None), "exceptions", None), "ClickException", None)
    return (click.ClickException, *((bundled,) if isinstance(bundled, type) else ()))


if __name__ == "__main__":
    main()
