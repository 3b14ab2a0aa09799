"""Drift of the request traffic, computed by Evidently (current API, not ``evidently.legacy``).

A *reference* window of request records (by default the first analysis window of the production
version after its promotion) is compared with the *current* window (the latest one) column by column:
prompt and output lengths, per-request acceptance rate and mean accepted length, and the prompt text
itself (Evidently's offline text drift: a domain classifier's ROC AUC against a percentile threshold).

Scores are not all alike, so each column keeps its method and the kind of its score:

* ``p_value`` (K-S, chi², Z, …): the column drifted when the score is *below* the threshold;
* ``distance`` (Wasserstein, Jensen-Shannon, …, chosen by Evidently above 1000 rows) and ``roc_auc``
  (text): the column drifted when the score is *at or above* the threshold.

Evidently's own per-column tests decide the flag; the verdict is "drifted" when the share of drifted
columns reaches ``drift_share``. :func:`diagnose` then answers the operator's question when acceptance
fell: did the prompts drift (the draft no longer fits the traffic: retrain / re-qualify) or not (the
version or the runtime regressed: roll back)?

Layers: :func:`load_records` (SQL → DataFrame), :func:`compare` (Evidently, pure), :func:`diagnose`
(pure), :func:`save` (HTML artifact + ``drift_reports`` row), :class:`drift_gauges.DriftGauges`
(Prometheus gauges, written as a text file the receiver's ``/metrics`` serves), :func:`run` (all of it
for one deployment).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.errors import InvalidInput, NotFound
from specops.monitoring import drift_gauges

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_COLUMNS = ("prompt_tokens", "output_tokens", "acceptance_rate", "mean_accepted_length")
TEXT_COLUMN = "prompt"
DEFAULT_DRIFT_SHARE = 0.5
"""Share of drifted columns at which the traffic counts as drifted (Evidently's default)."""
DEFAULT_MIN_ROWS = 30
"""Fewer records than this in either window cannot support a verdict (the tests lack power)."""
ACCEPTANCE_DROP = 0.1
"""Relative fall of mean per-request acceptance (current vs reference) that counts as "acceptance fell"."""


@dataclass(frozen=True)
class ColumnDrift:
    """One column's comparison: ``score`` by ``method`` against ``threshold``; ``score_kind`` says which way."""

    column: str
    method: str
    score: float
    score_kind: str  # "p_value" | "distance" | "roc_auc"
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one comparison."""

    drifted: bool
    drift_share: float  # configured: the share of drifted columns that means "drifted"
    drifted_share: float  # measured
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int

    def column(self, name: str) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == name), None)


@dataclass(frozen=True)
class Diagnosis:
    """Why acceptance changed, with the evidence.

    conclusion: ``acceptance_steady`` (nothing to explain), ``traffic_drift`` (prompts drifted: retrain
    or re-qualify the draft), ``regression`` (prompts did not drift: roll back the version/runtime).
    """

    conclusion: str
    action: str
    acceptance_fell: bool
    prompts_drifted: bool
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Windows:
    """The two windows compared (UTC) and the production version the reference belongs to."""

    version: str
    reference_start: datetime
    reference_end: datetime
    current_start: datetime
    current_end: datetime
    reference_origin: str  # how the reference start was found


@dataclass(frozen=True)
class DriftRun:
    """Everything one ``specops drift run`` produced."""

    deployment: str
    pair_name: str
    version: str
    windows: Windows
    result: DriftResult
    diagnosis: Diagnosis
    report_path: Path
    report_id: int | None


# --------------------------------------------------------------------------- load


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
            *(getattr(table, c) for c in NUMERIC_COLUMNS),
            table.prompt,
        )
        .where(table.deployment == deployment, table.created_at >= start, table.created_at < end)
        .order_by(table.created_at)
    )
    if version is not None:
        query = query.where(table.pair_version == version)
    with store.session() as session:
        rows = session.execute(query).all()
    columns = ["created_at", "pair_name", "pair_version", "role", *NUMERIC_COLUMNS, TEXT_COLUMN]
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


# --------------------------------------------------------------------------- compare


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> tuple[DriftResult, Any]:
    """Compare two windows with Evidently's ``DataDriftPreset``; returns the result and the snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    for label, frame in (("reference", reference), ("current", current)):
        if len(frame) < min_rows:
            raise InvalidInput(
                f"the {label} window holds {len(frame)} request records; at least {min_rows} "
                "are needed for a drift verdict"
            )
    if not 0 < drift_share <= 1:
        raise InvalidInput(f"drift_share must lie in (0, 1], got {drift_share}")
    with_text = bool(reference[TEXT_COLUMN].astype(bool).any() and current[TEXT_COLUMN].astype(bool).any())
    columns = [*NUMERIC_COLUMNS, *((TEXT_COLUMN,) if with_text else ())]
    definition = DataDefinition(
        numerical_columns=list(NUMERIC_COLUMNS), text_columns=[TEXT_COLUMN] if with_text else []
    )
    datasets = [
        Dataset.from_pandas(frame[columns].reset_index(drop=True), data_definition=definition)
        for frame in (reference, current)
    ]
    report = Report([DataDriftPreset(columns=columns, drift_share=drift_share)], include_tests=True)
    snapshot = report.run(current_data=datasets[1], reference_data=datasets[0])
    return _result(
        snapshot.dict(), drift_share=drift_share, reference_rows=len(reference), current_rows=len(current)
    ), snapshot


def _result(data: dict[str, Any], *, drift_share: float, reference_rows: int, current_rows: int) -> DriftResult:
    failed_metrics = {
        test.get("metric_config", {}).get("metric_id"): test.get("status") for test in data.get("tests", [])
    }
    drifted_share: float | None = None
    columns: list[ColumnDrift] = []
    for metric in data["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith(":DriftedColumnsCount"):
            drifted_share = float(metric["value"]["share"])
        elif kind.endswith(":ValueDrift"):
            method = str(config["method"])
            score = float(metric["value"])
            threshold = float(config["threshold"])
            score_kind = _score_kind(method)
            status = failed_metrics.get(metric.get("id"))
            drifted = status == "FAIL" if status in ("FAIL", "SUCCESS") else _drifted(score_kind, score, threshold)
            columns.append(
                ColumnDrift(
                    column=str(config["column"]),
                    method=method,
                    score=score,
                    score_kind=score_kind,
                    threshold=threshold,
                    drifted=drifted,
                )
            )
    if drifted_share is None:
        raise InvalidInput("Evidently returned no DriftedColumnsCount metric")
    return DriftResult(
        drifted=drifted_share >= drift_share,
        drift_share=drift_share,
        drifted_share=drifted_share,
        columns=tuple(columns),
        reference_rows=reference_rows,
        current_rows=current_rows,
    )


def _score_kind(method: str) -> str:
    lowered = method.lower()
    if "p_value" in lowered or "p-value" in lowered:
        return "p_value"
    if "text content" in lowered or "domain classifier" in lowered:
        return "roc_auc"
    return "distance"


def _drifted(score_kind: str, score: float, threshold: float) -> bool:
    return score < threshold if score_kind == "p_value" else score >= threshold


# --------------------------------------------------------------------------- diagnose


def diagnose(
    result: DriftResult, reference: pd.DataFrame, current: pd.DataFrame, *, min_drop: float = ACCEPTANCE_DROP
) -> Diagnosis:
    """Say whether acceptance fell and, if it did, whether the prompts drifted (with the evidence)."""
    before = float(reference["acceptance_rate"].mean())
    after = float(current["acceptance_rate"].mean())
    acceptance = result.column("acceptance_rate")
    fell = after < before * (1 - min_drop) and (acceptance is None or acceptance.drifted)
    prompt_columns = [c for c in result.columns if c.column in (TEXT_COLUMN, "prompt_tokens")]
    drifted_prompts = [c for c in prompt_columns if c.drifted]
    evidence: dict[str, Any] = {
        "reference_mean_acceptance": round(before, 4),
        "current_mean_acceptance": round(after, 4),
        "acceptance_test": asdict(acceptance) if acceptance else None,
        "prompt_tests": [asdict(c) for c in prompt_columns],
        "current_versions": sorted(str(v) for v in current["pair_version"].unique()),
        "reference_versions": sorted(str(v) for v in reference["pair_version"].unique()),
    }
    if not fell:
        return Diagnosis("acceptance_steady", "none", False, bool(drifted_prompts), evidence)
    if drifted_prompts:
        which = ", ".join(f"{c.column} ({c.method} {c.score:.3g} vs {c.threshold:g})" for c in drifted_prompts)
        return Diagnosis(
            "traffic_drift",
            f"acceptance fell {before:.2f} → {after:.2f} and the prompts drifted ({which}): the draft "
            "no longer fits the traffic; retrain or re-qualify the draft on current prompts",
            True,
            True,
            evidence,
        )
    return Diagnosis(
        "regression",
        f"acceptance fell {before:.2f} → {after:.2f} while the prompts did not drift: the version or "
        "the runtime regressed; roll back",
        True,
        False,
        evidence,
    )


# --------------------------------------------------------------------------- publish


def save(
    store: Any, *, deployment: str, pair_name: str, version: str, result: DriftResult, report_path: Path | None
) -> int:
    """Insert the ``drift_reports`` row and return its id."""
    from specops.governance import models

    with store.session() as session:
        row = models.DriftReport(
            deployment=deployment,
            pair_name=pair_name,
            pair_version=version,
            reference_rows=result.reference_rows,
            current_rows=result.current_rows,
            drift_share=result.drift_share,
            drifted_share=result.drifted_share,
            drifted=result.drifted,
            columns={
                c.column: {
                    "method": c.method,
                    "score": _json_number(c.score),
                    "score_kind": c.score_kind,
                    "threshold": c.threshold,
                    "drifted": c.drifted,
                }
                for c in result.columns
            },
            report_path=str(report_path) if report_path else None,
        )
        session.add(row)
        session.flush()
        return int(row.id)


def run(
    store: Any,
    *,
    deployment: str,
    artifacts_dir: Path,
    now: datetime | None = None,
    window: timedelta = timedelta(hours=1),
    reference_window: timedelta = timedelta(hours=1),
    drift_share: float = DEFAULT_DRIFT_SHARE,
    min_rows: int = DEFAULT_MIN_ROWS,
    audit: Any = None,
    gauges: drift_gauges.DriftGauges | None = None,
    gauges_file: Path | None = None,
    version: str | None = None,
    windows: Windows | None = None,
) -> DriftRun:
    """Compare ``deployment``'s windows, save the HTML report and the row, publish gauges, audit it."""
    now = now or datetime.now(UTC)
    windows = windows or find_windows(
        store,
        deployment=deployment,
        now=now,
        window=window,
        reference_window=reference_window,
        audit=audit,
        version=version,
    )
    reference = load_records(
        store, deployment=deployment, start=windows.reference_start, end=windows.reference_end, version=windows.version
    )
    current = load_records(store, deployment=deployment, start=windows.current_start, end=windows.current_end)
    result, snapshot = compare(reference, current, drift_share=drift_share, min_rows=min_rows)
    diagnosis = diagnose(result, reference, current)
    current_version = str(current["pair_version"].mode().iloc[0])
    pair_name = str(reference["pair_name"].iloc[0])
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    report_path = artifacts_dir / "drift" / deployment / f"drift-{stamp}.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_path))
    report_id = (
        save(
            store,
            deployment=deployment,
            pair_name=pair_name,
            version=current_version,
            result=result,
            report_path=report_path,
        )
        if store is not None
        else None
    )
    gauges = gauges or drift_gauges.DriftGauges()
    gauges.publish(result, deployment=deployment, version=current_version, at=now.timestamp())
    if gauges_file is not None:
        gauges.write(gauges_file)
    if audit is not None:
        audit.append(
            actor="specops-drift",
            action="drift.reported",
            subject=deployment,
            payload={
                "report_id": report_id,
                "drifted": result.drifted,
                "drifted_share": result.drifted_share,
                "drift_share": result.drift_share,
                "version": current_version,
                "reference_version": windows.version,
                "reference": [windows.reference_start.isoformat(), windows.reference_end.isoformat()],
                "current": [windows.current_start.isoformat(), windows.current_end.isoformat()],
                "diagnosis": {"conclusion": diagnosis.conclusion, "action": diagnosis.action},
                "report_path": str(report_path),
            },
        )
    return DriftRun(
        deployment=deployment,
        pair_name=pair_name,
        version=current_version,
        windows=windows,
        result=result,
        diagnosis=diagnosis,
        report_path=report_path,
        report_id=report_id,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
