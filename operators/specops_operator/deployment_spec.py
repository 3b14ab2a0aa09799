"""The ``spec`` of a SpeculativeDeployment, parsed and checked.

The CRD's OpenAPI schema (``charts/specops/crds/speculativedeployments.yaml``) rejects most bad input
at the API server. The operator checks again here, because (a) some rules cannot be written in
OpenAPI (steps strictly increasing and ending at 100), (b) objects created before a schema change are
not re-validated, and (c) the API emulator the tests run against does not validate. A failed check
becomes a ``Ready=False, reason=InvalidSpec`` condition whose message names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from specops.errors import InvalidInput
from specops.rollout.model import RolloutPolicy

VERSION_PATTERN = re.compile(r"^([0-9]+|[a-z][a-z0-9_-]{0,62})$")
"""A registry version number (``3``) or an alias (``production``, ``candidate``)."""
QUANTITY_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")

RUNTIMES = ("specops", "vllm")
DEPLOYMENT_MODES = ("Serverless", "Standard")
DEFAULT_DEPLOYMENT_MODE = "Standard"
"""KServe's Standard (raw Deployment) mode: no Knative needed, the mode KServe recommends for
generative models; canary traffic then goes through a weighted Gateway API HTTPRoute."""
POLICIES = ("Automatic", "Manual")
ON_INCONCLUSIVE = ("Rollback", "Pause")
DEFAULT_IMAGE = "ghcr.io/specops/specops-server:0.1.0"
DEFAULT_VLLM_FORMAT = "huggingface"


@dataclass(frozen=True)
class RuntimeSpec:
    """Which model server runs the pair.

    type: ``specops`` (our KServe model server image) or ``vllm`` (KServe's Hugging Face runtime with
        vLLM's ``--speculative-config``).
    image: container image of the specops runtime (ignored for vllm, whose image is KServe's runtime).
    num_speculative_tokens: draft length k; None takes the pair's own setting.
    args: extra arguments appended to the server's command line.
    """

    type: str = "specops"
    image: str = DEFAULT_IMAGE
    num_speculative_tokens: int | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourcesSpec:
    """Per-replica resources: GPUs (``nvidia.com/gpu``), memory and CPU as Kubernetes quantities."""

    gpus: int = 1
    memory: str = "16Gi"
    cpu: str = "4"


@dataclass(frozen=True)
class GatewaySpec:
    """The Gateway API parent of the HTTPRoute (Standard mode). Defaults: KServe's own gateway."""

    name: str = "kserve-ingress-gateway"
    namespace: str = "kserve"
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class SloSpec:
    """Service level objectives the monitoring stack turns into burn-rate alerts."""

    availability: float = 0.999
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None


@dataclass(frozen=True)
class DriftSpec:
    """Request-record sampling and the drift monitor's share of drifted columns that alerts."""

    enabled: bool = True
    sample_rate: float = 0.1
    drift_share: float = 0.5


@dataclass(frozen=True)
class DeploymentSpec:
    """A parsed ``spec``; ``policy`` is the rollout brain's policy built from ``spec.rollout``."""

    pair: str
    version: str
    policy: RolloutPolicy
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    deployment_mode: str = DEFAULT_DEPLOYMENT_MODE
    gateway: GatewaySpec = field(default_factory=GatewaySpec)
    slo: SloSpec = field(default_factory=SloSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)


def parse(spec: dict[str, Any] | None) -> DeploymentSpec:
    """Parse ``spec``; raise :class:`specops.errors.InvalidInput` naming the first bad field."""
    reader = _Reader(spec or {}, "spec")
    pair = reader.child("pair", required=True)
    name = pair.string("name", required=True, pattern=NAME_PATTERN)
    version = pair.string("version", required=True, pattern=VERSION_PATTERN)

    runtime = reader.child("runtime")
    runtime_spec = RuntimeSpec(
        type=runtime.enum("type", RUNTIMES, default="specops"),
        image=runtime.string("image", default=DEFAULT_IMAGE),
        num_speculative_tokens=runtime.integer("numSpeculativeTokens", minimum=1, maximum=32),
        args=tuple(runtime.strings("args")),
    )
    resources = reader.child("resources")
    resources_spec = ResourcesSpec(
        gpus=resources.integer("gpus", default=1, minimum=0, maximum=16),
        memory=resources.string("memory", default="16Gi", pattern=QUANTITY_PATTERN),
        cpu=resources.string("cpu", default="4", pattern=QUANTITY_PATTERN),
    )
    gateway = reader.child("gateway")
    gateway_spec = GatewaySpec(
        name=gateway.string("name", default=GatewaySpec.name, pattern=NAME_PATTERN),
        namespace=gateway.string("namespace", default=GatewaySpec.namespace, pattern=NAME_PATTERN),
        hostnames=tuple(gateway.strings("hostnames")),
    )
    slo = reader.child("slo")
    slo_spec = SloSpec(
        availability=slo.number("availability", default=0.999, minimum=0.5, maximum=0.99999),
        ttft_p95_s=slo.number("ttftP95Seconds", minimum=0.001),
        itl_p95_s=slo.number("itlP95Seconds", minimum=0.0001),
    )
    drift = reader.child("drift")
    drift_spec = DriftSpec(
        enabled=drift.boolean("enabled", default=True),
        sample_rate=drift.number("sampleRate", default=0.1, minimum=0.0, maximum=1.0),
        drift_share=drift.number("driftShare", default=0.5, minimum=0.0, maximum=1.0),
    )
    return DeploymentSpec(
        pair=name,
        version=version,
        policy=_policy(reader),
        runtime=runtime_spec,
        resources=resources_spec,
        deployment_mode=reader.enum("deploymentMode", DEPLOYMENT_MODES, default=DEFAULT_DEPLOYMENT_MODE),
        gateway=gateway_spec,
        slo=slo_spec,
        drift=drift_spec,
    )


def _policy(reader: _Reader) -> RolloutPolicy:
    rollout = reader.child("rollout")
    thresholds = rollout.child("thresholds")
    comparison = rollout.child("compareToStable")
    steps = rollout.integers("steps", default=(10, 25, 50, 100), minimum=1, maximum=100)
    if list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise InvalidInput(f"spec.rollout.steps must be strictly increasing and end at 100, got {list(steps)}")
    try:
        return RolloutPolicy(
            steps=tuple(steps),
            analysis_interval_s=rollout.number("analysisIntervalSeconds", default=60.0, minimum=1.0, maximum=86400.0),
            min_draft_tokens=rollout.integer("minDraftTokens", default=500, minimum=0),
            min_requests=rollout.integer("minRequests", default=10, minimum=0),
            min_target_steps=rollout.integer("minTargetSteps", default=200, minimum=0),
            min_acceptance_rate=thresholds.number("minAcceptanceRate", default=0.3, minimum=0.0, maximum=1.0),
            min_tokens_per_step=thresholds.number("minTokensPerStep", default=1.1, minimum=1.0, maximum=32.0),
            max_error_rate=thresholds.number("maxErrorRate", default=0.05, minimum=0.0, maximum=1.0),
            max_itl_p95_s=thresholds.number("maxItlP95Seconds", minimum=0.0001),
            compare_to_stable=comparison.boolean("enabled", default=True),
            comparison_alpha=comparison.number("alpha", default=0.01, minimum=0.000001, maximum=0.5),
            min_tokens_per_step_effect=comparison.number("minTokensPerStepEffect", default=0.05, minimum=0.0),
            min_itl_effect=comparison.number("minItlEffect", default=0.2, minimum=0.0),
            failure_limit=rollout.integer("failureLimit", default=2, minimum=1, maximum=100),
            automatic=reader.enum("policy", POLICIES, default="Automatic") == "Automatic",
            bake_s=rollout.number("bakeSeconds", default=3600.0, minimum=0.0),
            max_inconclusive_s=rollout.number("maxInconclusiveSeconds", default=1800.0, minimum=1.0),
            on_inconclusive=rollout.enum("onInconclusive", ON_INCONCLUSIVE, default="Rollback").lower(),
        )
    except ValueError as error:  # RolloutPolicy's own checks
        raise InvalidInput(f"spec.rollout: {error}") from error


class _Reader:
    """Typed access to one mapping of the spec; every error names the full field path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise InvalidInput(f"{path} must be an object, got {type(data).__name__}")
        self.data = data
        self.path = path

    def child(self, key: str, *, required: bool = False) -> _Reader:
        if key not in self.data or self.data[key] is None:
            if required:
                raise InvalidInput(f"{self.path}.{key} is required")
            return _Reader({}, f"{self.path}.{key}")
        return _Reader(self.data[key], f"{self.path}.{key}")

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise InvalidInput(f"{self.path}.{key} is required")
        return value

    def string(
        self, key: str, *, required: bool = False, default: str | None = None, pattern: re.Pattern[str] | None = None
    ) -> Any:
        value = self._get(key, required)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a version written as a YAML number
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{self.path}.{key} must be a non-empty string, got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise InvalidInput(f"{self.path}.{key} {value!r} does not match {pattern.pattern}")
        return value

    def strings(self, key: str) -> list[str]:
        value = self._get(key, False) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidInput(f"{self.path}.{key} must be a list of strings, got {value!r}")
        return value

    def enum(self, key: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self._get(key, False)
        if value is None:
            return default
        if value not in choices:
            raise InvalidInput(f"{self.path}.{key} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidInput(f"{self.path}.{key} must be true or false, got {value!r}")
        return value

    def number(
        self, key: str, *, default: float | None = None, minimum: float | None = None, maximum: float | None = None
    ) -> Any:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{self.path}.{key} must be a number, got {value!r}")
        self._range(key, value, minimum, maximum)
        return float(value)

    def integer(
        self, key: str, *, default: int | None = None, minimum: int | None = None, maximum: int | None = None
    ) -> Any:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{self.path}.{key} must be an integer, got {value!r}")
        self._range(key, value, minimum, maximum)
        return value

    def integers(self, key: str, *, default: tuple[int, ...], minimum: int, maximum: int) -> tuple[int, ...]:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"{self.path}.{key} must be a non-empty list of integers, got {value!r}")
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int):
                raise InvalidInput(f"{self.path}.{key}[{index}] must be an integer, got {item!r}")
            self._range(f"{key}[{index}]", item, minimum, maximum)
        return tuple(value)

    def _range(self, key: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise InvalidInput(f"{self.path}.{key} must be >= {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise InvalidInput(f"{self.path}.{key} must be <= {maximum:g}, got {value!r}")
