"""The SLO spec: parse (YAML text → dict) and model (validated, frozen pydantic objects).

A spec file is versioned; an unknown ``version`` is refused. Every error names the SLO (and the window)
it is about. Example (``default-slo.yaml`` is the one SpecOps ships)::

    version: specops/slo/v2
    service: specops
    slos:
      - name: availability
        sli: {kind: availability}
        objective: 0.999
        period: 30d
      - name: tokens-per-step
        sli: {kind: tokens_per_step}
        objective: 0.2          # tokens per target step >= 1.25
        period: 30d
        alerting:               # budget 0.8: no burn above 1.25 can happen (see below)
          page: [{long: 1h, short: 5m, burn_rate: 1.2}]
          ticket: [{long: 3d, short: 6h, burn_rate: 1}]

Versions (:data:`SLI_KINDS_BY_VERSION`): ``specops/slo/v1`` knows the SLI kinds acceptance, availability
and latency; ``specops/slo/v2`` adds ``tokens_per_step`` and is otherwise the same schema. Why a new
version for one new kind: a reader refuses a version it does not know, so a SpecOps that reads only v1
fails loudly on a v2 file instead of rendering its other SLOs and silently dropping the one it cannot
(the SLO that watches a canary which stopped drafting would simply not exist). This reader accepts both
versions; a v1 file that uses a v2 kind is refused, naming the version it needs, so that a file which
says v1 stays readable by every v1 reader.

``tokens_per_step`` is an events-based ratio like the others: good events are accepted draft tokens, all
events are the output tokens verification produced (accepted draft tokens + target steps, each target
step of a sequence yielding one token of the target's own). So the error ratio is target steps /
(target steps + accepted) = 1 / (tokens per target step): exactly 1.0 when speculation is off, defined
whenever there is traffic, and 0/0 (silent) with none. An objective *o* therefore means "tokens per
target step >= 1 / (1 − o)", i.e. *o* = 1 − 1/tps: 0.2 ⇔ >= 1.25, 0.5 ⇔ >= 2.

Alert windows default to the Google SRE workbook's multi-window, multi-burn-rate table
(https://sre.google/workbook/alerting-on-slos/#6-multiwindow-multi-burn-rate-alerts): page at 14.4×
over 1 h and 5 m or 6× over 6 h and 30 m; ticket at 3× over 1 d and 2 h or 1× over 3 d and 6 h. They
scale with a 30-day period; an SLO can name its own windows (tests use seconds) and burn rates.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from specops.errors import InvalidInput

SPEC_VERSION_V1 = "specops/slo/v1"
SPEC_VERSION_V2 = "specops/slo/v2"
SPEC_VERSION = SPEC_VERSION_V2
"""The newest spec version (what ``default-slo.yaml`` is written in)."""

DEFAULT_SPEC_PATH = Path(__file__).with_name("default-slo.yaml")

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def duration_seconds(text: str) -> float:
    """``"5m"`` → 300.0. Prometheus durations of one unit (ms, s, m, h, d, w)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration like 5m, 1h or 30d: {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


Duration = Annotated[str, Field(description="a Prometheus duration of one unit: 30s, 5m, 1h, 30d")]


class SLIKind(StrEnum):
    """What an SLO measures (events-based ratios of good to all events)."""

    ACCEPTANCE = "acceptance"  # accepted draft tokens / draft tokens
    AVAILABILITY = "availability"  # requests without a server error / requests
    LATENCY = "latency"  # requests whose mean inter-token latency is at or under a threshold / all
    # accepted draft tokens / (accepted draft tokens + target steps); error ratio = 1 / tokens per target
    # step (1.0 with speculation off). objective = 1 − 1/tps: 0.2 means tokens per target step >= 1.25.
    # Since specops/slo/v2.
    TOKENS_PER_STEP = "tokens_per_step"


SLI_KINDS_BY_VERSION: dict[str, frozenset[SLIKind]] = {
    SPEC_VERSION_V1: frozenset({SLIKind.ACCEPTANCE, SLIKind.AVAILABILITY, SLIKind.LATENCY}),
    SPEC_VERSION_V2: frozenset(SLIKind),
}
"""Every spec version this code reads → the SLI kinds a file of that version may use."""


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SLI(_Frozen):
    """The indicator. ``latency_threshold_s`` (latency only) must be a bucket boundary of the histogram."""

    kind: SLIKind
    latency_threshold_s: float | None = None

    @model_validator(mode="after")
    def _threshold_only_for_latency(self) -> SLI:
        if self.kind is SLIKind.LATENCY and (self.latency_threshold_s is None or self.latency_threshold_s <= 0):
            raise ValueError("a latency SLI needs latency_threshold_s > 0 (a bucket boundary, seconds)")
        if self.kind is not SLIKind.LATENCY and self.latency_threshold_s is not None:
            raise ValueError(f"latency_threshold_s only applies to latency SLIs, not {self.kind}")
        return self


class BurnWindow(_Frozen):
    """One multi-window condition: both windows burn faster than ``burn_rate`` × the budget rate."""

    long: Duration
    short: Duration
    burn_rate: float = Field(gt=0)

    @field_validator("long", "short")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _short_below_long(self) -> BurnWindow:
        if duration_seconds(self.short) >= duration_seconds(self.long):
            raise ValueError(f"short window {self.short} must be shorter than long window {self.long}")
        return self


def _default_page() -> tuple[BurnWindow, ...]:
    return (BurnWindow(long="1h", short="5m", burn_rate=14.4), BurnWindow(long="6h", short="30m", burn_rate=6))


def _default_ticket() -> tuple[BurnWindow, ...]:
    return (BurnWindow(long="1d", short="2h", burn_rate=3), BurnWindow(long="3d", short="6h", burn_rate=1))


class Alerting(_Frozen):
    """Which windows page and which open a ticket; an empty list disables that severity."""

    page: tuple[BurnWindow, ...] = Field(default_factory=_default_page)
    ticket: tuple[BurnWindow, ...] = Field(default_factory=_default_ticket)

    def windows(self, severity: Severity) -> tuple[BurnWindow, ...]:
        return self.page if severity is Severity.PAGE else self.ticket


class SLO(_Frozen):
    """One objective: ``objective`` of events are good over ``period``."""

    name: str
    description: str = ""
    sli: SLI
    objective: float = Field(gt=0, lt=1)
    period: Duration = "30d"
    alerting: Alerting = Field(default_factory=Alerting)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"SLO name {value!r} must be lower-case letters, digits and dashes")
        return value

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @property
    def error_budget(self) -> float:
        """The share of events allowed to be bad: 1 − objective."""
        return round(1.0 - self.objective, 12)

    @model_validator(mode="after")
    def _alerts_can_fire(self) -> SLO:
        period = duration_seconds(self.period)
        for severity in Severity:
            for window in self.alerting.windows(severity):
                # An error ratio cannot exceed 1, so a burn rate above 1/budget can never be reached.
                threshold = window.burn_rate * self.error_budget
                if threshold >= 1:
                    raise ValueError(
                        f"{severity} window {window.long}/{window.short}: burn rate {window.burn_rate} × "
                        f"error budget {self.error_budget:g} = {threshold:g} ≥ 1, so the alert could never "
                        f"fire; lower the burn rate below {1 / self.error_budget:.3g}"
                    )
                if duration_seconds(window.long) > period:
                    raise ValueError(f"{severity} window {window.long} is longer than the period {self.period}")
        return self


