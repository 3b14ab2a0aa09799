"""Grafana dashboards as code (grafana-foundation-sdk), committed as JSON under ``dashboards/``.

``python -m specops.monitoring.dashboards [--out DIR]`` rewrites the JSON; a test proves the committed
files equal what this module builds. Every PromQL expression is collected by :func:`expressions` so
the end-to-end test can execute each one against a live Prometheus.

Template variables: ``datasource`` (any Prometheus), ``model_name`` (multi, "All"), ``draft_cost_ratio``
(the draft's cost per token relative to the target's, for the speedup estimate) and ``event_window``
(how far back the rollout annotations compare series).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from specops.monitoring import names

UID = "specops-overview"
TITLE = "SpecOps — speculative decoding"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "dashboards"
FILE_NAME = f"{UID}.json"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = '{model_name=~"$model_name"}'
RATE = "$__rate_interval"
BY = "pair_version, role"


def _rate(metric: str, by: str = BY, selector: str = SEL) -> str:
    return f"sum by ({by}) (rate({metric}{selector}[{RATE}]))"


def _or_zero(metric: str, like: str, selector: str = SEL) -> str:
    """``metric``'s rate, or 0 where ``like`` has traffic (a counter a version never exported is zero)."""
    return f"(\n  {_rate(metric, selector=selector)}\n  or\n  {_rate(like)} * 0\n)"


