"""``specops drift``: compare recent request traffic with its reference window (Evidently)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

EXIT_DRIFT = 3
"""Exit status of ``specops drift run`` when the traffic drifted (0: it did not)."""


def install(app: typer.Typer) -> None:
    """Add the ``drift`` command group to ``app``."""
    drift = typer.Typer(help="Drift monitors over the sampled request records.", no_args_is_help=True)

    @drift.command("run")
    def run(
        deployment: str = typer.Option(..., "--deployment", help="Deployment whose request records to compare."),
        window: str = typer.Option("1h", "--window", help="Current window: the last WINDOW (e.g. 30m, 1h, 1d)."),
        reference_window: str = typer.Option(
            "1h",
            "--reference-window",
            help="Length of the reference: the production version's first analysis window after promotion.",
        ),
        version: str = typer.Option(None, "--version", help="Reference version (default: the production one)."),
        drift_share: float = typer.Option(
            0.5, "--drift-share", min=0.0, max=1.0, help="Share of drifted columns that means drift, in (0, 1]."
        ),
        min_rows: int = typer.Option(30, "--min-rows", min=1, help="Fewest records per window for a verdict."),
        until: str = typer.Option(None, "--until", help="End of the current window, ISO 8601 (default: now)."),
    ) -> None:
        """Print the verdict; exit 0 when the traffic did not drift, 3 when it did."""
        from datetime import timedelta

        from specops.governance.audit import AuditLog
        from specops.governance.store import open_store
        from specops.monitoring import drift_run
        from specops.monitoring.slo_spec import duration_seconds
        from specops.settings import Settings

        settings = Settings.from_env()
        spans = {}
        for flag, text in (("--window", window), ("--reference-window", reference_window)):
            try:
                spans[flag] = timedelta(seconds=duration_seconds(text))
            except ValueError as error:
                from specops.errors import InvalidInput

                raise InvalidInput(f"{flag}: {error}") from error
        now = None
        if until is not None:
            from datetime import UTC, datetime

            try:
                now = datetime.fromisoformat(until)
            except ValueError as error:
                from specops.errors import InvalidInput

                raise InvalidInput(f"--until: not an ISO 8601 time: {until!r}") from error
            now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        store = open_store(settings.database_url)
        try:
            done = drift_run.run(
                store,
                deployment=deployment,
                artifacts_dir=settings.artifacts_dir,
                now=now,
                window=spans["--window"],
                reference_window=spans["--reference-window"],
                drift_share=drift_share,
                min_rows=min_rows,
                audit=AuditLog(store),
                version=version,
                gauges_file=settings.home / "metrics" / f"drift-{deployment}.prom",
            )
        finally:
            store.dispose()
        _print(done)
        raise typer.Exit(EXIT_DRIFT if done.result.drifted else 0)

    app.add_typer(drift, name="drift")


def _print(done) -> None:  # type: ignore[no-untyped-def]
    console = Console()
    result, windows = done.result, done.windows
    verdict = "[red]DRIFT[/red]" if result.drifted else "[green]no drift[/green]"
    console.print(
        f"{done.deployment}: {verdict} — {result.drifted_share:.0%} of columns drifted "
        f"(threshold {result.drift_share:.0%}); reference {windows.version} "
        f"{windows.reference_start:%Y-%m-%d %H:%M}–{windows.reference_end:%H:%M} ({result.reference_rows} "
        f"records, {windows.reference_origin}), current {result.current_rows} records"
    )
    table = Table("column", "method", "score", "kind", "threshold", "drifted")
    for column in result.columns:
        table.add_row(
            column.column,
            column.method,
            f"{column.score:.4g}",
            column.score_kind,
            f"{column.threshold:g}",
            "yes" if column.drifted else "no",
        )
    console.print(table)
    console.print(
        f"diagnosis: {done.diagnosis.conclusion}"
        + (f" — {done.diagnosis.action}" if done.diagnosis.action != "none" else "")
    )
    console.print(f"report: {done.report_path} (drift report #{done.report_id})", highlight=False)
