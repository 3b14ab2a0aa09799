"""The tamper-evident audit log: an append-only, hash-chained table of events.

Every event holds ``seq`` (1, 2, 3, … with no gaps), ``time`` (UTC), ``actor``, ``action``,
``subject``, ``payload`` (canonical JSON text), ``prev_hash`` and ``hash``::

    hash = sha256_hex(prev_hash + canonical_json({"action", "actor", "payload", "seq", "subject", "time"}))

where ``canonical_json`` is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``,
``payload`` is the stored canonical JSON text and ``time`` is ISO 8601 UTC with microseconds
(``2026-11-27T04:30:00.123456Z``). The first event's ``prev_hash`` is 64 zeros.

The single row of ``audit_chain_head`` names the last event (seq, hash). Appenders serialise on it:
on PostgreSQL with ``SELECT … FOR UPDATE`` on that row, on SQLite with ``BEGIN IMMEDIATE`` (the
database's write lock). So concurrent appends from several processes form one chain. The head also
lets ``verify`` notice events deleted from the end. On PostgreSQL a trigger refuses UPDATE, DELETE
and TRUNCATE on ``audit_events`` (see ``migrations/versions/0001_governance_store.py``).

What the chain proves: any edit, deletion, reordering or insertion of rows by someone who does not
also recompute every later hash and the head is detected by :meth:`AuditLog.verify`.
"""

from __future__ import annotations

import hashlib
import json
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from specops.errors import InvalidInput, StoreUnavailable
from specops.governance import models
from specops.governance.store import Store

_events = models.AuditEvent.__table__
_head = models.AuditChainHead.__table__

VERIFY_BATCH_ROWS = 5000
"""Rows fetched per round trip while verifying (streamed; memory stays flat over millions of events)."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, UTF-8 kept, no NaN/Infinity."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"audit payload is not plain JSON: {error}") from error


def format_time(moment: datetime) -> str:
    """``moment`` as ISO 8601 UTC with microseconds; naive datetimes are taken as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: str, *, seq: int, time: str, actor: str, action: str, subject: str, payload: str) -> str:
    """The hash of one event given its predecessor's hash (``payload`` is canonical JSON text)."""
    body = canonical_json(
        {"action": action, "actor": actor, "payload": payload, "seq": seq, "subject": subject, "time": time}
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainVerdict:
    """The result of verifying the chain.

    ok: every link holds. events: how many events were checked. first_bad_id: the ``id`` of the first
    event that breaks the chain (None when intact, or when only the chain head disagrees).
    first_bad_seq: its ``seq``. reason: one line saying what is wrong ("intact" when ok).
    seconds: wall time of the verification.
    """

    ok: bool
    events: int
    first_bad_id: int | None
    reason: str
    first_bad_seq: int | None = None
    seconds: float = 0.0


class AuditLog:
    """Append to, read and verify the audit log of one governance store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ----------------------------------------------------------------------------------- write

    def append(
        self, *, actor: str, action: str, subject: str, payload: dict[str, Any] | None = None
    ) -> models.AuditEvent:
        """Append one event in its own transaction and return it (detached)."""
        try:
            if self.store.dialect == "postgresql":  # one statement, atomic by itself: no BEGIN round trip
                with self.store.engine.connect() as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    return append_with(conn, actor=actor, action=action, subject=subject, payload=payload)
            with self.store.write_connection() as conn:
                return append_with(conn, actor=actor, action=action, subject=subject, payload=payload)
        except exc.OperationalError as error:
            raise StoreUnavailable(f"cannot append to the audit log: {_first_line(error)}") from error

    # ----------------------------------------------------------------------------------- read

    def events(
        self, subject: str | None = None, *, action: str | None = None, limit: int | None = None
    ) -> list[models.AuditEvent]:
        """Events in chain order, optionally only those about ``subject`` or of ``action``.

        With ``limit``, the last ``limit`` matching events (still in chain order).
        """
        query = sa.select(models.AuditEvent)
        if subject is not None:
            query = query.where(models.AuditEvent.subject == subject)
        if action is not None:
            query = query.where(models.AuditEvent.action == action)
        if limit is not None:
            query = query.order_by(models.AuditEvent.seq.desc()).limit(limit)
        else:
            query = query.order_by(models.AuditEvent.seq)
        with self.store.session() as session:
            rows = list(session.scalars(query))
        return sorted(rows, key=lambda event: event.seq) if limit is not None else rows

    def count(self) -> int:
        """How many events the log holds."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_events)).scalar_one())

    # ----------------------------------------------------------------------------------- verify

    def verify(self) -> ChainVerdict:
        """Walk the whole chain in ``seq`` order and report the first broken link.

        Checks, for every event: ``seq`` is the previous one plus 1, ``prev_hash`` is the previous
        event's hash, and ``hash`` is recomputed from the stored fields. Then that the chain head
        names the last event. Rows are streamed in batches; no ORM objects are built.
        """
        started = clock.perf_counter()
        conn = self.store.engine.connect()
        try:
            if self.store.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                verdict = _verify_rows(conn)
        except exc.OperationalError as error:
            raise StoreUnavailable(f"cannot read the audit log: {_first_line(error)}") from error
        finally:
            conn.close()
        return ChainVerdict(**{**verdict.__dict__, "seconds": clock.perf_counter() - started})


def append_with(
    conn: Connection, *, actor: str, action: str, subject: str, payload: dict[str, Any] | None = None
) -> models.AuditEvent:
    """Append one event inside the caller's write transaction (see :meth:`Store.write_connection`).

    Use this to make a state change and its audit event one atomic write.
    """
    for field, value in (("actor", actor), ("action", action), ("subject", subject)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"audit event {field} must be a non-empty string")
    payload_text = canonical_json(payload or {})
    now = datetime.now(UTC)
    if conn.dialect.name == "postgresql":
        return _append_postgresql(conn, now=now, actor=actor, action=action, subject=subject, payload=payload_text)
    head = conn.execute(sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == 1)).one_or_none()
    if head is None:
        raise StoreUnavailable("the audit chain head is missing: run `specops audit verify`")
    seq = int(head.seq) + 1
    digest = event_hash(
        head.hash, seq=seq, time=format_time(now), actor=actor, action=action, subject=subject, payload=payload_text
    )
    values = {
        "seq": seq,
        "time": now,
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": payload_text,
        "prev_hash": head.hash,
        "hash": digest,
    }
    event_id = conn.execute(sa.insert(_events).values(**values).returning(_events.c.id)).scalar_one()
    conn.execute(sa.update(_head).where(_head.c.id == 1).values(seq=seq, hash=digest))
    return models.AuditEvent(id=event_id, **values)


