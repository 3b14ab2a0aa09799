"""kmock's Kubernetes emulator set up for the operator's tests and benchmark (needs the dev extra).

:class:`EmulatedCluster` serves the emulator from a thread with its own event loop, so the test thread
and kopf's thread can both block on HTTP while it answers, with the resources the operator touches
declared for discovery.

kmock 0.8 decides which reaction serves a request by asking each reaction's view whether it contains
the request, and a view answers by filtering *every request recorded so far*: the cost of a request
grows with the number served before it (600 ms per request after a few hundred on this machine).
:func:`speed_up_kmock` answers the same question for one request directly — the request passes a
filter chain iff it passes each filter's criteria and the chain's root recorded it — which keeps the
emulator's behaviour and makes a request's cost constant. Views whose membership depends on other
requests (slices, exclusions, groups) keep kmock's own answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from specops_operator import constants

VERBS = {"list", "watch", "get", "create", "update", "patch", "delete"}
_PATCHED = False


def speed_up_kmock() -> None:
    """Make ``request in view`` constant-time for kmock's plain filter chains (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from kmock._internal import dsl, rendering

    original = dsl.View.__contains__

    def contains(view: Any, item: Any) -> bool:
        if not isinstance(item, rendering.Request):
            return original(view, item)
        kind = type(view)
        if kind is dsl.Root:
            return any(request is item for request in reversed(view._requests))
        if kind is dsl.Filter:
            return bool(view.criteria(item)) and contains(view._source, item)
        if kind in (dsl.Priority, dsl.Chained):
            return contains(view._source, item)
        return original(view, item)

    dsl.View.__contains__ = contains  # type: ignore[method-assign]
    _PATCHED = True


def declare(emulator: Any) -> None:
    """Declare the resources the operator lists, watches and writes (kopf needs them discoverable)."""
    import kmock

    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs=VERBS)
    emulator.resources[f"{constants.API_VERSION}/{constants.PLURAL}"] = kmock.ResourceInfo(
        kind=constants.KIND, namespaced=True, verbs=VERBS, subresources={"status"}
    )
    emulator.resources[f"{constants.KSERVE_GROUP}/{constants.KSERVE_VERSION}/{constants.ISVC_PLURAL}"] = (
        kmock.ResourceInfo(kind=constants.ISVC_KIND, namespaced=True, verbs=VERBS, subresources={"status"})
    )
    emulator.resources[f"{constants.GATEWAY_GROUP}/{constants.GATEWAY_VERSION}/{constants.ROUTE_PLURAL}"] = (
        kmock.ResourceInfo(kind=constants.ROUTE_KIND, namespaced=True, verbs=VERBS)
    )


class EmulatedCluster:
    """kmock's stateful Kubernetes emulator in a thread: ``with EmulatedCluster(port) as cluster: cluster.url``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.emulator: Any = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def __enter__(self) -> EmulatedCluster:
        self.thread.start()
        if not self._started.wait(30):
            raise RuntimeError("kmock did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as error:  # surfaced by __enter__
            self._error = error
            self._started.set()

    async def _serve(self) -> None:
        import kmock

        speed_up_kmock()
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator, port=self.port) as server:
            declare(emulator)
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._started.set()
            while not self._stop.is_set():
                # Forget served requests (kept only for assertions we do not make): memory stays flat.
                del emulator._requests[:-1000]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=5.0)

    def client(self) -> Any:
        """A :class:`specops_operator.kube.KubeClient` talking to the emulator."""
        from specops_operator import kube

        return kube.KubeClient(kube.api_client(host=self.url))

    def api(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the emulator (for :mod:`.actions` and :mod:`.alerts`)."""
        from specops_operator import kube

        return kube.api_client(host=self.url)
