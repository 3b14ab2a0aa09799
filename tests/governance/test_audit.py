"""The audit log is one valid hash chain; every kind of tampering is detected."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from specops.errors import InvalidInput, StoreUnavailable
from specops.governance import audit
from specops.governance import store as store_module
from specops.governance.store import Store


def _fill(store: Store, count: int = 6) -> audit.AuditLog:
    log = audit.AuditLog(store)
    for number in range(count):
        log.append(actor="alice", action="alias.set", subject=f"pair:p{number % 2}", payload={"n": number})
    return log


def _tamper(store: Store, *statements: str) -> None:
    """Run raw SQL as an attacker would (on PostgreSQL with the append-only trigger switched off)."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement)
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER USER")


def _id_of(store: Store, seq: int) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT id FROM audit_events WHERE seq = {seq}").scalar_one()


def test_appended_events_form_an_intact_chain(store: Store) -> None:
    log = _fill(store)
    verdict = log.verify()
    assert verdict.ok, verdict.reason
    assert verdict.events == 6
    events = log.events()
    assert [event.seq for event in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))


def test_events_can_be_filtered_by_subject_and_limited(store: Store) -> None:
    log = _fill(store)
    assert [event.seq for event in log.events("pair:p1")] == [2, 4, 6]
    assert [event.seq for event in log.events(limit=2)] == [5, 6]


def test_an_empty_log_verifies(store: Store) -> None:
    verdict = audit.AuditLog(store).verify()
    assert verdict.ok
    assert verdict.events == 0


def test_the_payload_is_stored_as_canonical_json(store: Store) -> None:
    event = audit.AuditLog(store).append(actor="a", action="b", subject="c", payload={"z": 1, "a": "é", "m": [1, 2]})
    assert event.payload == '{"a":"é","m":[1,2],"z":1}'


TAMPERINGS: dict[str, Callable[[Store], tuple[str, int | None]]] = {}


def _tampering(name: str):  # type: ignore[no-untyped-def]
    def register(function):  # type: ignore[no-untyped-def]
        TAMPERINGS[name] = function
        return function

    return register


@_tampering("edit a payload")
def _edit(store: Store) -> tuple[str, int | None]:
    _tamper(store, "UPDATE audit_events SET payload = '{\"n\":99}' WHERE seq = 3")
    return "edited", _id_of(store, 3)


@_tampering("edit the actor")
def _edit_actor(store: Store) -> tuple[str, int | None]:
    _tamper(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    return "edited", _id_of(store, 2)


@_tampering("delete a middle event")
def _delete(store: Store) -> tuple[str, int | None]:
    _tamper(store, "DELETE FROM audit_events WHERE seq = 3")
    return "seq 4 where 3", _id_of(store, 4)


@_tampering("delete the last event")
def _delete_last(store: Store) -> tuple[str, int | None]:
    _tamper(store, "DELETE FROM audit_events WHERE seq = 6")
    return "chain head", None


@_tampering("reorder two events")
def _reorder(store: Store) -> tuple[str, int | None]:
    fourth = _id_of(store, 4)
    _tamper(
        store,
        "UPDATE audit_events SET seq = -1 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    )
    return "prev_hash", fourth


@_tampering("insert a forged event")
def _insert(store: Store) -> tuple[str, int | None]:
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT time, prev_hash, hash FROM audit_events WHERE seq = 6").one()
    _tamper(
        store,
        "INSERT INTO audit_events (seq, time, actor, action, subject, payload, prev_hash, hash) "
        f"VALUES (7, '{row.time}', 'mallory', 'alias.set', 'pair:p0', '{{}}', '{row.hash}', '{'f' * 64}')",
    )
    return "edited", _id_of(store, 7)


@_tampering("replace the whole tail with a recomputed event")
def _recomputed_tail(store: Store) -> tuple[str, int | None]:
    # An attacker who recomputes the last event's hash but cannot move the chain head is caught by it.
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT time, actor, action, subject, prev_hash FROM audit_events WHERE seq = 6"
        ).one()
    forged = audit.event_hash(
        row.prev_hash,
        seq=6,
        time=audit.format_time(row.time if not isinstance(row.time, str) else _parse(row.time)),
        actor="mallory",
        action=row.action,
        subject=row.subject,
        payload="{}",
    )
    _tamper(store, f"UPDATE audit_events SET actor = 'mallory', payload = '{{}}', hash = '{forged}' WHERE seq = 6")
    return "chain head", None


def _parse(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text)


@pytest.mark.parametrize("tampering", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampering_is_detected_and_the_first_bad_record_named(store: Store, tampering: str) -> None:
    log = _fill(store)
    expected_reason, expected_id = TAMPERINGS[tampering](store)
    verdict = log.verify()
    assert not verdict.ok
    assert expected_reason in verdict.reason
    assert verdict.first_bad_id == expected_id


def test_postgresql_refuses_update_and_delete_of_audit_events(postgres_url: str) -> None:
    opened = store_module.open_store(postgres_url)
    _fill(opened, 2)
    for statement in (
        "UPDATE audit_events SET actor = 'mallory'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), opened.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert audit.AuditLog(opened).verify().ok
    opened.dispose()


def test_a_payload_that_is_not_json_is_refused_and_nothing_is_written(store: Store) -> None:
    log = audit.AuditLog(store)
    with pytest.raises(InvalidInput):
        log.append(actor="a", action="b", subject="c", payload={"x": object()})
    with pytest.raises(InvalidInput):
        log.append(actor="a", action="b", subject="c", payload={"x": float("nan")})
    with pytest.raises(InvalidInput):
        log.append(actor="", action="b", subject="c")
    assert log.count() == 0
    assert log.verify().ok


def _append_many(url: str, worker: int, count: int) -> None:
    opened = store_module.open_store(url)
    log = audit.AuditLog(opened)
    for number in range(count):
        log.append(actor=f"worker-{worker}", action="test.append", subject="bench", payload={"n": number})
    opened.dispose()


def test_concurrent_appends_from_several_processes_keep_one_chain(store: Store, database_url: str) -> None:
    processes, per_process = 4, 40
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(database_url, n, per_process)) for n in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    verdict = audit.AuditLog(store).verify()
    assert verdict.ok, verdict.reason
    assert verdict.events == processes * per_process


def test_an_unreachable_database_is_a_store_unavailable_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        store_module.open_store(f"postgresql://nobody@/none?host={tmp_path}&port=1")


def test_a_path_that_cannot_be_written_is_a_store_unavailable_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailable):
        store_module.open_store(f"sqlite:///{blocker / 'sub' / 'governance.db'}")


def test_a_url_that_is_not_one_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        store_module.open_store("not a url")
    with pytest.raises(InvalidInput):
        store_module.open_store("nosuchdb://x/y")