_SPECULATIVE = f'{{model_name=~"$model_name", {names.LABEL_MODE}="{names.STEP_MODE_SPECULATIVE}"}}'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat
    min: float | None = None
    max: float | None = None


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    (
        "Speculative decoding",
        (
            PanelSpec(
                "Acceptance rate",
                "Accepted / draft tokens, by version and role.",
                (
                    Query(
                        f"{_rate(names.ACCEPTED_TOKENS)}\n/\n{_rate(names.DRAFT_TOKENS)}", "{{pair_version}} {{role}}"
                    ),
                ),
                unit="percentunit",
                min=0,
                max=1,
            ),
            PanelSpec(
                "Mean accepted length",
                "Tokens per target forward pass: 1 + accepted tokens / drafts.",
                (Query(f"1 + {_rate(names.ACCEPTED_TOKENS)}\n/\n{_rate(names.DRAFTS)}", "{{pair_version}} {{role}}"),),
                min=1,
            ),
            PanelSpec(
                "Tokens per target step",
                "Output tokens each target forward step gives a sequence: 1 + accepted tokens / target steps; "
                "exactly 1 when speculation is off (the tokens-per-step SLO), defined whenever there is traffic.",
                (
                    Query(
                        f"1 + {_or_zero(names.ACCEPTED_TOKENS, names.TARGET_STEPS)}\n/\n{_rate(names.TARGET_STEPS)}",
                        "{{pair_version}} {{role}}",
                    ),
                ),
                min=1,
            ),
            PanelSpec(
                "Share of steps that speculated",
                "Target steps in which the sequence verified at least one draft token / all target steps; "
                "0 when the engine has turned speculation off.",
                (
                    Query(
                        f"{_or_zero(names.TARGET_STEPS, names.TARGET_STEPS, selector=_SPECULATIVE)}\n/\n"
                        f"{_rate(names.TARGET_STEPS)}",
                        "{{pair_version}} {{role}}",
                    ),
                ),
                unit="percentunit",
                min=0,
                max=1,
            ),
            PanelSpec(
                "Acceptance per position",
                "Share of drafts whose token at 0-based position j was accepted.",
                (
                    Query(
                        f"{_rate(names.ACCEPTED_PER_POSITION, by=BY + ', position')}\n/ ignoring (position) "
                        f"group_left\n{_rate(names.DRAFTS)}",
                        "{{pair_version}} {{role}} pos {{position}}",
                    ),
                ),
                unit="percentunit",
                min=0,
                max=1,
            ),
            PanelSpec(
                "Estimated speedup",
                "Mean accepted length / (1 + draft length × draft cost ratio): tokens per unit of target time, "
                "the draft's passes charged at $draft_cost_ratio of a target pass (arXiv 2211.17192, §3.4).",
                (
                    Query(
                        f"(1 + {_rate(names.ACCEPTED_TOKENS)}\n/\n{_rate(names.DRAFTS)})\n/\n"
                        f"(1 + avg by ({BY}) ({names.DRAFT_LENGTH}{SEL}) * $draft_cost_ratio)",
                        "{{pair_version}} {{role}}",
                    ),
                ),
                unit="x",
            ),
        ),
    ),
    (
        "Traffic and latency",
        (
            PanelSpec(
                "Generated tokens/s",
                "Output tokens per second.",
                (Query(_rate(names.GENERATION_TOKENS), "{{pair_version}} {{role}}"),),
                unit="short",
            ),
            PanelSpec(
                "Requests/s",
                "Finished requests by finish reason.",
                (
                    Query(
                        _rate(names.REQUESTS, by=BY + ", finish_reason"), "{{pair_version}} {{role}} {{finish_reason}}"
                    ),
                ),
                unit="reqps",
            ),
            PanelSpec(
                "Time to first token",
                "TTFT percentiles.",
                tuple(
                    Query(
                        f"histogram_quantile({q}, {_rate(names.TTFT + '_bucket', by=BY + ', le')})",
                        f"p{int(q * 100)} {{{{pair_version}}}} {{{{role}}}}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ),
                unit="s",
            ),
            PanelSpec(
                "Inter-token latency",
                "ITL percentiles (each output token observed once).",
                tuple(
                    Query(
                        f"histogram_quantile({q}, {_rate(names.ITL + '_bucket', by=BY + ', le')})",
                        f"p{int(q * 100)} {{{{pair_version}}}} {{{{role}}}}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ),
                unit="s",
            ),
            PanelSpec(
                "Errors/s",
                "Failed requests by reason; only reason=internal counts against availability.",
                (Query(_rate(names.REQUEST_ERRORS, by=BY + ", reason"), "{{pair_version}} {{role}} {{reason}}"),),
                unit="reqps",
            ),
        ),
    ),
    (
        "SLOs",
        (
            PanelSpec(
                "Error budget remaining",
                "Share of the period's error budget left, per SLO.",
                (Query(f"{names.RECORD_BUDGET_REMAINING}{SEL}", "{{slo}} {{pair_version}} {{role}}"),),
                unit="percentunit",
                max=1,
            ),
            PanelSpec(
                "Burn rate (shortest window)",
                "How fast each SLO spends its budget now (1 = exactly on budget).",
                (Query(f"{names.RECORD_CURRENT_BURN_RATE}{SEL}", "{{slo}} {{pair_version}} {{role}}"),),
                unit="x",
                min=0,
            ),
            PanelSpec(
                "Burn rate (period)",
                "Budget spent over the SLO period relative to plan.",
                (Query(f"{names.RECORD_PERIOD_BURN_RATE}{SEL}", "{{slo}} {{pair_version}} {{role}}"),),
                unit="x",
                min=0,
            ),
            PanelSpec(
                "Firing SLO alerts",
                "SpecOps alerts firing now.",
                (
                    Query(
                        'count by (alertname, severity) (ALERTS{alertname=~"SpecOps.*", alertstate="firing"})',
                        "{{alertname}} {{severity}}",
                    ),
                ),
                kind="stat",
            ),
        ),
    ),
    (
        "Drift",
        (
            PanelSpec(
                "Drift share",
                "Share of drifted columns in the last `specops drift run` (alert at drift_share).",
                (Query(f"max by (deployment, pair_version) ({names.DRIFT_SHARE})", "{{deployment}} {{pair_version}}"),),
                unit="percentunit",
                min=0,
                max=1,
            ),
            PanelSpec(
                "Drifted columns",
                "1 for each column that drifted in the last run.",
                (Query(f"max by (deployment, column) ({names.DRIFT_COLUMN_DRIFTED})", "{{deployment}} {{column}}"),),
                min=0,
                max=1,
            ),
        ),
    ),
)

_CANARY = 'specops_requests_total{role="canary", model_name=~"$model_name"}'
_STABLE = 'specops_requests_total{role="stable", model_name=~"$model_name"}'
ANNOTATIONS: tuple[tuple[str, str, str], ...] = (
    ("Page alerts", "red", 'ALERTS{alertname=~"SpecOps.*", severity="page", alertstate="firing"}'),
    (
        "Canary started",
        "blue",
        f"count by (model_name, pair_version) ({_CANARY})\nunless\n"
        f"count by (model_name, pair_version) ({_CANARY} offset $event_window)",
    ),
    (
        "Canary removed (promoted or rolled back)",
        "orange",
        f"count by (model_name, pair_version) ({_CANARY} offset $event_window)\nunless\n"
        f"count by (model_name, pair_version) ({_CANARY})",
    ),
    (
        "Stable version changed",
        "green",
        f"count by (model_name, pair_version) ({_STABLE})\nunless\n"
        f"count by (model_name, pair_version) ({_STABLE} offset $event_window)",
    ),
)


def build():  # type: ignore[no-untyped-def]
    """The overview dashboard as a grafana-foundation-sdk model."""
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .tags(["specops", "speculative-decoding"])
        .editable()
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("utc")
        .description("Acceptance, speed, latency, errors, SLO budgets and drift of SpecOps deployments.")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("model_name")
            .label("Model")
            .datasource(source)
            .query(f"label_values({names.REQUESTS}, model_name)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
            .refresh(2)
        )
        .with_variable(dashboard.ConstantVariable("draft_cost_ratio").label("Draft cost / target cost").value("0.1"))
        .with_variable(dashboard.ConstantVariable("event_window").label("Event window").value("1m"))
    )
    for name, colour, expr in ANNOTATIONS:
        board = board.annotation(
            dashboard.AnnotationQuery().name(name).datasource(source).enable(True).icon_color(colour).expr(expr)
        )
    for row_title, panels in ROWS:
        board = board.with_row(dashboard.Row(row_title))
        for spec in panels:
            panel = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
            panel = panel.title(spec.title).description(spec.description).datasource(source).unit(spec.unit)
            panel = panel.height(8).span(12 if len(panels) % 2 == 0 or spec is not panels[-1] else 24)
            if spec.min is not None:
                panel = panel.min(spec.min)
            if spec.max is not None:
                panel = panel.max(spec.max)
            for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
                panel = panel.with_target(
                    prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).range()
                )
            board = board.with_panel(panel)
    return board.build()


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard (stable: sorted keys, two-space indent, newline)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    text = json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return {FILE_NAME: text}


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query and annotation, with Grafana's variables left in."""
    found = [(f"panel {spec.title!r}", query.expr) for _, panels in ROWS for spec in panels for query in spec.queries]
    found += [(f"annotation {name!r}", expr) for name, _, expr in ANNOTATIONS]
    return found


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the SpecOps Grafana dashboards.")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    for path in write(parser.parse_args().out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
