"""`specops demo`: the whole loop on one machine."""

from __future__ import annotations

import typer

from specops.settings import Settings


def install(app: typer.Typer) -> None:
    """Add the demo command to ``app``."""
    app.command()(demo)


def demo(
    clients: int = typer.Option(4, min=1, max=64, help="Concurrent clients sending completions."),
    timeout: float = typer.Option(120.0, min=10.0, help="Seconds the canary phase may take."),
) -> None:
    """Register a good and a mismatched pair, canary the bad one, watch it roll back."""
    from specops.local.demo import DemoConfig, run_demo

    run_demo(Settings.from_env(), DemoConfig(clients=clients, timeout_s=timeout))
