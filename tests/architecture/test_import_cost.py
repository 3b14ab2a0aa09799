"""Importing our packages, and every command module of the CLI, loads none of the heavy libraries.

`specops --help` imports every command module; the heavy libraries are imported inside the commands
and the modules that need them (see docs/CONTRIBUTING.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "mlflow", "kserve", "evidently", "fastapi")
PACKAGES = (
    "specops",
    "specops.cli",
    "specops.governance",
    "specops.local",
    "specops.monitoring",
    "specops.pairs",
    "specops.registry",
    "specops.rollout",
    "specops.serving",
    "specops.telemetry",
)


def heavy_modules_after(code: str) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after a fresh interpreter runs ``code``."""
    loaded = f"sorted({{name.split('.')[0] for name in sys.modules}} & {set(HEAVY)!r})"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({loaded}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGES)
def test_importing_a_package_loads_no_heavy_library(package: str) -> None:
    assert heavy_modules_after(f"import {package}") == []


def test_every_cli_command_installs_without_heavy_libraries() -> None:
    assert heavy_modules_after("from specops.cli import app\napp._install_all()") == []


def test_a_lazy_public_module_loads_on_first_use() -> None:
    import specops.serving

    assert "served_pair" in specops.serving.__all__
    assert "served_pair" in dir(specops.serving)
    assert specops.serving.served_pair.ServedPair.__name__ == "ServedPair"
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = specops.serving.nothing_here
