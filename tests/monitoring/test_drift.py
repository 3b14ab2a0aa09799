"""Drift is computed by Evidently over request records and says why acceptance fell.

Evidently runs take seconds on two cores, so each scenario runs once (module-scoped) and several
tests read its result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specops.governance import models
from specops.governance import store as store_module
from specops.governance.audit import AuditLog
from specops.monitoring import drift, drift_run, drift_windows
from tests.support.monitoring_data import insert_records

CLOCK: dict[str, datetime] = {}
"""The promotion time and "now" of the scenarios, set when they are built: the audit log stamps
promotions with the real clock, so they must be taken then, not when the module is imported."""


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Three deployments, each promoted at 03:00 with version 1 on code prompts at 60 % acceptance, and
    a current hour that is: the same (steady), a canary at 15 % on the same prompts (regression), or
    prose prompts at 20 % (traffic drift)."""
    home = tmp_path_factory.mktemp("drift")
    promoted = CLOCK["promoted"] = datetime.now(UTC)
    now = CLOCK["now"] = promoted + timedelta(hours=3)
    store = store_module.open_store(f"sqlite:///{home / 'governance.db'}")
    audit = AuditLog(store)
    current = now - timedelta(minutes=50)
    for seed, (name, version, prompts, acceptance) in enumerate(
        [
            ("steady", "1", "code", 0.6),
            ("regressed", "2", "code", 0.15),
            ("drifted", "1", "prose", 0.2),
        ]
    ):
        audit.append(
            actor="specops-rollout",
            action="rollout.promote",
            subject=name,
            payload={"stable_version": "1", "pair": "demo"},
        )
        insert_records(
            store,
            deployment=name,
            version="1",
            role="stable",
            start=promoted + timedelta(minutes=1),
            count=150,
            seconds=3000,
            prompts="code",
            acceptance=0.6,
            seed=seed,
        )
        insert_records(
            store,
            deployment=name,
            version=version,
            role="canary" if version == "2" else "stable",
            start=current,
            count=150,
            seconds=2400,
            prompts=prompts,
            acceptance=acceptance,
            seed=100 + seed,
        )
    yield {"store": store, "audit": audit, "home": home}
    store.dispose()


@pytest.fixture(scope="module")
def runs(scenarios: dict[str, object]) -> dict[str, drift_run.DriftRun]:
    store, audit, home = scenarios["store"], scenarios["audit"], scenarios["home"]
    out = {}
    for name in ("steady", "regressed"):
        out[name] = drift_run.run(
            store,
            deployment=name,
            artifacts_dir=home / "artifacts",
            now=CLOCK["now"],
            audit=audit,
            gauges_file=home / "metrics" / f"drift-{name}.prom",
        )
    return out


def test_the_reference_is_the_first_window_after_promotion(runs: dict[str, drift_run.DriftRun]) -> None:
    windows = runs["steady"].windows
    assert windows.reference_start.timestamp() == pytest.approx(CLOCK["promoted"].timestamp(), abs=60)
    assert windows.reference_end - windows.reference_start == timedelta(hours=1)
    assert "promotion of 1" in windows.reference_origin
    assert runs["steady"].result.reference_rows == 150 and runs["steady"].result.current_rows == 150


def test_steady_traffic_does_not_drift(runs: dict[str, drift_run.DriftRun]) -> None:
    steady = runs["steady"]
    assert not steady.result.drifted
    assert steady.diagnosis.conclusion == "acceptance_steady"


def test_every_column_keeps_its_method_threshold_and_score_kind(runs: dict[str, drift_run.DriftRun]) -> None:
    columns = {c.column: c for c in runs["steady"].result.columns}
    assert set(columns) == {"prompt_tokens", "output_tokens", "acceptance_rate", "mean_accepted_length", "prompt"}
    assert columns["prompt_tokens"].score_kind == "p_value" and "K-S" in columns["prompt_tokens"].method
    assert columns["prompt"].score_kind == "roc_auc" and "text" in columns["prompt"].method.lower()
    for column in columns.values():
        assert column.threshold > 0


def test_a_regressed_version_on_unchanged_prompts_means_roll_back(runs: dict[str, drift_run.DriftRun]) -> None:
    regressed = runs["regressed"]
    assert regressed.result.column("acceptance_rate").drifted  # type: ignore[union-attr]
    assert not regressed.result.column("prompt").drifted  # type: ignore[union-attr]
    assert regressed.diagnosis.conclusion == "regression"
    assert "roll back" in regressed.diagnosis.action
    assert regressed.diagnosis.evidence["current_versions"] == ["2"]
    assert regressed.version == "2"


def test_a_run_leaves_a_report_a_row_gauges_and_an_audit_event(
    scenarios: dict[str, object], runs: dict[str, drift_run.DriftRun]
) -> None:
    regressed = runs["regressed"]
    assert regressed.report_path.is_file() and regressed.report_path.stat().st_size > 10_000
    with scenarios["store"].session() as session:  # type: ignore[attr-defined]
        row = session.get(models.DriftReport, regressed.report_id)
        assert row.deployment == "regressed" and row.pair_version == "2"
        assert row.columns["acceptance_rate"]["score_kind"] == "p_value"
        assert row.columns["acceptance_rate"]["drifted"] is True
        assert row.drifted_share == regressed.result.drifted_share
    gauges = (scenarios["home"] / "metrics" / "drift-regressed.prom").read_text()  # type: ignore[operator]
    assert 'specops_drift_share{deployment="regressed",pair_version="2"}' in gauges
    flag = 'specops_drift_column_drifted{column="acceptance_rate",deployment="regressed",pair_version="2"} 1.0'
    assert flag in gauges
    [event] = scenarios["audit"].events(subject="regressed", action="drift.reported")  # type: ignore[attr-defined]
    assert json.loads(event.payload)["diagnosis"]["conclusion"] == "regression"


def test_drift_run_prints_the_verdict_and_exits_3_when_prompts_drifted(
    scenarios: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from specops.cli.app import _install_all, app

    home: Path = scenarios["home"]  # type: ignore[assignment]
    monkeypatch.setenv("SPECOPS_HOME", str(home))
    monkeypatch.setenv("SPECOPS_DATABASE_URL", f"sqlite:///{home / 'governance.db'}")
    _install_all()
    result = CliRunner().invoke(
        app, ["drift", "run", "--deployment", "drifted", "--until", CLOCK["now"].isoformat()], catch_exceptions=False
    )
    assert result.exit_code == 3, result.output
    assert "DRIFT" in result.output and "traffic_drift" in result.output
    assert "retrain or re-qualify" in " ".join(result.output.split())
    assert (home / "metrics" / "drift-drifted.prom").is_file()


def test_too_few_records_is_an_error_not_a_verdict() -> None:
    import pandas as pd

    from specops.errors import InvalidInput

    frame = pd.DataFrame({c: [1] * 5 for c in (*drift.NUMERIC_COLUMNS, "prompt", "pair_version")})
    with pytest.raises(InvalidInput, match="at least 30"):
        drift.compare(frame, frame)


def test_an_unknown_deployment_is_not_found(scenarios: dict[str, object]) -> None:
    from specops.errors import NotFound

    with pytest.raises(NotFound, match="no request records"):
        drift_windows.find_windows(
            scenarios["store"],
            deployment="nope",
            now=CLOCK["now"],
            window=timedelta(hours=1),
            reference_window=timedelta(hours=1),
        )
