"""Opening the governance store: one SQLAlchemy engine + sessionmaker, migrated to head.

``open_store(url)`` accepts any SQLAlchemy URL; ``postgresql://`` is read as psycopg 3
(``postgresql+psycopg://``). SQLite files get WAL journaling and a busy timeout; their
transactions start with ``BEGIN`` emitted by us, so that the audit log can ask for
``BEGIN IMMEDIATE`` (a write lock taken at the start of the transaction).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from specops.errors import InvalidInput, StoreUnavailable

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite writer waits for another process's write lock before giving up (seconds)."""

POSTGRES_CONNECT_TIMEOUT_S = 5
"""How long to wait for a PostgreSQL server before calling it unreachable (seconds)."""

_MIGRATION_LOCK_KEY = 0x5BEC0B5
"""PostgreSQL advisory lock key held while migrating, so concurrent ``open_store`` calls queue."""


def migrations_dir() -> Path:
    """The Alembic environment: ``$SPECOPS_MIGRATIONS_DIR`` or ``migrations/`` at the repository root."""
    override = os.environ.get("SPECOPS_MIGRATIONS_DIR")
    if override:
        return Path(override)
    import specops

    return Path(specops.__file__).resolve().parents[2] / "migrations"


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` becomes ``postgresql+psycopg://`` (psycopg 3)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise InvalidInput(f"not a database URL: {url!s}") from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@dataclass
class Store:
    """The governance database: an engine and a sessionmaker bound to it."""

    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A connection in a transaction that holds the database's write lock on SQLite from the start.

        On SQLite this is ``BEGIN IMMEDIATE``; on PostgreSQL an ordinary transaction (callers lock rows).
        Connection failures become :class:`StoreUnavailable`.
        """
        with _unavailable_on_connect_failure(self.engine.url):
            conn = self.engine.connect()
        try:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
        finally:
            conn.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def create_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with SpecOps's SQLite and PostgreSQL settings."""
    parsed = normalise_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                try:
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise StoreUnavailable(f"cannot create the folder of {database}: {error.strerror}") from error
            engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_pre_ping=False)
            _install_sqlite_transactions(engine)
            return engine
        connect_args = {}
        if parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
    except (exc.NoSuchModuleError, exc.ArgumentError, ModuleNotFoundError) as error:
        raise InvalidInput(f"unsupported database URL {parsed.render_as_string()}: {error}") from error


def _install_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN itself (pysqlite's own is lazy), honouring ``sqlite_begin``.

    See https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        with suppress(Exception):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def _unavailable_on_connect_failure(url: URL) -> Iterator[None]:
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise StoreUnavailable(
            f"cannot reach the governance store {url.render_as_string(hide_password=True)}: {reason}"
        ) from error


def alembic_config(connection: Connection | None = None, url: str | None = None):  # type: ignore[no-untyped-def]
    """An Alembic ``Config`` for the repository's migrations, bound to ``connection`` or ``url``."""
    from alembic.config import Config

    folder = migrations_dir()
    if not (folder / "env.py").is_file():
        raise StoreUnavailable(f"cannot find the migrations folder {folder}")
    ini = folder.parent / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(folder))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on ``engine`` (PostgreSQL: under an advisory lock)."""
    from alembic import command

    with _unavailable_on_connect_failure(engine.url), engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_KEY})")
            conn.commit()
        elif engine.dialect.name == "sqlite":
            # Take the write lock before reading the schema version, so concurrent openers queue
            # (a deferred reader that later writes would get SQLITE_BUSY without waiting).
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.rollback()
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_KEY})")
                conn.commit()


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Run the migrations down to ``revision`` on ``engine``."""
    from alembic import command

    with _unavailable_on_connect_failure(engine.url), engine.connect() as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def open_store(url: str | URL, *, migrate: bool = True) -> Store:
    """Open the governance store at ``url`` and (by default) migrate it to head.

    Raises :class:`StoreUnavailable` when the database cannot be reached or written, and
    :class:`InvalidInput` for a URL that is not one.
    """
    from alembic.util import CommandError

    engine = create_engine(url)
    try:
        if migrate:
            try:
                upgrade(engine)
            except CommandError as error:
                raise StoreUnavailable(
                    f"cannot migrate the governance store: {str(error).splitlines()[0]} (is it from a newer SpecOps?)"
                ) from error
        else:
            with _unavailable_on_connect_failure(engine.url), engine.connect():
                pass
    except exc.OperationalError as error:
        engine.dispose()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise StoreUnavailable(f"cannot write the governance store: {reason}") from error
    except BaseException:
        engine.dispose()
        raise
    return Store(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def open_default_store() -> Store:
    """Open the store named by :class:`specops.settings.Settings` (``SPECOPS_DATABASE_URL``)."""
    from specops.settings import Settings

    return open_store(Settings.from_env().database_url)
