"""Generate: a validated :class:`~specops.monitoring.slo_spec.SLOSpec` → Prometheus rule groups (plain data).

Pure functions, no I/O; :mod:`specops.monitoring.writer` turns the groups into files. For each SLO:

* ``{service}-slo-sli-{slo}``: the error ratio over every window the alerts and the period need;
* ``{service}-slo-meta-{slo}``: objective, error budget, current and period burn rates, budget remaining;
* ``{service}-slo-alerts-{slo}``: one multi-window multi-burn-rate alert per severity (page, ticket).

Plus ``{service}-drift``: an alert on the drift gauge ``specops drift run`` publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from specops.errors import InvalidInput
from specops.monitoring import names, templates
from specops.monitoring.slo_spec import SLO, Severity, SLIKind, SLOSpec, duration_seconds


@dataclass(frozen=True)
class Rule:
    """One recording rule (``record``) or alerting rule (``alert``)."""

    expr: str
    record: str | None = None
    alert: str | None = None
    for_: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The rule as Prometheus's rules-file mapping, keys in Prometheus's documented order."""
        out: dict[str, object] = {"record": self.record} if self.record else {"alert": self.alert}
        out["expr"] = self.expr
        if self.for_:
            out["for"] = self.for_
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Rule, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "rules": [rule.as_dict() for rule in self.rules]}


_BY = ", ".join(names.SERIES_LABELS)


def generate(spec: SLOSpec) -> tuple[RuleGroup, ...]:
    """All rule groups of ``spec``; raises :class:`InvalidInput` naming the SLO if one yields nothing."""
    groups: list[RuleGroup] = []
    for slo in spec.slos:
        slo_groups = (sli_group(spec, slo), meta_group(spec, slo), alert_group(spec, slo))
        if not slo_groups[0].rules or not slo_groups[2].rules:
            raise InvalidInput(f"SLO {slo.name!r}: generated no {'SLI' if not slo_groups[0].rules else 'alert'} rules")
        groups.extend(slo_groups)
    if spec.drift_alert.enabled:
        groups.append(drift_group(spec))
    return tuple(groups)


def windows(slo: SLO) -> tuple[str, ...]:
    """Every window the SLO's rules need, shortest first: the alerts' windows and the period."""
    seen = {slo.period}
    for severity in Severity:
        for window in slo.alerting.windows(severity):
            seen.update((window.short, window.long))
    return tuple(sorted(seen, key=duration_seconds))


def _acceptance(slo: SLO, common: dict[str, str]) -> str:
    return templates.render(
        "sli_error_acceptance", draft_tokens=names.DRAFT_TOKENS, accepted_tokens=names.ACCEPTED_TOKENS, **common
    )


def _availability(slo: SLO, common: dict[str, str]) -> str:
    return templates.render(
        "sli_error_availability",
        errors=names.REQUEST_ERRORS,
        requests=names.REQUESTS,
        server_reason=names.SERVER_ERROR_REASON,
        **common,
    )


def _latency(slo: SLO, common: dict[str, str]) -> str:
    if slo.sli.latency_threshold_s is None:  # the spec refuses this; kept for a hand-built SLO
        raise InvalidInput(f"SLO {slo.name!r}: a latency SLI needs latency_threshold_s")
    return templates.render(
        "sli_error_latency", histogram=names.REQUEST_ITL, le=floatToGoString(slo.sli.latency_threshold_s), **common
    )


def _tokens_per_step(slo: SLO, common: dict[str, str]) -> str:
    return templates.render(
        "sli_error_tokens_per_step", target_steps=names.TARGET_STEPS, accepted_tokens=names.ACCEPTED_TOKENS, **common
    )


SLI_ERROR_EXPRS: dict[SLIKind, Callable[[SLO, dict[str, str]], str]] = {
    SLIKind.ACCEPTANCE: _acceptance,
    SLIKind.AVAILABILITY: _availability,
    SLIKind.LATENCY: _latency,
    SLIKind.TOKENS_PER_STEP: _tokens_per_step,
}
"""SLI kind → the function rendering its error ratio from the SLO and ``{by, window}``."""


def sli_error_expr(slo: SLO, window: str) -> str:
    """The PromQL of the SLO's error ratio over ``window``."""
    render = SLI_ERROR_EXPRS.get(slo.sli.kind)
    if render is None:
        raise InvalidInput(f"SLO {slo.name!r}: unknown SLI kind {slo.sli.kind}")
    return render(slo, {"by": _BY, "window": window})