_SEQ_SENTINEL = -7_351_946_208_113
"""Stands in for ``seq`` while the hashed body is built; cannot occur unescaped anywhere else in it."""

# One round trip on PostgreSQL: lock the head row, hash in the server, move the head, insert the event.
# The body's text is built here (canonical JSON around the seq, which only the server knows) and hashed
# by the server's sha256(); ``verify`` recomputes the same bytes in Python.
_APPEND_POSTGRESQL = sa.text(
    """
    WITH head AS (
        SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE
    ), next AS (
        SELECT seq + 1 AS seq,
               hash AS prev_hash,
               encode(sha256(convert_to(hash || :body_prefix || (seq + 1)::text || :body_suffix, 'UTF8')), 'hex')
                   AS hash
        FROM head
    ), moved AS (
        UPDATE audit_chain_head SET seq = next.seq, hash = next.hash FROM next WHERE audit_chain_head.id = 1
    )
    INSERT INTO audit_events (seq, time, actor, action, subject, payload, prev_hash, hash)
    SELECT next.seq, :time, :actor, :action, :subject, :payload, next.prev_hash, next.hash FROM next
    RETURNING id, seq, prev_hash, hash
    """
)


def _append_postgresql(
    conn: Connection, *, now: datetime, actor: str, action: str, subject: str, payload: str
) -> models.AuditEvent:
    body = canonical_json(
        {
            "action": action,
            "actor": actor,
            "payload": payload,
            "seq": _SEQ_SENTINEL,
            "subject": subject,
            "time": format_time(now),
        }
    )
    marker = f'"seq":{_SEQ_SENTINEL}'
    cut = body.index(marker) + len('"seq":')
    row = conn.execute(
        _APPEND_POSTGRESQL,
        {
            "body_prefix": body[:cut],
            "body_suffix": body[cut + len(str(_SEQ_SENTINEL)) :],
            "time": now,
            "actor": actor,
            "action": action,
            "subject": subject,
            "payload": payload,
        },
    ).one_or_none()
    if row is None:
        raise StoreUnavailable("the audit chain head is missing: run `specops audit verify`")
    return models.AuditEvent(
        id=row.id,
        seq=row.seq,
        time=now,
        actor=actor,
        action=action,
        subject=subject,
        payload=payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _verify_rows(conn: Connection) -> ChainVerdict:
    head = conn.execute(sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == 1)).one_or_none()
    columns = (
        _events.c.id,
        _events.c.seq,
        _events.c.time,
        _events.c.actor,
        _events.c.action,
        _events.c.subject,
        _events.c.payload,
        _events.c.prev_hash,
        _events.c.hash,
    )
    result = conn.execution_options(stream_results=True, yield_per=VERIFY_BATCH_ROWS).execute(
        sa.select(*columns).order_by(_events.c.seq)
    )
    sha256 = hashlib.sha256
    dumps = json.dumps
    prev_hash = models.GENESIS_HASH
    expected_seq = 1
    count = 0
    for row_id, seq, moment, actor, action, subject, payload, stored_prev, stored_hash in result:
        count += 1
        if seq != expected_seq:
            kind = "missing" if seq > expected_seq else "duplicated"
            return _broken(
                count, row_id, seq, f"seq {seq} where {expected_seq} was expected ({kind} or reordered events)"
            )
        if stored_prev != prev_hash:
            return _broken(
                count,
                row_id,
                seq,
                "prev_hash does not match the previous event's hash (deleted, inserted or reordered)",
            )
        body = dumps(
            {
                "action": action,
                "actor": actor,
                "payload": payload,
                "seq": seq,
                "subject": subject,
                "time": format_time(moment),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        if sha256((prev_hash + body).encode("utf-8")).hexdigest() != stored_hash:
            return _broken(count, row_id, seq, "hash does not match its contents (edited)")
        prev_hash = stored_hash
        expected_seq += 1
    if head is None:
        return ChainVerdict(ok=False, events=count, first_bad_id=None, reason="the chain head row is missing")
    if int(head.seq) != count or head.hash != prev_hash:
        return ChainVerdict(
            ok=False,
            events=count,
            first_bad_id=None,
            first_bad_seq=count + 1 if int(head.seq) > count else None,
            reason=(
                f"the chain head names event seq {head.seq} but the log ends at seq {count}"
                " (events deleted from the end, or appended around the chain)"
            ),
        )
    return ChainVerdict(ok=True, events=count, first_bad_id=None, reason="intact")


def _broken(count: int, row_id: int, seq: int, reason: str) -> ChainVerdict:
    return ChainVerdict(
        ok=False, events=count, first_bad_id=row_id, first_bad_seq=seq, reason=f"event {row_id} (seq {seq}): {reason}"
    )


def _first_line(error: exc.DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)
