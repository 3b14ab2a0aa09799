"""How listing commands print: a table for people, or JSON for programs (``--output table|json``).

A listing is a list of records (plain dicts of machine-readable values: numbers as numbers, times as
ISO 8601 UTC) and the columns that show them. ``--output json`` prints the records and nothing else on
stdout; the table view keeps identifiers and numbers on one line and wraps only free text, and when even
that does not fit the terminal it shows one small field/value table per record instead of cutting cells.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import typer
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table

Record = dict[str, Any]


class OutputFormat(StrEnum):
    """What a listing command prints."""

    TABLE = "table"
    JSON = "json"


Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table (for people) or json (a list of objects, nothing else on stdout; docs/CONTRACTS.md).",
    ),
]


@dataclass(frozen=True)
class Column:
    """One table column: its header and the text it shows for a record.

    ``field`` names the record key shown (as ``-`` when None) unless ``text`` derives the cell from the
    whole record. Columns with ``wrap`` (free text) break between words; the others never break.
    """

    header: str
    field: str = ""
    text: Callable[[Record], str] | None = None
    justify: Literal["left", "right"] = "left"
    wrap: bool = False

    def cell(self, record: Record) -> str:
        """The cell's text for ``record``."""
        if self.text is not None:
            return self.text(record)
        value = record.get(self.field)
        return "-" if value is None else str(value)


def utc_iso(moment: float | datetime) -> str:
    """``moment`` (Unix seconds, or a datetime; naive is UTC) as ISO 8601 UTC to the second."""
    if isinstance(moment, datetime):
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(iso: str) -> str:
    """An ISO 8601 UTC time as a table shows it: ``YYYY-MM-DD HH:MM:SS``."""
    return iso[:19].replace("T", " ") if iso else "-"


def print_json(document: Any) -> None:
    """``document`` as indented JSON on stdout, nothing else."""
    typer.echo(json.dumps(document, indent=2))


def listing(records: Sequence[Record], columns: Sequence[Column], *, title: str, width: int) -> RenderableType:
    """The records as one table, or as one field/value table per record when the table is wider than ``width``."""
    cells = [[column.cell(record) for column in columns] for record in records]
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        widest = max([cell_len(column.header), *(cell_len(row[index]) for row in cells)])
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not column.wrap,
            overflow="fold",
            min_width=None if column.wrap else widest,
        )
    for row in cells:
        table.add_row(*row)
    # measured unconstrained: the narrowest the table gets with every no-wrap column whole
    if Console(width=1_000_000).measure(table).minimum <= width:
        return table
    return Group(*(_vertical(row, columns, title=title) for row in cells))


def _vertical(row: list[str], columns: Sequence[Column], *, title: str) -> Table:
    table = Table(title=f"{title}: {columns[0].header} {row[0]}", title_justify="left", show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for column, text in zip(columns[1:], row[1:], strict=True):
        table.add_row(column.header, text)
    return table


def show(records: Sequence[Record], columns: Sequence[Column], *, title: str, output: OutputFormat) -> None:
    """Print ``records`` as JSON or as a table that fits the terminal."""
    if output is OutputFormat.JSON:
        print_json(list(records))
        return
    console = Console()
    console.print(listing(records, columns, title=title, width=console.width))