def sli_group(spec: SLOSpec, slo: SLO) -> RuleGroup:
    rules = tuple(
        Rule(
            record=names.sli_error_record(window),
            expr=sli_error_expr(slo, window),
            labels=_labels(spec, slo, {names.LABEL_SLO_WINDOW: window}),
        )
        for window in windows(slo)
    )
    return RuleGroup(names.GROUP_SLI.format(service=spec.service, slo=slo.name), rules)


def meta_group(spec: SLOSpec, slo: SLO) -> RuleGroup:
    budget = _number(slo.error_budget)
    shortest = windows(slo)[0]
    burn = {"window_label": names.LABEL_SLO_WINDOW, "slo_label": names.LABEL_SLO, "slo": slo.name, "budget": budget}
    rules = (
        Rule(
            record=names.RECORD_OBJECTIVE,
            expr=templates.render("objective", value=_number(slo.objective)),
            labels=_labels(spec, slo),
        ),
        Rule(
            record=names.RECORD_ERROR_BUDGET,
            expr=templates.render("objective", value=budget),
            labels=_labels(spec, slo),
        ),
        Rule(
            record=names.RECORD_CURRENT_BURN_RATE,
            expr=templates.render("burn_rate", record=names.sli_error_record(shortest), **burn),
            labels=_labels(spec, slo),
        ),
        Rule(
            record=names.RECORD_PERIOD_BURN_RATE,
            expr=templates.render("burn_rate", record=names.sli_error_record(slo.period), **burn),
            labels=_labels(spec, slo),
        ),
        Rule(
            record=names.RECORD_BUDGET_REMAINING,
            expr=templates.render(
                "budget_remaining", record=names.RECORD_PERIOD_BURN_RATE, slo_label=names.LABEL_SLO, slo=slo.name
            ),
            labels=_labels(spec, slo),
        ),
    )
    return RuleGroup(names.GROUP_META.format(service=spec.service, slo=slo.name), rules)


def alert_group(spec: SLOSpec, slo: SLO) -> RuleGroup:
    rules = []
    for severity in Severity:
        burn_windows = slo.alerting.windows(severity)
        if not burn_windows:
            continue
        conditions = [
            {
                "short_record": names.sli_error_record(w.short),
                "long_record": names.sli_error_record(w.long),
                "burn_rate": _number(w.burn_rate),
            }
            for w in burn_windows
        ]
        expr = templates.render(
            "multi_burn_alert",
            conditions=conditions,
            budget=_number(slo.error_budget),
            window_label=names.LABEL_SLO_WINDOW,
            slo_label=names.LABEL_SLO,
            slo=slo.name,
        )
        described = " or ".join(f"{_number(w.burn_rate)}× over {w.long} and {w.short}" for w in burn_windows)
        rules.append(
            Rule(
                alert=names.alert_name(slo.name),
                expr=expr,
                labels=_labels(spec, slo, {names.LABEL_SEVERITY: severity.value}),
                annotations={
                    "summary": (
                        f"{{{{ $labels.deployment }}}} {{{{ $labels.role }}}} {{{{ $labels.pair_version }}}}: "
                        f"SLO {slo.name} is burning its error budget ({severity.value})"
                    ),
                    "description": (
                        f"{slo.description or slo.name} (objective {_number(slo.objective)} over "
                        f"{slo.period}): error ratio above the budget rate by {described}."
                    ),
                },
            )
        )
    return RuleGroup(names.GROUP_ALERTS.format(service=spec.service, slo=slo.name), tuple(rules))


def drift_group(spec: SLOSpec) -> RuleGroup:
    by = ", ".join((names.LABEL_DEPLOYMENT, names.LABEL_VERSION))
    rule = Rule(
        alert=names.ALERT_DRIFT,
        expr=templates.render("drift_alert", by=by, detected=names.DRIFT_DETECTED),
        for_=spec.drift_alert.for_ if duration_seconds(spec.drift_alert.for_) > 0 else None,
        labels={**spec.labels, names.LABEL_SEVERITY: spec.drift_alert.severity.value},
        annotations={
            "summary": (
                "{{ $labels.deployment }} {{ $labels.pair_version }}: request traffic drifted from its reference"
            ),
            "description": "specops drift run found the share of drifted columns at or above its drift_share; "
            "see the drift report in the governance store.",
        },
    )
    return RuleGroup(names.GROUP_DRIFT.format(service=spec.service), (rule,))


def _labels(spec: SLOSpec, slo: SLO, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**spec.labels, names.LABEL_SLO: slo.name, **(extra or {})}


def _number(value: float) -> str:
    """Shortest exact text of a ratio (0.999, 14.4, 6) so the output is stable byte for byte."""
    return format(round(value, 12), "g") if abs(value) >= 1e-4 else repr(value)
