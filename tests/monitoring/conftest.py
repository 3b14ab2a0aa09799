"""Monitoring test fixtures: a governance store on SQLite and its audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from specops.governance import store as store_module


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
