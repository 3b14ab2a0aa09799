"""SLO specs become Prometheus rules: byte-for-byte golden files, promtool check and promtool unit tests."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specops.monitoring import rules, slo_spec, writer
from tests.support.monitoring_data import REPO, TESTDATA, golden
from tests.support.prometheus_services import binary

GENERATED = REPO / "platform/specops/monitoring/generated"
INPUTS = sorted(TESTDATA.glob("in-*.yaml"))


def _render(parsed: slo_spec.SLOSpec) -> tuple[str, str]:
    groups = rules.generate(parsed)
    plain, operator = io.StringIO(), io.StringIO()
    writer.write_rules(plain, groups)
    writer.write_prometheus_rule(operator, parsed, groups)
    return plain.getvalue(), operator.getvalue()


def test_the_committed_default_rules_are_what_the_generator_writes() -> None:
    plain, operator = _render(slo_spec.load_default())
    golden(GENERATED / "rules.yaml", plain)
    golden(GENERATED / "prometheusrule.yaml", operator)


@pytest.mark.parametrize("source", INPUTS, ids=[p.stem for p in INPUTS])
def test_each_spec_renders_its_golden_rules(source: Path) -> None:
    plain, operator = _render(slo_spec.load(source))
    stem = source.stem.removeprefix("in-")
    golden(TESTDATA / f"out-{stem}.rules.yaml", plain)
    golden(TESTDATA / f"out-{stem}.prometheusrule.yaml", operator)


@pytest.mark.parametrize(
    "path",
    [GENERATED / "rules.yaml", *sorted(TESTDATA.glob("out-*.rules.yaml"))],
    ids=lambda p: p.name if isinstance(p, Path) else str(p),
)
def test_promtool_accepts_the_rules(path: Path) -> None:
    done = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_show_every_alert_firing_and_silent_when_it_should() -> None:
    tests = TESTDATA / "promtool" / "default-slos.test.yaml"
    done = subprocess.run(
        [binary("promtool"), "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_slo_gets_sli_meta_and_alert_groups() -> None:
    groups = rules.generate(slo_spec.load_default())
    group_names = [group.name for group in groups]
    for slo in ("acceptance-rate", "tokens-per-step", "availability", "latency"):
        for kind in ("sli", "meta", "alerts"):
            assert f"specops-slo-{kind}-{slo}" in group_names
    assert group_names[-1] == "specops-drift"


def test_the_windows_include_the_period_and_every_alert_window() -> None:
    [slo] = [slo for slo in slo_spec.load_default().slos if slo.name == "availability"]
    assert rules.windows(slo) == ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")


def test_the_prometheus_rule_carries_the_extra_labels(tmp_path: Path) -> None:
    import yaml

    _, path = writer.render_to(tmp_path, slo_spec.load_default(), extra_labels={"release": "kube-prom", "team": "ml"})
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["labels"] == {"release": "kube-prom", "team": "ml"}


def test_slo_render_writes_both_files(tmp_path: Path) -> None:
    from specops.cli.app import _install_all, app

    _install_all()
    out = tmp_path / "rules"
    result = CliRunner().invoke(
        app,
        ["slo", "render", "--spec", str(TESTDATA / "in-short-windows.yaml"), "--out", str(out), "--label", "release=x"],
    )
    assert result.exit_code == 0, result.output
    assert (out / "rules.yaml").read_text() == (TESTDATA / "out-short-windows.rules.yaml").read_text()
    assert "release: x" in (out / "prometheusrule.yaml").read_text()


def test_slo_check_lists_the_slos_and_refuses_a_bad_spec(tmp_path: Path) -> None:
    from specops.cli.app import _install_all, app

    _install_all()
    ok = CliRunner().invoke(app, ["slo", "check", "--spec", str(TESTDATA / "in-availability-only.yaml")])
    assert ok.exit_code == 0 and "availability: availability objective 0.9995 over 30d" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: specops/slo/v9\nslos: []\n")
    refused = CliRunner().invoke(app, ["slo", "check", "--spec", str(bad)])
    assert refused.exit_code != 0
    assert "unknown SLO spec version" in str(refused.exception)
