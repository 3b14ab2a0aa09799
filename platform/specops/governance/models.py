"""The governance store's tables as SQLAlchemy 2 typed models.

One module holds every table so that Alembic's autogenerate sees the whole schema
(``tests/governance/test_migrations.py`` proves the migrations and these models agree).

Times are timezone-aware UTC. JSON columns hold plain dicts/lists. The audit log
(``audit_events`` + ``audit_chain_head``) is written only through :mod:`specops.governance.audit`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first audit event and the chain head's hash while the log is empty."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so constraint names are stable across dialects."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


# --------------------------------------------------------------------------- pairs and versions


class Pair(Base):
    """A named target/draft pair; its versions live in MLflow and are mirrored in ``pair_versions``."""

    __tablename__ = "pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    description: Mapped[str] = mapped_column(Text, default="")

    versions: Mapped[list[PairVersion]] = relationship(back_populates="pair", cascade="all, delete-orphan")


class PairVersion(Base):
    """One registered (qualified) version of a pair, with its qualification figures and checksums."""

    __tablename__ = "pair_versions"
    __table_args__ = (UniqueConstraint("pair_id", "version", name="uq_pair_versions_pair_id_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_by: Mapped[str] = mapped_column(String(128))
    model_uri: Mapped[str] = mapped_column(String(512))
    target_sha256: Mapped[str] = mapped_column(String(64))
    draft_sha256: Mapped[str | None] = mapped_column(String(64))
    tokenizer_sha256: Mapped[str] = mapped_column(String(64))
    lossless: Mapped[bool] = mapped_column(Boolean)
    acceptance_rate: Mapped[float] = mapped_column(Float)
    mean_accepted_length: Mapped[float] = mapped_column(Float)
    speedup: Mapped[float] = mapped_column(Float)
    min_acceptance: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)

    pair: Mapped[Pair] = relationship(back_populates="versions")


# --------------------------------------------------------------------------- deployments and rollouts


class Deployment(Base):
    """A serving deployment of one pair (local runtime or a Kubernetes SpeculativeDeployment)."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    namespace: Mapped[str] = mapped_column(String(128), default="default")
    backend: Mapped[str] = mapped_column(String(32))  # "local" | "kubernetes"
    pair_name: Mapped[str] = mapped_column(String(128), index=True)
    production_version: Mapped[str | None] = mapped_column(String(32))
    canary_version: Mapped[str | None] = mapped_column(String(32))
    canary_weight: Mapped[int] = mapped_column(Integer, default=0)  # percent of traffic, 0..100
    status: Mapped[str] = mapped_column(String(32), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    rollouts: Mapped[list[Rollout]] = relationship(back_populates="deployment")


class Rollout(Base):
    """One progressive rollout of a canary version, from start to promotion, rollback or failure."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    pair_name: Mapped[str] = mapped_column(String(128))
    from_version: Mapped[str | None] = mapped_column(String(32))
    to_version: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))  # running | promoted | rolled_back | failed | aborted
    canary_weight: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")

    deployment: Mapped[Deployment] = relationship(back_populates="rollouts")
    analysis_runs: Mapped[list[AnalysisRun]] = relationship(back_populates="rollout", cascade="all, delete-orphan")


class AnalysisRun(Base):
    """One canary analysis over a metrics window, with its verdict."""

    __tablename__ = "analysis_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    canary_weight: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(String(32))  # pass | fail | inconclusive
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    rollout: Mapped[Rollout] = relationship(back_populates="analysis_runs")
    measurements: Mapped[list[AnalysisMeasurement]] = relationship(
        back_populates="analysis_run", cascade="all, delete-orphan"
    )


class AnalysisMeasurement(Base):
    """One measured value of an analysis run and the query that produced it."""

    __tablename__ = "analysis_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(128))  # e.g. acceptance_rate
    role: Mapped[str] = mapped_column(String(32))  # canary | production
    query: Mapped[str] = mapped_column(Text)  # PromQL, or a description of the local computation
    value: Mapped[float | None] = mapped_column(Float)  # None: no data in the window
    threshold: Mapped[float | None] = mapped_column(Float)
    comparator: Mapped[str] = mapped_column(String(8), default=">=")
    passed: Mapped[bool | None] = mapped_column(Boolean)

    analysis_run: Mapped[AnalysisRun] = relationship(back_populates="measurements")


# --------------------------------------------------------------------------- incidents, alerts, drift


class Incident(Base):
    """An incident opened by alerts or an automatic rollback."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(32))  # page | ticket | info
    status: Mapped[str] = mapped_column(String(32), default="open")  # open | resolved
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(Text, default="")

    alerts: Mapped[list[Alert]] = relationship(back_populates="incident")


class Alert(Base):
    """An alert as received from Alertmanager (or raised by the local evaluator)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))  # firing | resolved
    severity: Mapped[str] = mapped_column(String(32), default="")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    incident: Mapped[Incident | None] = relationship(back_populates="alerts")


class DriftReport(Base):
    """One drift comparison of recent request records against a reference window."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(128), index=True)
    pair_name: Mapped[str] = mapped_column(String(128))
    pair_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reference_rows: Mapped[int] = mapped_column(Integer)
    current_rows: Mapped[int] = mapped_column(Integer)
    drift_share: Mapped[float] = mapped_column(Float)  # the configured share that means "drifted"
    drifted_share: Mapped[float] = mapped_column(Float)  # the measured share of drifted columns
    drifted: Mapped[bool] = mapped_column(Boolean)
    columns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # column -> method, score, drifted
    report_path: Mapped[str | None] = mapped_column(String(1024))


# --------------------------------------------------------------------------- approvals and policies


class Approval(Base):
    """A person's approval of a pair version for production."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("pair_name", "version", "approved_by", name="uq_approvals_pair_name_version_by"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(32))
    approved_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Policy(Base):
    """A governance policy setting (``require_approval`` = ``true``/``false``)."""

    __tablename__ = "policies"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --------------------------------------------------------------------------- request records


class RequestRecord(Base):
    """A sampled serving request (written by the serving runtime; read by the drift monitor)."""

    __tablename__ = "request_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    deployment: Mapped[str] = mapped_column(String(128), index=True)
    pair_name: Mapped[str] = mapped_column(String(128))
    pair_version: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    acceptance_rate: Mapped[float] = mapped_column(Float)
    mean_accepted_length: Mapped[float] = mapped_column(Float)
    ttft_s: Mapped[float] = mapped_column(Float)
    e2e_s: Mapped[float] = mapped_column(Float)
    itl_mean_s: Mapped[float] = mapped_column(Float)
    finish_reason: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text, default="")


# --------------------------------------------------------------------------- audit log


class AuditEvent(Base):
    """One event of the hash-chained, append-only audit log.

    ``hash = sha256(prev_hash + canonical_json({seq, time, actor, action, subject, payload}))``;
    ``payload`` is stored as its canonical JSON text so that the hashed bytes are the stored bytes.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    time: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(256), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """The single row (id 1) naming the last event; appenders lock it to serialise the chain."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
