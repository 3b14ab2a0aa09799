"""``ServingBackend`` over KServe: the rollout brain's traffic decisions applied to the Kubernetes API.

One instance serves one reconcile of one deployment. It is built with the rollout state as it was
before the decision (``prior``), because the port's ``remove_canary()`` does not say which version to
restore: before a promotion it is the stable version, after one (a rollback within the bake time) it
is the previous version — exactly how :func:`specops.rollout.brain.decide` restores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from specops.rollout.model import Phase, Role, RolloutState
from specops_operator import builders, constants, kube
from specops_operator.deployment_spec import DeploymentSpec

SourceLookup = Callable[[str], builders.PairSource]
"""version → where its files are (the registry adapter's ``source``)."""
ReadyLookup = Callable[[str], bool | None]
"""InferenceService name → Ready (None: not seen yet)."""


class KServeBackend:
    """Serving port for one SpeculativeDeployment, in its spec's deployment mode."""

    def __init__(
        self,
        *,
        client: kube.KubeClient,
        owner: builders.Owner,
        spec: DeploymentSpec,
        sources: SourceLookup,
        prior: RolloutState,
        ready: ReadyLookup = lambda name: None,
    ) -> None:
        self.client = client
        self.owner = owner
        self.spec = spec
        self.sources = sources
        self.prior = prior
        self.ready = ready
        self.serverless = spec.deployment_mode == "Serverless"
        self.stable_version = prior.stable_version
        self.canary_version = prior.canary_version

    # ------------------------------------------------------------------------ the port

    def deploy_stable(self, version: str) -> None:
        self.stable_version, self.canary_version = version, None
        self._apply_isvc(version, Role.STABLE, canary_percent=None)
        if not self.serverless:
            self._apply_route(canary_weight=0)

    def start_canary(self, version: str, weight: int) -> None:
        self.canary_version = version
        if self.serverless:
            self._apply_isvc(version, Role.CANARY, canary_percent=weight)
            return
        self._apply_isvc(version, Role.CANARY, canary_percent=None)
        # The route sends traffic to the new predictor only once KServe reports it Ready (see sync).
        self._apply_route(canary_weight=weight if self._is_ready(version) else 0)

    def set_canary_weight(self, weight: int) -> None:
        if self.serverless:
            self._patch_isvc(self.owner.name, {"spec": {"predictor": {"canaryTrafficPercent": weight}}})
        else:
            self._apply_route(canary_weight=weight)

    def promote_canary(self) -> None:
        if self.canary_version is None:
            return
        if self.serverless:
            # KServe: without canaryTrafficPercent the latest ready revision takes 100 %.
            self._patch_isvc(
                self.owner.name,
                {
                    "metadata": {"annotations": {"specops.io/stable-version": self.canary_version}},
                    "spec": {"predictor": {"canaryTrafficPercent": None}},
                },
            )
        else:
            # The old stable InferenceService stays (no traffic) for an instant rollback within the bake
            # time; :meth:`sync` removes it once the bake time is over.
            self.stable_version, self.canary_version = self.canary_version, None
            self._apply_route(canary_weight=0)
        self.stable_version, self.canary_version = self.canary_version or self.stable_version, None

    def remove_canary(self, stable_version: str | None = None) -> None:
        restore, retire = self._rollback_versions(stable_version)
        if self.serverless:
            # KServe's rollback: canaryTrafficPercent 0 sends all traffic to the last rolled-out revision.
            self._patch_isvc(
                self.owner.name,
                {
                    "metadata": {"annotations": {"specops.io/stable-version": restore}},
                    "spec": {"predictor": {"canaryTrafficPercent": 0}},
                },
            )
        else:
            if restore is not None:
                # Traffic first: the route is what makes the rollback effective.
                self.stable_version, self.canary_version = restore, None
                self._apply_route(canary_weight=0)
                if (
                    self.prior.phase is Phase.PROMOTED
                    and self.client.get(kube.INFERENCE_SERVICES, self.owner.namespace, self._name(restore)) is None
                ):
                    self._apply_isvc(restore, Role.STABLE, canary_percent=None)  # retired after the bake
            if retire is not None and retire != restore:
                self.client.delete(kube.INFERENCE_SERVICES, self.owner.namespace, self._name(retire))
        self.stable_version, self.canary_version = restore, None

    # ------------------------------------------------------------------------ convergence

    def sync(self, state: RolloutState, *, now: float) -> list[str]:
        """Bring the cluster in line with ``state`` (idempotent); returns what it changed.

        Recreates missing objects, moves the Standard-mode route to the state's weight once the canary
        is Ready, and retires InferenceServices of versions no longer needed once the bake time is over.
        """
        changed: list[str] = []
        if state.stable_version is None:
            return changed
        self.stable_version, self.canary_version = state.stable_version, state.canary_version
        namespace = self.owner.namespace
        baking = (
            state.phase in (Phase.PROMOTING, Phase.PROMOTED)
            and state.promoted_at is not None
            and now - state.promoted_at <= self.spec.policy.bake_s
            and state.previous_version is not None
        )
        if self.serverless:
            current = self.client.get(kube.INFERENCE_SERVICES, namespace, self.owner.name)
            if current is None:
                version = state.canary_version or state.stable_version
                role = Role.CANARY if state.canary_version else Role.STABLE
                self._apply_isvc(version, role, canary_percent=state.weight if state.canary_version else None)
                changed.append(f"recreated InferenceService {self.owner.name}")
            elif state.canary_version is None and not baking and _role(current) != Role.STABLE.value:
                # a promoted canary revision still reports role "canary"; a new revision fixes that, but
                # only after the bake time: KServe's rollback goes back to the previous revision
                self._apply_isvc(state.stable_version, Role.STABLE, canary_percent=None)
                changed.append(f"relabelled InferenceService {self.owner.name} as stable")
            return changed
        wanted = {state.stable_version: Role.STABLE}
        if state.canary_version is not None:
            wanted[state.canary_version] = Role.CANARY
        existing = {
            item["metadata"]["name"]: item
            for item in self.client.list(
                kube.INFERENCE_SERVICES, namespace, labels={constants.LABEL_DEPLOYMENT: self.owner.name}
            )
        }
        for version, role in wanted.items():
            name = self._name(version)
            if name not in existing:
                self._apply_isvc(version, role, canary_percent=None)
                changed.append(f"recreated InferenceService {name}")
            elif _role(existing[name]) != role.value:
                # a promoted canary keeps serving (the route already points at it) while its pods roll
                # over to the stable role, so its metrics and alerts are the production ones
                self._apply_isvc(version, role, canary_percent=None)
                changed.append(f"relabelled InferenceService {name} as {role.value}")
        keep = {self._name(version) for version in wanted}
        if baking:
            keep.add(self._name(state.previous_version or ""))
        for name in existing:
            if name not in keep:
                self.client.delete(kube.INFERENCE_SERVICES, namespace, name)
                changed.append(f"retired InferenceService {name}")
        weight = state.weight if state.canary_version and self._is_ready(state.canary_version) else 0
        route = self.client.get(kube.HTTP_ROUTES, namespace, self.owner.name)
        expected = self._route(canary_weight=weight)
        if route is None or builders.route_weights(route) != builders.route_weights(expected):
            self._apply_route(canary_weight=weight)
            changed.append(f"route weights {builders.route_weights(expected)}")
        return changed

    def serving_names(self, state: RolloutState) -> dict[str, str]:
        """Role → InferenceService name for the versions ``state`` serves."""
        names = {}
        if state.stable_version is not None:
            names[Role.STABLE.value] = self._name(state.stable_version)
        if state.canary_version is not None:
            names[Role.CANARY.value] = self._name(state.canary_version)
        return names

    # ------------------------------------------------------------------------ helpers

    def _rollback_versions(self, stable_version: str | None) -> tuple[str | None, str | None]:
        """(version to restore, version to retire) for a rollback decided from ``prior``."""
        prior = self.prior
        if prior.phase is Phase.PROMOTED:  # rollback within the bake time
            return stable_version or prior.previous_version, prior.stable_version
        return stable_version or prior.stable_version, prior.canary_version

    def _name(self, version: str) -> str:
        return builders.isvc_name(self.owner.name, mode=self.spec.deployment_mode, version=version)

    def _is_ready(self, version: str) -> bool:
        return bool(self.ready(self._name(version)))

    def _apply_isvc(self, version: str, role: Role, *, canary_percent: int | None) -> None:
        manifest = builders.inference_service(
            owner=self.owner,
            spec=self.spec,
            version=version,
            role=role.value,
            source=self.sources(version),
            canary_traffic_percent=canary_percent,
        )
        existing = self.client.get(kube.INFERENCE_SERVICES, self.owner.namespace, manifest["metadata"]["name"])
        if existing is None:
            self.client.create(kube.INFERENCE_SERVICES, self.owner.namespace, manifest)
            return
        patch = {
            "metadata": {key: manifest["metadata"][key] for key in ("labels", "annotations", "ownerReferences")},
            "spec": manifest["spec"],
        }
        if canary_percent is None:
            patch["spec"]["predictor"]["canaryTrafficPercent"] = None  # merge patch: remove the key
        self._patch_isvc(manifest["metadata"]["name"], patch)

    def _patch_isvc(self, name: str, patch: dict[str, Any]) -> None:
        self.client.patch(kube.INFERENCE_SERVICES, self.owner.namespace, name, patch)

    def _route(self, *, canary_weight: int) -> dict[str, Any]:
        assert self.stable_version is not None
        return builders.http_route(
            owner=self.owner,
            spec=self.spec,
            stable_version=self.stable_version,
            canary_version=self.canary_version,
            canary_weight=canary_weight,
        )

    def _apply_route(self, *, canary_weight: int) -> None:
        manifest = self._route(canary_weight=canary_weight)
        try:
            self.client.patch(kube.HTTP_ROUTES, self.owner.namespace, self.owner.name, {"spec": manifest["spec"]})
        except kube.ApiException as error:
            if error.status != 404:
                raise
            self.client.create(kube.HTTP_ROUTES, self.owner.namespace, manifest)


def _role(isvc: dict[str, Any]) -> str | None:
    """The role an InferenceService was deployed with (its servers label their metrics with it)."""
    return (isvc.get("metadata", {}).get("labels") or {}).get(constants.LABEL_ROLE)
