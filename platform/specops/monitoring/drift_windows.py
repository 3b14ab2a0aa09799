"""The two windows a drift run compares, and the request records in them.

By default the reference is the production version's first analysis window after its promotion (from
the audit log's ``rollout.promote`` events; else the version's first records), and the current window is
the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from specops.errors import NotFound
from specops.monitoring import drift

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Windows:
    """The two windows compared (UTC) and the production version the reference belongs to."""

    version: str
    reference_start: datetime
    reference_end: datetime
    current_start: datetime
    current_end: datetime
    reference_origin: str  # how the reference start was found


def load_records(
    store: Any, *, deployment: str, start: datetime, end: datetime, version: str | None = None
) -> pd.DataFrame:
    """Request records of ``deployment`` with ``start <= created_at < end`` (one version if given)."""
    import pandas as pd
    import sqlalchemy as sa

    from specops.governance import models

    table = models.RequestRecord
    query = (
        sa.select(
            table.created_at,
            table.pair_name,
            table.pair_version,
            table.role,
            *(getattr(table, c) for c in drift.NUMERIC_COLUMNS),
            table.prompt,
        )
        .where(table.deployment == deployment, table.created_at >= start, table.created_at < end)
        .order_by(table.created_at)
    )
    if version is not None:
        query = query.where(table.pair_version == version)
    with store.session() as session:
        rows = session.execute(query).all()
    columns = ["created_at", "pair_name", "pair_version", "role", *drift.NUMERIC_COLUMNS, drift.TEXT_COLUMN]
    return pd.DataFrame([tuple(row) for row in rows], columns=columns)


def find_windows(
    store: Any,
    *,
    deployment: str,
    now: datetime,
    window: timedelta,
    reference_window: timedelta,
    audit: Any = None,
    version: str | None = None,
) -> Windows:
    """The default windows: reference = the production version's first analysis window after promotion
    (from the audit log's ``rollout.promote`` events; else the version's first records), current = the
    last ``window`` before ``now``."""
    import sqlalchemy as sa

    from specops.governance import models

    start: datetime | None = None
    origin = ""
    if audit is not None and version is None:
        promotions = audit.events(subject=deployment, action="rollout.promote")
        if promotions:
            import json

            last = promotions[-1]
            payload = json.loads(last.payload) if isinstance(last.payload, str) else last.payload
            version = payload.get("stable_version")
            start, origin = _utc(last.time), f"promotion of {version} (audit event {last.seq})"
    table = models.RequestRecord
    with store.session() as session:
        if version is None:
            version = session.scalar(
                sa.select(table.pair_version)
                .where(table.deployment == deployment)
                .order_by(table.created_at.desc())
                .limit(1)
            )
            if version is None:
                raise NotFound(f"no request records for deployment {deployment!r}")
        if start is None:
            first = session.scalar(
                sa.select(sa.func.min(table.created_at)).where(
                    table.deployment == deployment, table.pair_version == version
                )
            )
            if first is None:
                raise NotFound(f"no request records of version {version} in deployment {deployment!r}")
            start, origin = _utc(first), f"first records of version {version}"
    assert start is not None
    return Windows(
        version=str(version),
        reference_start=start,
        reference_end=start + reference_window,
        current_start=now - window,
        current_end=now,
        reference_origin=origin,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
