"""`specops alerts receive`: the Alertmanager webhook receiver that hands SLO pages to the rollout brain."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from specops.errors import InvalidInput
from specops.settings import Settings


def install(app: typer.Typer) -> None:
    """Add the ``alerts`` group to ``app``."""
    alerts = typer.Typer(help="Alertmanager webhooks → incidents → rollout decisions.", no_args_is_help=True)
    alerts.command()(receive)
    app.add_typer(alerts, name="alerts")


def receive(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (0.0.0.0 with --public).")] = 9095,
    public: Annotated[bool, typer.Option(help="Listen on every interface.")] = False,
    kube: Annotated[bool, typer.Option("--kube", help="Deliver to SpeculativeDeployments (annotation).")] = False,
    namespace: Annotated[str, typer.Option(help="Default namespace of deployments (--kube).")] = "default",
) -> None:
    """Receive Alertmanager webhooks (bearer token from $SPECOPS_RECEIVER_TOKEN) and hand alerts over.

    Locally the firing alerts are posted for the runtime serving the deployment (it reads them at each
    tick); with --kube they become the deployment's ``specops.io/alerts`` annotation for the operator.
    """
    import uvicorn

    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.monitoring.receiver import create_app

    token = os.environ.get("SPECOPS_RECEIVER_TOKEN", "")
    if not token:
        raise InvalidInput("set SPECOPS_RECEIVER_TOKEN: the receiver never runs without a bearer token")
    settings = Settings.from_env()
    if kube:
        from specops.kube import alerts as kube_alerts

        sink = kube_alerts.sink(namespace)
    else:
        from specops.local.state_files import FileStateStore

        sink = FileStateStore(settings.home).post_alerts
    store = open_store(settings.database_url)
    app = create_app(token=token, sink=sink, store=store, audit=AuditLog(store), textfile_dir=settings.home / "metrics")
    uvicorn.run(app, host="0.0.0.0" if public else "127.0.0.1", port=port, log_level="warning")
