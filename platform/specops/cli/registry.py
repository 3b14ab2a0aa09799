"""``specops register``, ``qualify``, ``versions``, ``approve``: pair versions from a terminal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from specops.cli import output

Target = Annotated[Path, typer.Option("--target", help="Target checkpoint folder (save_pretrained).")]
Draft = Annotated[Path, typer.Option("--draft", help="Draft checkpoint folder (shares the target's tokenizer).")]
Config = Annotated[
    Path | None, typer.Option("--config", help="PairSpec fields (YAML or JSON): licences, SLOs, lineage, use.")
]
Prompts = Annotated[
    Path | None,
    typer.Option("--prompts", help="Evaluation prompts (.json list, .jsonl, or one per line); default: bundled."),
]
MinAcceptance = Annotated[
    float | None,
    typer.Option(
        "--min-acceptance",
        help="Acceptance-rate floor in [0, 1] (default: the spec's slos.min_acceptance_rate, 0.2). 0 records "
        "the figures without judging acceptance; losslessness and tokenizer checks always apply.",
        show_default=False,
    ),
]
MinSpeedup = Annotated[
    float | None,
    typer.Option(
        "--min-speedup",
        help="Speedup floor (× the target alone), applied to the greedy and the sampled speedup (default: the "
        "spec's slos.min_speedup, else 1.0 on a CUDA device and 0 on a CPU). 0 records without judging.",
        show_default=False,
    ),
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens generated per prompt.")]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        envvar="SPECOPS_DEVICE",
        help="torch device to qualify on: the one the pair will serve on (it sets the default speedup floor).",
    ),
]


def _actor(by: str | None) -> str:
    return by or f"cli:{os.environ.get('USER', 'unknown')}"


def _checked_inputs(
    target: Path, draft: Path, *, prompts: Path | None, min_acceptance: float | None, min_speedup: float | None
) -> list[str] | None:
    """Check a pair's inputs before the heavy imports: the floors, both checkpoint folders, the prompt file.

    Returns the prompts read from ``prompts`` (None: the gate's bundled set).
    """
    from specops.pairs import eval_inputs, pair_spec, qualification_rules

    qualification_rules.check_floors(
        min_acceptance=min_acceptance, min_speedup=min_speedup, names=("--min-acceptance", "--min-speedup")
    )
    pair_spec.checkpoint_folder(target, "target")
    pair_spec.checkpoint_folder(draft, "draft")
    return eval_inputs.load_prompts(prompts) if prompts is not None else None


def _progress():  # type: ignore[no-untyped-def]
    """A rich progress bar and the qualification callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    )
    tasks: dict[str, Any] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(f"qualify: {phase}", total=total)
        progress.update(tasks[phase], completed=done)

    return progress, advance


def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging

    import mlflow  # noqa: F401 - configures its loggers on import; quieten them afterwards

    for logger in ("mlflow", "mlflow.store.db.utils", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    except ImportError:
        pass


def _report_table(report: Any, title: str):  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("lossless (greedy = target alone)", "yes" if report.lossless else "no"),
        ("tokenizer", report.tokenizer_reason),
        ("acceptance rate", f"{report.acceptance_rate:.3f} (floor {report.min_acceptance:g})"),
        ("mean accepted length", f"{report.mean_accepted_length:.2f}"),
        ("speedup over target alone, greedy", f"{report.speedup:.2f}×"),
        (
            "speedup over target alone, sampled",
            f"{report.speedup_sampled:.2f}× (temperature {report.sampled_temperature:g}, "
            f"top_p {report.sampled_top_p:g}{f', top_k {report.sampled_top_k}' if report.sampled_top_k else ''})",
        ),
        ("sampled settings", report.sampled_settings),
        ("acceptance rate, sampled", f"{report.acceptance_rate_sampled:.3f}"),
        ("speedup floor (greedy and sampled)", f"{report.min_speedup:g} ({report.min_speedup_source})"),
        ("prompts × new tokens", f"{report.num_prompts} × {report.max_new_tokens}"),
        ("draft length k", f"{report.num_speculative_tokens}{' (adaptive)' if report.adaptive else ''}"),
        ("machine", report.machine),
    ]
    if report.speedup_note:
        rows.append(("speedup note", report.speedup_note))
    for name, value in rows:
        table.add_row(name, value)
    return table


