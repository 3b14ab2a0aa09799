"""``specops audit verify|log|policy``: the hash-chained audit log from a terminal."""

from __future__ import annotations

import json
from typing import Annotated

import typer

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Governance store URL (default: $SPECOPS_DATABASE_URL, else SQLite in $SPECOPS_HOME).",
        show_default=False,
    ),
]


def _open(database_url: str | None):  # type: ignore[no-untyped-def]
    from specops.governance import store
    from specops.settings import Settings

    return store.open_store(database_url or Settings.from_env().database_url)


def verify(database_url: DatabaseUrl = None) -> None:
    """Check the whole audit chain; exit 0 when intact, 1 naming the first bad record."""
    from rich.console import Console

    from specops.errors import AuditChainBroken
    from specops.governance import audit

    verdict = audit.AuditLog(_open(database_url)).verify()
    if not verdict.ok:
        where = f"first bad record id {verdict.first_bad_id}" if verdict.first_bad_id is not None else "chain head"
        raise AuditChainBroken(f"audit chain broken ({where}): {verdict.reason}; {verdict.events} events read")
    Console().print(
        f"[green]audit chain intact[/green]: {verdict.events} events verified in {verdict.seconds:.2f} s",
        highlight=False,
    )


def log(
    subject: Annotated[str | None, typer.Option(help="Only events about this subject (e.g. pair:NAME).")] = None,
    action: Annotated[str | None, typer.Option(help="Only events of this action (e.g. alias.set).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the last N matching events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List audit events, oldest first (the last --limit of them; --json for full payloads)."""
    from rich.console import Console
    from rich.table import Table

    from specops.governance import audit

    events = audit.AuditLog(_open(database_url)).events(subject, action=action, limit=limit)
    console = Console()
    if as_json:
        for event in events:
            console.print_json(
                json.dumps(
                    {
                        "id": event.id,
                        "seq": event.seq,
                        "time": audit.format_time(event.time),
                        "actor": event.actor,
                        "action": event.action,
                        "subject": event.subject,
                        "payload": json.loads(event.payload),
                        "hash": event.hash,
                    }
                )
            )
        return
    table = Table(title="audit log", title_justify="left")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    for column in ("actor", "action", "subject", "payload"):
        table.add_column(column, overflow="fold")
    table.add_column("hash", no_wrap=True)
    for event in events:
        table.add_row(
            str(event.seq),
            audit.format_time(event.time)[:19].replace("T", " "),
            event.actor,
            event.action,
            event.subject,
            _shorten(event.payload, 90),
            event.hash[:8],
        )
    if not events:
        console.print("no audit events" + (f" about {subject}" if subject else ""))
        return
    console.print(table)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def policy(
    require_approval: Annotated[
        bool | None,
        typer.Option(
            "--require-approval/--no-require-approval",
            help="Require `specops approve` before a version may go to production.",
            show_default=False,
        ),
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who changes the policy (audit actor).")] = "specops",
    database_url: DatabaseUrl = None,
) -> None:
    """Show or change the governance policy (each change is an audit event)."""
    from rich.console import Console

    from specops.governance import approvals

    store = _open(database_url)
    if require_approval is not None:
        approvals.set_approval_policy(store, required=require_approval, actor=by)
    state = "required" if approvals.approval_required(store) else "not required"
    Console().print(f"approval before production: [bold]{state}[/bold]", highlight=False)


def install(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    group = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    group.command("verify")(verify)
    group.command("log")(log)
    group.command("policy")(policy)
    app.add_typer(group, name="audit")
