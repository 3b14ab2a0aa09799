"""``specops slo``: SLO specs → Prometheus rules."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from specops.errors import InvalidInput


def install(app: typer.Typer) -> None:
    """Add the ``slo`` command group to ``app``."""
    slo = typer.Typer(help="SLOs as code: validate specs and render Prometheus rules.", no_args_is_help=True)

    @slo.command("render")
    def render(
        spec_file: Path = typer.Option(None, "--spec", help="SLO spec YAML (default: the SLOs SpecOps ships)."),
        out: Path = typer.Option(..., "--out", help="Folder for rules.yaml and prometheusrule.yaml."),
        label: list[str] = typer.Option(
            [], "--label", help="Extra label KEY=VALUE on the PrometheusRule (e.g. release=kube-prometheus)."
        ),
    ) -> None:
        """Write OUT/rules.yaml (a Prometheus rules file) and OUT/prometheusrule.yaml."""
        from specops.monitoring import slo_spec, writer

        parsed = slo_spec.load(spec_file) if spec_file else slo_spec.load_default()
        extra = dict(_key_value(item) for item in label)
        plain, operator = writer.render_to(out, parsed, extra_labels=extra)
        Console().print(f"wrote {plain} and {operator} ({len(parsed.slos)} SLOs)", highlight=False)

    @slo.command("check")
    def check(spec_file: Path = typer.Option(..., "--spec", help="SLO spec YAML to validate.")) -> None:
        """Validate a spec and list its SLOs."""
        from specops.monitoring import rules, slo_spec

        parsed = slo_spec.load(spec_file)
        rules.generate(parsed)
        for item in parsed.slos:
            Console().print(
                f"{item.name}: {item.sli.kind} objective {item.objective} over {item.period}", highlight=False
            )

    app.add_typer(slo, name="slo")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--label wants KEY=VALUE, got {text!r}")
    return key, value
