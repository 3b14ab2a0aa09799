"""``specops pair ...``: make speculative-decoding pairs (``train-demo`` trains the demo pair here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

pair_app = typer.Typer(help="Make speculative-decoding pairs.", no_args_is_help=True)


@pair_app.command("train-demo")
def train_demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Folder to write target/, draft/ and draft-mismatched/ into (replaced if present).",
        ),
    ],
    seed: Annotated[int, typer.Option(help="Seed of the recipe (a different seed is a different cache entry).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar while training.")] = True,
) -> None:
    """Train the demo target and drafts on the standard library's sources (cached after the first run)."""
    from rich.console import Console
    from rich.table import Table

    from specops.pairs import demo

    started = time.perf_counter()
    pairs = demo.train_demo_pairs(out, recipe=demo.DemoRecipe(seed=seed), progress=progress)
    elapsed = time.perf_counter() - started
    report = pairs.report

    table = Table(title="Greedy agreement with the target on held-out standard-library code")
    table.add_column("draft", no_wrap=True)
    table.add_column("on the code", justify="right")
    table.add_column("on the target's writing", justify="right")
    table.add_column("parameters", justify="right")
    table.add_column("folder")
    for name, folder in ((demo.DRAFT_DIR, pairs.draft), (demo.MISMATCHED_DIR, pairs.draft_mismatched)):
        written = report.generated_agreement.get(name)
        table.add_row(
            name,
            f"{report.agreement[name]:.3f}",
            "-" if written is None else f"{written:.3f}",
            f"{report.num_parameters[name]:,}",
            str(folder),
        )
    console = Console()
    console.print(table)
    seconds = report.seconds
    trained = (
        f"tokenizer {seconds['tokenizer']:.1f} s, then side by side: target {seconds['target']:.1f} s | "
        f"draft {seconds['draft']:.1f} s + mismatched draft {seconds['draft_mismatched']:.1f} s, "
        f"then the draft on the target's writing {seconds.get('distillation', 0.0):.1f} s; "
        f"target and draft ready after {report.target_and_draft_seconds:.1f} s, "
        f"all done after {report.total_seconds:.1f} s"
    )
    if pairs.from_cache:
        console.print(
            f"taken from cache {report.recipe_hash} in {elapsed:.1f} s; when trained: {trained}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"trained in {elapsed:.1f} s ({trained}); cached as {report.recipe_hash}", highlight=False, soft_wrap=True
        )
    console.print(f"target {report.num_parameters[demo.TARGET_DIR]:,} parameters: {pairs.target}", highlight=False)


def install(app: typer.Typer) -> None:
    """Add the ``pair`` command group to the ``specops`` app."""
    app.add_typer(pair_app, name="pair")
