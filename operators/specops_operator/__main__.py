"""``python -m specops_operator`` / ``specops-operator``: run the operator against the cluster.

Configuration (environment): ``SPECOPS_PROMETHEUS_URL`` (Prometheus HTTP API, default
``http://prometheus-operated.monitoring.svc:9090``), ``MLFLOW_TRACKING_URI`` and
``SPECOPS_DATABASE_URL`` (see :class:`specops.settings.Settings`), ``SPECOPS_WATCH_NAMESPACES``
(comma-separated; empty: all namespaces). Kubernetes credentials: in-cluster, else kubeconfig.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"


def build_dependencies(*, prometheus_url: str):  # type: ignore[no-untyped-def]
    """The production dependencies: Kubernetes from the environment, MLflow registry, SQL audit log."""
    import httpx

    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.settings import Settings
    from specops_operator import kube, reconcile
    from specops_operator.registry import RegistryAliases

    settings = Settings.from_env()
    try:
        from specops.registry import PairRegistry
    except ImportError as error:  # pragma: no cover - the registry package ships with specops
        raise SystemExit(f"specops-operator: the MLflow registry adapter is missing: {error}") from error
    return reconcile.Dependencies(
        kube=kube.KubeClient(kube.api_client()),
        http=httpx.Client(timeout=10.0),
        prometheus_url=prometheus_url,
        versions=RegistryAliases(PairRegistry.from_settings(settings)),
        audit=AuditLog(open_store(settings.database_url)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specops-operator", description="Run the SpecOps Kubernetes operator.")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--prometheus-url", default=os.environ.get("SPECOPS_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL))
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint (empty to disable)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    namespaces = args.namespace or [n for n in os.environ.get("SPECOPS_WATCH_NAMESPACES", "").split(",") if n]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import kopf

    from specops_operator import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry, build_dependencies(prometheus_url=args.prometheus_url))

    @kopf.on.login(registry=registry)
    def login(**kwargs):  # type: ignore[no-untyped-def]
        return kopf.login_via_client(**kwargs)

    kopf.run(
        registry=registry,
        settings=handlers.settings(),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
