"""Dashboards are generated from code; the committed JSON is exactly what the code builds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from specops.monitoring import dashboards
from tests.support.monitoring_data import REPO, golden
from tests.support.prometheus_services import binary

VARIABLES = {"$__rate_interval": "5m", "$model_name": ".*", "$draft_cost_ratio": "0.1", "$event_window": "1m"}


def substitute(expr: str, values: dict[str, str] = VARIABLES) -> str:
    """Grafana's interpolation of the dashboard variables (longest names first)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def test_the_committed_dashboards_are_what_the_code_builds() -> None:
    for name, text in dashboards.render().items():
        golden(REPO / "dashboards" / name, text)


def test_the_dashboard_has_a_stable_uid_and_a_datasource_variable() -> None:
    board = json.loads((REPO / "dashboards" / dashboards.FILE_NAME).read_text())
    assert board["uid"] == "specops-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    titles = {p["title"] for p in panels}
    for wanted in (
        "Acceptance rate",
        "Mean accepted length",
        "Tokens per target step",
        "Share of steps that speculated",
        "Acceptance per position",
        "Generated tokens/s",
        "Estimated speedup",
        "Time to first token",
        "Inter-token latency",
        "Errors/s",
        "Error budget remaining",
        "Burn rate (shortest window)",
        "Drift share",
    ):
        assert wanted in titles
    annotations = {a["name"] for a in board["annotations"]["list"]}
    assert annotations >= {"Page alerts", "Canary started", "Canary removed (promoted or rolled back)"}


def test_the_step_panels_sit_next_to_the_acceptance_panels_and_read_target_steps() -> None:
    board = json.loads((REPO / "dashboards" / dashboards.FILE_NAME).read_text())
    titles = [p["title"] for p in board["panels"]]
    start = titles.index("Acceptance rate")
    assert titles[start : start + 4] == [
        "Acceptance rate",
        "Mean accepted length",
        "Tokens per target step",
        "Share of steps that speculated",
    ]
    exprs = dict(dashboards.expressions())
    assert "specops_spec_decode_num_target_steps_total" in exprs["panel 'Tokens per target step'"]
    assert 'mode="speculative"' in exprs["panel 'Share of steps that speculated'"]
    # Neither reads draft counters: they have data (1 and 0) when an engine stopped drafting.
    for where in ("panel 'Tokens per target step'", "panel 'Share of steps that speculated'"):
        assert "draft" not in exprs[where]


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: a cheap offline syntax check (the end-to-end
    # test runs them against a live Prometheus).
    rules = [
        {"record": f"dashboard:check:{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(dashboards.expressions())
    ]
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
