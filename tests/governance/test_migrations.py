"""The Alembic migrations and the SQLAlchemy models describe the same schema, up and down."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from specops.governance import models
from specops.governance import store as store_module


def test_upgrade_to_head_matches_the_models(database_url: str) -> None:
    opened = store_module.open_store(database_url)
    with opened.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, models.Base.metadata)
    opened.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(database_url: str) -> None:
    opened = store_module.open_store(database_url)
    store_module.downgrade(opened.engine, "base")
    left = set(sa.inspect(opened.engine).get_table_names()) - {"alembic_version"}
    assert left == set()
    store_module.upgrade(opened.engine)
    assert set(sa.inspect(opened.engine).get_table_names()) >= set(models.Base.metadata.tables)
    opened.dispose()


def test_downgrade_on_postgresql_drops_the_append_only_trigger(postgres_url: str) -> None:
    opened = store_module.open_store(postgres_url)
    store_module.downgrade(opened.engine, "base")
    with opened.engine.connect() as conn:
        functions = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE proname = 'specops_audit_events_append_only'"
        ).scalar_one()
    opened.dispose()
    assert functions == 0


def test_opening_twice_is_a_no_op(database_url: str) -> None:
    store_module.open_store(database_url).dispose()
    reopened = store_module.open_store(database_url)
    with reopened.engine.connect() as conn:
        heads = conn.exec_driver_sql("SELECT count(*) FROM audit_chain_head").scalar_one()
    reopened.dispose()
    assert heads == 1


def _open_and_close(url: str) -> None:
    store_module.open_store(url).dispose()


def test_several_processes_opening_a_fresh_store_at_once_all_succeed(database_url: str) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_open_and_close, args=(database_url,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]


def test_a_store_from_a_newer_schema_is_refused_with_one_line(database_url: str) -> None:
    import pytest

    from specops.errors import StoreUnavailable

    opened = store_module.open_store(database_url)
    with opened.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    opened.dispose()
    with pytest.raises(StoreUnavailable, match="newer SpecOps"):
        store_module.open_store(database_url)
