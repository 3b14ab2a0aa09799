"""Alembic environment for the SpecOps governance store (SQLite and PostgreSQL).

Used two ways: ``alembic upgrade head`` from the repository root (URL from ``$SPECOPS_DATABASE_URL``
or ``alembic.ini``), and ``specops.governance.store.upgrade`` which passes an open connection in
``config.attributes["connection"]``.
"""

from __future__ import annotations

import os

from alembic import context

from specops.governance import models

config = context.config
target_metadata = models.Base.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    url = os.environ.get("SPECOPS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against ``config.attributes['connection']`` or a fresh engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from specops.governance import store

    url = os.environ.get("SPECOPS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = store.create_engine(url)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
