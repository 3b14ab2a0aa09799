"""Writing one pair version into MLflow: the run, its artifacts and metrics, the model version; undone on failure.

Also its mirror in the governance store (``pairs``/``pair_versions``), once MLflow holds it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.pairs import pair_spec
from specops.registry import mlflow_access, packaging
from specops.registry.pair_version import MODEL_ARTIFACT_PATH, PairVersion

if TYPE_CHECKING:
    from specops.governance.audit import AuditLog
    from specops.pairs.qualification_report import QualificationReport


def create_version(
    client: Any,
    *,
    experiment_id: str,
    name: str,
    spec: pair_spec.PairSpec,
    report: QualificationReport,
    target_dir: Path,
    draft_dir: Path | None,
    note: str,
    actor: str,
) -> PairVersion:
    """Log the staged pair as a run and create model version ``name`` from it, tagged with the figures.

    What a failure half-way created (registered model, run, version) is deleted before the error rises.
    """
    import mlflow.pyfunc

    from specops.registry import pyfunc

    tags = {
        **report.tags(),
        "pair.target_sha256": spec.target.sha256,
        "pair.draft_sha256": spec.draft.sha256 if spec.draft else "",
        "pair.tokenizer_sha256": spec.tokenizer_sha256,
        "pair.target_licence": spec.target.licence,
        "pair.draft_licence": spec.draft.licence if spec.draft else "",
        "pair.parents": ",".join(spec.lineage.parents),
        "pair.num_speculative_tokens": str(spec.speculation.num_speculative_tokens),
        "registered_by": actor,
        "note": note,
    }
    created_model = created_run = created_version = None
    staging = Path(tempfile.mkdtemp(prefix="specops-stage-"))
    try:
        with mlflow_access.mlflow_errors(f"register {name}"):
            if not mlflow_access.exists(lambda: client.get_registered_model(name)):
                try:
                    client.create_registered_model(
                        name, description=f"Speculative-decoding pair {name} (target + draft)."
                    )
                    created_model = name
                except Exception:
                    client.get_registered_model(name)
            run = client.create_run(experiment_id, run_name=f"register-{name}", tags={"specops.pair": name})
            created_run = run.info.run_id
            pair_folder = packaging.stage_pair(
                staging / "pair",
                target=target_dir,
                draft=draft_dir,
                spec=spec,
                qualification_json=report.to_json(),
            )
            artifacts = {
                pyfunc.ARTIFACT_TARGET: str(pair_folder / "target"),
                pyfunc.ARTIFACT_SPEC: str(pair_folder / "pair.json"),
                pyfunc.ARTIFACT_QUALIFICATION: str(pair_folder / "qualification.json"),
            }
            if draft_dir is not None:
                artifacts[pyfunc.ARTIFACT_DRAFT] = str(pair_folder / "draft")
            model_dir = staging / "model"
            mlflow.pyfunc.save_model(
                path=str(model_dir),
                python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),
                artifacts=artifacts,
                pip_requirements=["specops"],
                metadata={"specops_pair": name, "specops_spec_schema": spec.schema_version},
            )
            client.log_artifacts(created_run, str(model_dir), MODEL_ARTIFACT_PATH)
            client.log_artifact(created_run, str(pair_folder / "qualification.json"))
            for key, value in figures(report).items():
                if isinstance(value, bool):
                    value = float(value)
                client.log_metric(created_run, key, float(value))
            client.log_param(created_run, "pair", name)
            client.log_param(created_run, "min_acceptance", spec.min_acceptance)
            client.log_param(created_run, "min_speedup", report.min_speedup)
            client.set_terminated(created_run, "FINISHED")
            source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}"
            model_version = client.create_model_version(
                name, source, run_id=created_run, tags=tags, description=note or report.summary()
            )
            created_version = model_version.version
        return PairVersion(
            name=name,
            version=str(created_version),
            tags=tags,
            aliases=[],
            source=source,
            run_id=created_run,
            created_at=mlflow_access.iso_ms(model_version.creation_timestamp),
            description=model_version.description or "",
        )
    except BaseException:
        undo(client, name=name, model=created_model, run_id=created_run, version=created_version)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def undo(client: Any, *, name: str, model: str | None, run_id: str | None, version: str | None) -> None:
    """Delete what a failed registration created (best effort; never masks the first error)."""
    with contextlib.suppress(Exception):
        if version is not None:
            client.delete_model_version(name, version)
    if run_id is not None:
        with contextlib.suppress(Exception):
            artifact_uri = client.get_run(run_id).info.artifact_uri
            client.delete_run(run_id)
            if artifact_uri.startswith("file:"):
                from urllib.parse import unquote, urlparse

                shutil.rmtree(Path(unquote(urlparse(artifact_uri).path)).parent, ignore_errors=True)
    with contextlib.suppress(Exception):
        if model is not None:
            client.delete_registered_model(model)


def figures(report: QualificationReport) -> dict[str, Any]:
    """The report's figures as run metrics and audit payload."""
    return {
        "acceptance_rate": round(report.acceptance_rate, 6),
        "mean_accepted_length": round(report.mean_accepted_length, 6),
        "speedup": round(report.speedup, 6),
        "speedup_sampled": round(report.speedup_sampled, 6),
        "sampled_temperature": report.sampled_temperature,
        "sampled_top_p": report.sampled_top_p,
        "lossless": report.lossless,
        "tokenizer_compatible": report.tokenizer_compatible,
        "min_acceptance": report.min_acceptance,
        "min_speedup": report.min_speedup,
        "num_prompts": report.num_prompts,
    }


def record_in_governance(
    audit: AuditLog, version: PairVersion, *, spec: pair_spec.PairSpec, report: QualificationReport, actor: str
) -> None:
    """Mirror ``version`` into the governance store of ``audit`` (its ``pairs``/``pair_versions`` tables)."""
    import sqlalchemy as sa

    from specops.governance import models

    store = audit.store
    with store.session() as session:
        pair = session.scalar(sa.select(models.Pair).where(models.Pair.name == version.name))
        if pair is None:
            pair = models.Pair(name=version.name, description="")
            session.add(pair)
            session.flush()
        session.add(
            models.PairVersion(
                pair_id=pair.id,
                version=version.version,
                registered_by=actor,
                model_uri=version.uri,
                target_sha256=spec.target.sha256,
                draft_sha256=spec.draft.sha256 if spec.draft else None,
                tokenizer_sha256=spec.tokenizer_sha256,
                lossless=report.lossless,
                acceptance_rate=report.acceptance_rate,
                mean_accepted_length=report.mean_accepted_length,
                speedup=report.speedup,
                min_acceptance=report.min_acceptance,
                spec=json.loads(spec.model_dump_json()),
            )
        )
