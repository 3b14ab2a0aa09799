"""Monitoring test fixtures: paths, a governance store on SQLite, the promtool binary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from specops.governance import store as store_module

TESTDATA = Path(__file__).with_name("testdata")
REPO = Path(__file__).resolve().parents[2]
UPDATE_GOLDEN = os.environ.get("SPECOPS_UPDATE_GOLDEN") == "1"
"""Run with ``SPECOPS_UPDATE_GOLDEN=1`` to rewrite golden files (then review the diff)."""


def golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the golden file ``path`` byte for byte (or rewrite it under the flag)."""
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}: run with SPECOPS_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path} differs from the generator's output; rerun with SPECOPS_UPDATE_GOLDEN=1"


def binary(name: str) -> str:
    """A Debian-packaged Prometheus binary; the tests need it (``apt-get install prometheus``)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        pytest.fail(f"{name} not found: apt-get install -y --no-install-recommends prometheus "
                    "prometheus-alertmanager")
    return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    """A governance store on SQLite, migrated to head."""
    opened = store_module.open_store(f"sqlite:///{tmp_path / 'governance.db'}")
    yield opened
    opened.dispose()


@pytest.fixture
def audit(store: store_module.Store):  # type: ignore[no-untyped-def]
    from specops.governance.audit import AuditLog

    return AuditLog(store)