class PrometheusRuleMeta(_Frozen):
    """Metadata of the PrometheusRule object (prometheus-operator)."""

    name: str = "specops-slos"
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class DriftAlert(_Frozen):
    """The drift alert on the ``specops_drift_detected`` gauge that ``specops drift run`` publishes."""

    enabled: bool = True
    severity: Severity = Severity.TICKET
    for_: Duration = Field(default="0s", alias="for")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SLOSpec(_Frozen):
    """A versioned set of SLOs for one service."""

    version: Literal["specops/slo/v1", "specops/slo/v2"]  # the keys of SLI_KINDS_BY_VERSION
    service: str = "specops"
    labels: dict[str, str] = Field(default_factory=dict)
    prometheus_rule: PrometheusRuleMeta = Field(default_factory=PrometheusRuleMeta)
    drift_alert: DriftAlert = Field(default_factory=DriftAlert)
    slos: tuple[SLO, ...]

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL.match(key):
                raise ValueError(f"label name {key!r} is not a Prometheus label name")
        return value

    @model_validator(mode="after")
    def _unique(self) -> SLOSpec:
        if not self.slos:
            raise ValueError("the spec defines no SLOs")
        names = [slo.name for slo in self.slos]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"SLO names must be unique, repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _kinds_of_this_version(self) -> SLOSpec:
        known = SLI_KINDS_BY_VERSION[self.version]
        for slo in self.slos:
            if slo.sli.kind not in known:
                needs = next(v for v, kinds in SLI_KINDS_BY_VERSION.items() if slo.sli.kind in kinds)
                raise ValueError(
                    f"SLO {slo.name!r}: SLI kind {slo.sli.kind} needs version {needs}; this spec says {self.version}"
                )
        return self


def parse(text: str, *, source: str = "<spec>") -> SLOSpec:
    """YAML text → validated spec. Raises :class:`InvalidInput` naming the file, the SLO and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInput(f"{source}: not YAML: {error}".replace("\n", " ")) from error
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source}: an SLO spec is a mapping with version and slos")
    version = raw.get("version")
    if not isinstance(version, str) or version not in SLI_KINDS_BY_VERSION:
        raise InvalidInput(
            f"{source}: unknown SLO spec version {version!r}; this SpecOps reads {' and '.join(SLI_KINDS_BY_VERSION)}"
        )
    try:
        return SLOSpec.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(f"{source}: {_describe(error, raw)}") from error


def load(path: Path | str) -> SLOSpec:
    """Read and validate the spec at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read SLO spec {path}: {error.strerror}") from error
    return parse(text, source=str(path))


def load_default() -> SLOSpec:
    """The SLOs SpecOps ships (``platform/specops/monitoring/default-slo.yaml``)."""
    return load(DEFAULT_SPEC_PATH)


def _describe(error: ValidationError, raw: dict[str, Any]) -> str:
    """The first validation problem as one line: ``SLO 'x': alerting.page.0: message``."""
    first = error.errors()[0]
    location = list(first["loc"])
    where = ""
    if len(location) >= 2 and location[0] == "slos" and isinstance(location[1], int):
        slos = raw.get("slos") or []
        index = location[1]
        name = slos[index].get("name") if index < len(slos) and isinstance(slos[index], dict) else None
        where = f"SLO {name or index!r}: "
        location = location[2:]
    field = ".".join(str(part) for part in location)
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}{field + ': ' if field else ''}{message}"
