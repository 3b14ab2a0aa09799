"""Import contracts: which of our packages may import which, checked over every import statement.

The import graph is read from the sources with `ast` (no module is imported), so lazy imports inside
functions and ``TYPE_CHECKING`` blocks count too. A contract names the modules it binds (a dotted
prefix), the modules they must not import, and the exceptions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = {
    "specops": ROOT / "platform" / "specops",
    "specops_operator": ROOT / "operators" / "specops_operator",
}
OURS = tuple(PACKAGE_FOLDERS)


@dataclass(frozen=True)
class Contract:
    """Modules under ``importers`` (but not under ``exempt``) import nothing under ``forbidden``
    except what is under ``allowed``."""

    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


CONTRACTS = {
    "rollout imports nothing of ours but its own modules": Contract(
        importers=("specops.rollout",), forbidden=OURS, allowed=("specops.rollout",)
    ),
    "engine imports only specops.errors and its own modules": Contract(
        importers=("specops.engine",), forbidden=OURS, allowed=("specops.engine", "specops.errors")
    ),
    "nothing imports specops.cli but the CLI itself": Contract(
        importers=OURS, forbidden=("specops.cli",), exempt=("specops.cli",)
    ),
    "serving never imports the local body or the operator": Contract(
        importers=("specops.serving",), forbidden=("specops.local", "specops_operator")
    ),
    "the platform package never imports the operator package": Contract(
        importers=("specops",), forbidden=("specops_operator",)
    ),
}


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or inside one of them (dotted, not by string start)."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def module_name(path: Path) -> str:
    for package, folder in PACKAGE_FOLDERS.items():
        if path.is_relative_to(folder):
            parts = (package, *path.relative_to(folder).with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path} is in none of {list(PACKAGE_FOLDERS)}")


def is_module(name: str) -> bool:
    """Whether ``name`` is one of our modules or packages (so ``from a import b`` imports ``a.b``)."""
    package, *rest = name.split(".")
    folder = PACKAGE_FOLDERS.get(package)
    if folder is None:
        return False
    path = folder.joinpath(*rest)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_in(source: str, *, path: Path) -> Iterator[Import]:
    """Every module of ours that ``source`` (the text of ``path``) imports, at any depth of its code."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        for name in names:
            if within(name, OURS):
                yield Import(importer, name, where)


def all_imports() -> list[Import]:
    paths = [path for folder in PACKAGE_FOLDERS.values() for path in sorted(folder.rglob("*.py"))]
    return [found for path in paths for found in imports_in(path.read_text(), path=path)]


def breaches(contract: Contract, imports: list[Import]) -> list[Import]:
    return [
        found
        for found in imports
        if within(found.importer, contract.importers)
        and not within(found.importer, contract.exempt)
        and within(found.imported, contract.forbidden)
        and not within(found.imported, contract.allowed)
    ]


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


@pytest.mark.parametrize("contract", list(CONTRACTS.values()), ids=list(CONTRACTS))
def test_import_contract_holds(contract: Contract, imports: list[Import]) -> None:
    found = breaches(contract, imports)
    assert not found, "\n".join(map(str, found))


def test_the_import_graph_is_read_from_every_package(imports: list[Import]) -> None:
    importers = {found.importer for found in imports}
    for package in ("specops.rollout", "specops.engine", "specops.serving", "specops.cli", "specops_operator"):
        assert any(within(importer, (package,)) for importer in importers), f"no imports read from {package}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from specops import errors", "specops.errors"),
        ("from specops.serving import config", "specops.serving.config"),
        ("from specops.serving.config import ServingConfig", "specops.serving.config"),
        ("import specops_operator.handlers", "specops_operator.handlers"),
        ("from . import brain", "specops.rollout.brain"),
        ("from .model import Phase", "specops.rollout.model"),
        ("def f():\n    from specops.cli import app", "specops.cli.app"),
    ],
    ids=[
        "from-package-import-module",
        "from-subpackage",
        "from-module-import-name",
        "import-module",
        "relative-module",
        "relative-name",
        "lazy-in-function",
    ],
)
def test_an_import_statement_resolves_to_the_module_it_loads(source: str, expected: str) -> None:
    controller = PACKAGE_FOLDERS["specops"] / "rollout" / "controller.py"
    assert [found.imported for found in imports_in(source, path=controller)] == [expected]


def test_a_breach_is_reported_with_where_it_is() -> None:
    contract = CONTRACTS["serving never imports the local body or the operator"]
    bad = Import("specops.serving.server", "specops.local.servers", "platform/specops/serving/server.py:3")
    good = Import("specops.serving.server", "specops.localisation", "platform/specops/serving/server.py:4")
    assert breaches(contract, [bad, good]) == [bad]
    assert str(bad) == "platform/specops/serving/server.py:3: specops.serving.server imports specops.local.servers"
