"""`lazy_submodules`: a package's public modules that import heavy libraries load on first attribute access.

A package's ``__init__`` lists its public surface in ``__all__``; modules that pull torch, mlflow,
kserve, evidently or FastAPI are resolved by the module-level ``__getattr__`` this returns (PEP 562), so
``import specops.<package>`` stays cheap and ``specops --help`` answers at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType


def lazy_submodules(package: str, names: Iterable[str]) -> tuple[Callable[[str], ModuleType], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import the submodules ``names`` when first used."""
    lazy = frozenset(names)

    def __getattr__(name: str) -> ModuleType:
        if name in lazy:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | lazy)

    return __getattr__, __dir__
