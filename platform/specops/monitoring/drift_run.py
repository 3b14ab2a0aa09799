"""One drift run for a deployment: find the windows, compare and diagnose them, and publish the verdict as
an HTML report, a ``drift_reports`` row, the drift gauges and a ``drift.reported`` audit event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from specops.monitoring import drift, drift_gauges, drift_windows
from specops.monitoring.drift import Diagnosis, DriftResult
from specops.monitoring.drift_windows import Windows


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
    drift_share: float = drift.DEFAULT_DRIFT_SHARE,
    min_rows: int = drift.DEFAULT_MIN_ROWS,
    audit: Any = None,
    gauges: drift_gauges.DriftGauges | None = None,
    gauges_file: Path | None = None,
    version: str | None = None,
    windows: Windows | None = None,
) -> DriftRun:
    """Compare ``deployment``'s windows, save the HTML report and the row, publish gauges, audit it."""
    now = now or datetime.now(UTC)
    windows = windows or drift_windows.find_windows(
        store,
        deployment=deployment,
        now=now,
        window=window,
        reference_window=reference_window,
        audit=audit,
        version=version,
    )
    reference = drift_windows.load_records(
        store, deployment=deployment, start=windows.reference_start, end=windows.reference_end, version=windows.version
    )
    current = drift_windows.load_records(
        store, deployment=deployment, start=windows.current_start, end=windows.current_end
    )
    result, snapshot = drift.compare(reference, current, drift_share=drift_share, min_rows=min_rows)
    diagnosis = drift.diagnose(result, reference, current)
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


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
