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

Layers: :func:`compare` (Evidently, pure) and :func:`diagnose` (pure) live here;
:mod:`drift_windows` finds the two windows and loads their records (SQL → DataFrame), :mod:`drift_gauges`
holds the Prometheus gauges (written as a text file the receiver's ``/metrics`` serves), and
:mod:`drift_run` does all of it for one deployment, saving the HTML report and ``drift_reports`` row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from specops.errors import InvalidInput

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
