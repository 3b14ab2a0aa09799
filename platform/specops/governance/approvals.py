"""Approvals: a policy can require a named person's approval before a version reaches production.

The policy lives in the governance store (``policies`` row ``require_approval``); the environment
variable ``SPECOPS_REQUIRE_APPROVAL`` (``1``/``true``/``0``/``false``) overrides it, for CI and demos.
Approving and changing the policy are audit events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc

from specops.errors import Conflict, InvalidInput
from specops.governance import audit, models
from specops.governance.store import Store

REQUIRE_APPROVAL = "require_approval"
"""Policy key: ``true`` means production promotion needs at least one approval of that version."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval as read from the store."""

    pair_name: str
    version: str
    approved_by: str
    note: str
    created_at: str


def approval_required(store: Store) -> bool:
    """Whether the policy requires an approval before production (env override, then the store)."""
    override = os.environ.get("SPECOPS_REQUIRE_APPROVAL", "").strip().lower()
    if override in _TRUE:
        return True
    if override in _FALSE:
        return False
    with store.session() as session:
        value = session.scalar(sa.select(models.Policy.value).where(models.Policy.key == REQUIRE_APPROVAL))
    return (value or "false").lower() in _TRUE


def set_approval_policy(store: Store, *, required: bool, actor: str) -> None:
    """Turn the approval requirement on or off (an audit event ``policy.set``)."""
    _check_name("actor", actor)
    with store.write_connection() as conn:
        table = models.Policy.__table__
        value = "true" if required else "false"
        updated = conn.execute(
            sa.update(table)
            .where(table.c.key == REQUIRE_APPROVAL)
            .values(value=value, updated_by=actor, updated_at=models.utcnow())
        ).rowcount
        if not updated:
            conn.execute(
                sa.insert(table).values(key=REQUIRE_APPROVAL, value=value, updated_by=actor, updated_at=models.utcnow())
            )
        audit.append_with(
            conn, actor=actor, action="policy.set", subject="policy:" + REQUIRE_APPROVAL, payload={"value": value}
        )


def approve(store: Store, name: str, version: str, *, by: str, note: str = "") -> ApprovalRecord:
    """Record ``by``'s approval of ``name`` version ``version`` for production (audit ``version.approve``).

    The caller checks that the version exists (the CLI asks the registry). A second approval by the
    same person is a :class:`Conflict`.
    """
    _check_name("pair name", name)
    _check_name("version", version)
    _check_name("approver (--by)", by)
    now = models.utcnow()
    try:
        with store.write_connection() as conn:
            conn.execute(
                sa.insert(models.Approval.__table__).values(
                    pair_name=name, version=str(version), approved_by=by, note=note, created_at=now
                )
            )
            audit.append_with(
                conn,
                actor=by,
                action="version.approve",
                subject=f"pair:{name}",
                payload={"version": str(version), "note": note},
            )
    except exc.IntegrityError as error:
        raise Conflict(f"{by} has already approved {name} version {version}") from error
    return ApprovalRecord(name, str(version), by, note, audit.format_time(now))


def approvals(store: Store, name: str, version: str | None = None) -> list[ApprovalRecord]:
    """Approvals of ``name`` (of one ``version`` if given), oldest first."""
    query = sa.select(models.Approval).where(models.Approval.pair_name == name)
    if version is not None:
        query = query.where(models.Approval.version == str(version))
    with store.session() as session:
        rows = session.scalars(query.order_by(models.Approval.id)).all()
        return [
            ApprovalRecord(row.pair_name, row.version, row.approved_by, row.note, audit.format_time(row.created_at))
            for row in rows
        ]


def require_approval(store: Store, name: str, version: str) -> None:
    """Raise :class:`Conflict` if the policy requires an approval and ``name`` ``version`` has none.

    The rollout code calls this before moving the ``production`` alias.
    """
    if not approval_required(store):
        return
    if not approvals(store, name, str(version)):
        raise Conflict(
            f"{name} version {version} needs an approval before production: "
            f"run `specops approve {name} {version} --by WHO --note TEXT`"
        )


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must not be empty")