def register(
    name: Annotated[str, typer.Argument(help="Pair name (the MLflow registered model).")],
    target: Target,
    draft: Draft,
    config: Config = None,
    prompts: Prompts = None,
    min_acceptance: MinAcceptance = None,
    min_speedup: MinSpeedup = None,
    max_new_tokens: MaxNewTokens = 32,
    device: Device = "cpu",
    note: Annotated[str, typer.Option("--note", help="A line stored with the version.")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Who registers (audit actor).")] = None,
) -> None:
    """Qualify a target + draft pair and register it as a new MLflow model version.

    A pair that is not lossless, whose tokenizers differ, whose acceptance rate is under the floor, or
    whose greedy or sampled speedup is under the speedup floor is refused (exit 1, audit event
    version.refuse) and nothing is created in MLflow.
    """
    from rich.console import Console

    prompt_list = _checked_inputs(
        target, draft, prompts=prompts, min_acceptance=min_acceptance, min_speedup=min_speedup
    )

    from specops.governance import audit, store
    from specops.registry import PairRegistry
    from specops.settings import Settings

    _quiet_libraries()
    settings = Settings.from_env()
    log = audit.AuditLog(store.open_store(settings.database_url))
    registry = PairRegistry.from_settings(settings, audit=log, actor=_actor(by))
    console = Console()
    progress, advance = _progress()
    with progress:
        version = registry.register(
            name,
            target=target,
            draft=draft,
            config=config,
            min_acceptance=min_acceptance,
            min_speedup=min_speedup,
            prompts=prompt_list,
            max_new_tokens=max_new_tokens,
            device=device,
            note=note,
            progress=advance,
        )
    tags = version.tags
    console.print(
        f"[green]registered[/green] {name} version {version.version} ({version.uri}): "
        f"acceptance {tags['qualification.acceptance_rate']}, "
        f"mean accepted length {tags['qualification.mean_accepted_length']}, "
        f"speedup {tags['qualification.speedup']}× greedy, {tags['qualification.speedup_sampled']}× sampled "
        f"(floor {tags['qualification.min_speedup']}), lossless {tags['qualification.lossless']}",
        highlight=False,
    )
    if tags.get("qualification.speedup_note"):
        console.print(f"[yellow]{tags['qualification.speedup_note']}[/yellow]", highlight=False)


def qualify(
    target: Target,
    draft: Draft,
    config: Config = None,
    prompts: Prompts = None,
    min_acceptance: MinAcceptance = None,
    min_speedup: MinSpeedup = None,
    max_new_tokens: MaxNewTokens = 32,
    device: Device = "cpu",
    report: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")] = None,
) -> None:
    """Measure a pair without registering it: losslessness, tokenizers, acceptance, speedup (greedy, sampled).

    Exit 0 when the pair would be accepted, 1 (with the reason) when it would be refused.
    """
    from rich.console import Console

    from specops.errors import StoreUnavailable
    from specops.pairs import pair_spec, qualification

    prompt_list = _checked_inputs(
        target, draft, prompts=prompts, min_acceptance=min_acceptance, min_speedup=min_speedup
    )
    _quiet_libraries()
    spec = pair_spec.PairSpec(name="qualify", target=pair_spec.ModelRef(source=str(target)))
    if config is not None:
        data = pair_spec.read_config(config)
        spec = pair_spec.PairSpec.parse(
            {**data, "name": "qualify", "target": {"source": str(target)}, "draft": None}, source=str(config)
        )
    settings = spec.speculation
    progress, advance = _progress()
    with progress:
        result = qualification.qualify(
            target,
            draft,
            prompts=prompt_list,
            min_acceptance=spec.min_acceptance if min_acceptance is None else min_acceptance,
            min_speedup=spec.min_speedup if min_speedup is None else min_speedup,
            num_speculative_tokens=settings.num_speculative_tokens,
            adaptive=settings.adaptive,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_new_tokens=max_new_tokens,
            device=device,
            progress=advance,
        )
    console = Console()
    console.print(_report_table(result, "qualification"))
    if report is not None:
        try:
            report.write_text(result.to_json())
        except OSError as error:
            raise StoreUnavailable(f"cannot write the report {report}: {error.strerror}") from error
    qualification.enforce(result)
    console.print(f"[green]{result.summary()}[/green]", highlight=False)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _figure(record: dict[str, Any], field: str, spec: str) -> str:
    value = record[field]
    return "-" if value is None else format(value, spec)


VERSION_COLUMNS = (
    output.Column("version", "version", justify="right"),
    output.Column("aliases", text=lambda record: ", ".join(record["aliases"]) or "-"),
    output.Column("gate", text=lambda record: "passed" if record["qualified"] else "refused"),
    output.Column("accept", text=lambda record: _figure(record, "acceptance_rate", ".4f"), justify="right"),
    output.Column("mean len", text=lambda record: _figure(record, "mean_accepted_length", ".3f"), justify="right"),
    output.Column(
        "speedup greedy / sampled",
        text=lambda record: (
            "-"
            if record["speedup"] is None
            else f"{record['speedup']:.3f}× / {_figure(record, 'speedup_sampled', '.3f')}×"
        ),
        justify="right",
    ),
    output.Column("min speedup", text=lambda record: _figure(record, "min_speedup", "g"), justify="right"),
    output.Column("lossless", text=lambda record: {True: "true", False: "false", None: "-"}[record["lossless"]]),
    output.Column(
        "target / draft sha256",
        text=lambda record: f"{(record['target_sha256'] or '-')[:8]} / {(record['draft_sha256'] or '-')[:8]}",
    ),
    output.Column("registered (UTC)", text=lambda record: output.clock(record["registered_at"])[:16]),
    output.Column("note", "note", wrap=True),
)


def version_record(item: Any) -> output.Record:
    """A `PairVersion` as the record `specops versions` shows (and prints with ``--output json``)."""
    tags = item.tags
    lossless = tags.get("qualification.lossless")
    return {
        "version": int(item.version),
        "aliases": list(item.aliases),
        "qualified": item.qualified,
        "acceptance_rate": _number(tags.get("qualification.acceptance_rate")),
        "mean_accepted_length": _number(tags.get("qualification.mean_accepted_length")),
        "speedup": _number(tags.get("qualification.speedup")),
        "speedup_sampled": _number(tags.get("qualification.speedup_sampled")),
        "min_speedup": _number(tags.get("qualification.min_speedup")),
        "lossless": None if lossless is None else lossless == "true",
        "target_sha256": tags.get("pair.target_sha256"),
        "draft_sha256": tags.get("pair.draft_sha256"),
        "registered_at": item.created_at or None,
        "note": tags.get("note", ""),
    }


def versions(
    name: Annotated[str, typer.Argument(help="Pair name.")],
    output_format: output.Output = output.OutputFormat.TABLE,
) -> None:
    """List a pair's versions with their qualification figures and aliases."""
    from rich.console import Console

    from specops.registry import PairRegistry
    from specops.settings import Settings

    _quiet_libraries()
    registry = PairRegistry.from_settings(Settings.from_env())
    records = [version_record(item) for item in registry.versions(name)]
    output.show(records, VERSION_COLUMNS, title=f"{name}: pair versions", output=output_format)
    from specops.governance import audit, store

    refusals = audit.AuditLog(store.open_store(Settings.from_env().database_url)).events(
        f"pair:{name}", action="version.refuse"
    )
    if refusals:
        # beside JSON the note goes to stderr: stdout holds the document alone
        Console(stderr=output_format is output.OutputFormat.JSON).print(
            f"{len(refusals)} refused registration(s), never versioned: "
            f"specops audit log --subject pair:{name} --action version.refuse",
            highlight=False,
        )


def approve(
    name: Annotated[str, typer.Argument(help="Pair name.")],
    version: Annotated[str, typer.Argument(help="Version number.")],
    by: Annotated[str, typer.Option("--by", help="Who approves (recorded and audited).")],
    note: Annotated[str, typer.Option("--note", help="Why: ticket, review, evidence.")] = "",
) -> None:
    """Approve a pair version for production (needed when the approval policy is on)."""
    from rich.console import Console

    from specops.governance import approvals, store
    from specops.registry import PairRegistry
    from specops.settings import Settings

    _quiet_libraries()
    settings = Settings.from_env()
    registry = PairRegistry.from_settings(settings)
    item = registry.version(name, version)
    if not item.qualified:
        from specops.errors import Conflict

        raise Conflict(f"{name} version {item.version} did not pass qualification: it cannot be approved")
    record = approvals.approve(store.open_store(settings.database_url), name, item.version, by=by, note=note)
    Console().print(f"[green]approved[/green] {name} version {record.version} by {record.approved_by}", highlight=False)


def install(app: typer.Typer) -> None:
    """Add the registry commands to ``app``."""
    app.command("register")(register)
    app.command("qualify")(qualify)
    app.command("versions")(versions)
    app.command("approve")(approve)
