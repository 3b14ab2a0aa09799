"""Every command of the `specops` tree answers a usage error with one line on stderr and exit 2.

The cases are derived from the command tree itself, so a new command or option is covered without
editing this file: each command gets an unknown option, and a bad value for one of its typed options
(below its minimum or above its maximum, a word for a number, a value outside its choices). A command
with no typed option gets only the unknown-option case, and its id says so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from specops.cli import app as cli_app

# A usage error must be raised before any of these is imported (they cost seconds).
HEAVY_MODULES = ("torch", "transformers", "mlflow", "kserve", "evidently", "fastapi", "uvicorn")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command under ``command`` with its path of names (``("audit", "log")``)."""
    children = getattr(command, "commands", None)
    if children is None:
        yield path, command
        return
    for name, child in sorted(children.items()):
        yield from _commands(child, (*path, name))


def _bad_value(option: Any) -> str | None:
    """A value the option's type refuses, or None when the type takes any text (str, paths, flags)."""
    descriptor = option.type_descriptor
    info = descriptor.parameter_info
    if getattr(option, "is_flag", False) or descriptor.is_list:
        return None
    if descriptor.is_choice:
        return "no-such-choice"
    if descriptor.is_ranged:
        return str(info.min - 1) if info.min is not None else str(info.max + 1)
    if descriptor.annotation in (int, float):
        return "not-a-number"
    return None


def _placeholders(command: Any) -> list[str]:
    """Values for the command's required parameters, so the error comes from the option under test."""
    words: list[str] = []
    for param in command.params:
        if param.required:
            words += ["x"] if param.param_type_name == "argument" else [param.opts[0], "x"]
    return words


def _cases() -> Iterator[Any]:
    cli_app._install_all()
    tree = typer.main.get_command(cli_app.app)
    for path, command in _commands(tree):
        name = " ".join(path)
        required = _placeholders(command)
        typed = [
            (param, bad)
            for param in command.params
            if param.param_type_name == "option" and (bad := _bad_value(param)) is not None
        ]
        only = "" if typed else " only (no typed option)"
        yield pytest.param([*path, *required, "--bogus"], "--bogus", id=f"{name}: unknown option{only}")
        if not typed:
            continue
        # a ranged option first: its bound is what the command promises
        typed.sort(key=lambda item: not item[0].type_descriptor.is_ranged)
        option, bad = typed[0]
        yield pytest.param(
            [*path, *required, option.opts[0], bad], option.opts[0], id=f"{name}: {option.opts[0]} {bad}"
        )


@pytest.mark.parametrize(("args", "option"), list(_cases()))
def test_a_usage_error_is_one_line_and_exit_two(
    args: list[str], option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["specops", *args])
    before = set(sys.modules)
    with pytest.raises(SystemExit) as done:
        cli_app.main()
    captured = capsys.readouterr()
    assert done.value.code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), captured.err
    assert option in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""
    assert not [name for name in HEAVY_MODULES if name in set(sys.modules) - before]
