"""kopf handlers: the Kubernetes body of the rollout brain.

* one **daemon** per SpeculativeDeployment runs :func:`specops_operator.reconcile.reconcile` in a worker
  thread, then sleeps until the next analysis is due or something relevant changes; one loop per
  object means reconciles of the same deployment never overlap;
* an **event** handler wakes that loop when the spec or the action/alerts annotations change, and one on
  InferenceServices wakes the owner when KServe reports readiness;
* an **index** of InferenceService readiness spares the API a read per analysis;
* a **delete** handler (behind the ``specops.io/cleanup`` finalizer) removes what owner references
  cannot: the MLflow ``canary`` alias of an unfinished rollout, and records the deletion in the audit log.

Handlers are registered on an explicit registry by :func:`register` (no module-level registry), so a
test or a benchmark builds its own operator with its own :class:`~specops_operator.reconcile.Dependencies`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf

from specops_operator import constants, reconcile, status_store
from specops_operator import status as status_

DAEMON_CANCELLATION_TIMEOUT_S = 10.0


def settings(*, posting: bool = True) -> kopf.OperatorSettings:
    """Operator settings: our finalizer name, standalone (one replica + leader election by the chart's
    Deployment strategy), and k8s Events for handler logs unless ``posting`` is off (the emulator)."""
    config = kopf.OperatorSettings()
    config.persistence.finalizer = constants.FINALIZER
    config.peering.standalone = True
    config.posting.enabled = posting
    config.watching.server_timeout = 300
    config.networking.request_timeout = 30
    return config


def register(registry: kopf.OperatorRegistry, dependencies: reconcile.Dependencies) -> None:
    """Register the operator's handlers on ``registry``; they act through ``dependencies``."""
    wakers: dict[tuple[str, str], asyncio.Event] = {}
    fingerprints: dict[tuple[str, str], str] = {}

    def wake(namespace: str, name: str) -> None:
        waker = wakers.get((namespace, name))
        if waker is not None:
            waker.set()

    @kopf.index(
        constants.KSERVE_GROUP, constants.KSERVE_VERSION, constants.ISVC_PLURAL, registry=registry, id="isvc_ready"
    )
    def isvc_ready(namespace: str, name: str, status: Any, **_: Any) -> dict[tuple[str, str], bool]:
        conditions = (status or {}).get("conditions") or []
        ready = any(item.get("type") == "Ready" and item.get("status") == "True" for item in conditions)
        return {(namespace, name): ready}

    @kopf.on.event(
        constants.KSERVE_GROUP,
        constants.KSERVE_VERSION,
        constants.ISVC_PLURAL,
        registry=registry,
        labels={constants.LABEL_DEPLOYMENT: kopf.PRESENT},
        id="isvc_changed",
    )
    async def isvc_changed(namespace: str, labels: Any, **_: Any) -> None:
        wake(namespace, labels[constants.LABEL_DEPLOYMENT])

    @kopf.on.event(constants.GROUP, constants.VERSION, constants.PLURAL, registry=registry, id="deployment_changed")
    async def deployment_changed(event: dict[str, Any], namespace: str, name: str, body: Any, **_: Any) -> None:
        key = (namespace, name)
        if event.get("type") == "DELETED":
            fingerprints.pop(key, None)
            return
        annotations = body.get("metadata", {}).get("annotations") or {}
        fingerprint = json.dumps(
            [
                body.get("spec"),
                annotations.get(constants.ACTION_ANNOTATION),
                annotations.get(constants.ACTION_ID_ANNOTATION),
                annotations.get(constants.ALERTS_ANNOTATION),
            ],
            sort_keys=True,
            default=str,
        )
        if fingerprints.get(key) != fingerprint:
            fingerprints[key] = fingerprint
            wake(namespace, name)

    @kopf.daemon(
        constants.GROUP,
        constants.VERSION,
        constants.PLURAL,
        registry=registry,
        cancellation_timeout=DAEMON_CANCELLATION_TIMEOUT_S,
        id="rollout",
    )
    async def rollout(
        stopped: kopf.DaemonStopped, body: Any, namespace: str, name: str, isvc_ready: kopf.Index, logger: Any, **_: Any
    ) -> None:
        key = (namespace, name)
        waker = wakers[key] = asyncio.Event()
        memory = status_store.Memory()

        def ready(space: str, isvc: str) -> bool | None:
            values = isvc_ready.get((space, isvc))
            return None if not values else any(values)

        try:
            while not stopped:
                waker.clear()
                view = reconcile.View.of(body)
                try:
                    outcome = await asyncio.to_thread(reconcile.reconcile, dependencies, view, memory, ready=ready)
                    delay = outcome.next_in
                    if outcome.decision is not None:
                        logger.info(f"{outcome.decision.kind.value}: {outcome.decision.reason}")
                except Exception as error:  # keep the loop alive; the next round retries
                    logger.exception(f"reconcile failed: {error}")
                    delay = reconcile.RETRY_S
                if delay > 0:
                    await _sleep(waker, stopped, delay)
        finally:
            if wakers.get(key) is waker:
                del wakers[key]

    @kopf.on.delete(constants.GROUP, constants.VERSION, constants.PLURAL, registry=registry, id="cleanup")
    def cleanup(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> None:
        state = status_.load_state(dict(status or {}))
        pair = (spec or {}).get("pair", {}).get("name")
        if pair and state is not None and state.canary_version is not None:
            dependencies.versions.delete_alias(pair, "canary")
        dependencies.audit.append(
            actor=dependencies.actor,
            action="deployment.deleted",
            subject=f"{namespace}/{name}",
            payload={
                "pair": pair,
                "stable_version": state.stable_version if state else None,
                "canary_version": state.canary_version if state else None,
            },
        )


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    """Sleep ``delay`` seconds, or less if woken or stopped."""
    woken = asyncio.ensure_future(waker.wait())
    halted = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, halted}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        halted.cancel()
