"""Pair versions in the MLflow model registry.

A version is one MLflow model version of the registered model NAME: a pyfunc model whose artifacts
are the staged pair folder (target, draft, ``pair.json``, ``qualification.json``), tagged with the
qualification figures (``qualification.*``) and the checksums (``pair.*``). Qualification runs
*before* anything is created in MLflow; if logging fails half-way, what was created is deleted.

Aliases ``production``, ``canary`` and ``previous`` point at versions. MLflow keeps no history of
alias moves: the rollout controller writes every move to the audit log. Registrations and refusals
are audit events written here (``version.register``, ``version.refuse``).

mlflow is imported inside methods: importing it costs more than a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.errors import Conflict, InvalidInput, NotFound, SpecOpsError, StoreUnavailable
from specops.pairs import pair_spec
from specops.registry import packaging

if TYPE_CHECKING:
    from specops.governance.audit import AuditLog
    from specops.pairs.qualification import ProgressCallback, QualificationReport
    from specops.settings import Settings

ALIASES = ("production", "canary", "previous")
"""The aliases SpecOps moves."""

EXPERIMENT = "specops-pairs"
"""MLflow experiment that holds the registration runs."""

MODEL_ARTIFACT_PATH = "pair"
"""Artifact path of the pyfunc model inside a registration run."""

TAG_PASSED = "qualification.passed"


@dataclass
class PairVersion:
    """One registered version: its number (as a string), tags and the aliases that point at it."""

    name: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    source: str = ""
    run_id: str = ""
    created_at: str = ""
    description: str = ""

    @property
    def qualified(self) -> bool:
        """Whether the version passed its qualification gate."""
        return self.tags.get(TAG_PASSED) == "true"

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


class PairRegistry:
    """Register, list, alias and download pair versions (MLflow tracking + model registry)."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        artifacts_dir: Path,
        cache_dir: Path,
        audit: AuditLog | None = None,
        actor: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.cache_dir = Path(cache_dir)
        self.audit = audit
        self.actor = actor or f"cli:{os.environ.get('USER', 'unknown')}"
        self._client: Any = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, audit: AuditLog | None = None, actor: str | None = None
    ) -> PairRegistry:
        """The registry named by ``settings`` (tracking URI, artifact folder under ``home``)."""
        return cls(
            tracking_uri=settings.tracking_uri,
            artifacts_dir=settings.artifacts_dir,
            cache_dir=settings.home / "pairs",
            audit=audit,
            actor=actor,
        )

    # ------------------------------------------------------------------------------ MLflow access

    @property
    def client(self) -> Any:
        """An ``MlflowClient`` bound to this registry's tracking URI (created on first use)."""
        if self._client is None:
            self._client = _connect(self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        client = self.client
        with _mlflow_errors("find the registration experiment"):
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is not None:
                return experiment.experiment_id
            try:
                self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailable(
                    f"cannot create the artifact folder {self.artifacts_dir}: {error.strerror}"
                ) from error
            try:
                return client.create_experiment(EXPERIMENT, artifact_location=self.artifacts_dir.resolve().as_uri())
            except Exception:
                experiment = client.get_experiment_by_name(EXPERIMENT)
                if experiment is None:
                    raise
                return experiment.experiment_id

    # ------------------------------------------------------------------------------ register

    def register(
        self,
        name: str,
        pair_dir: str | Path | None = None,
        spec: pair_spec.PairSpec | None = None,
        qualification: QualificationReport | None = None,
        *,
        target: str | Path | None = None,
        draft: str | Path | None = None,
        config: str | Path | dict[str, Any] | None = None,
        min_acceptance: float | None = None,
        min_speedup: float | None = None,
        prompts: list[str] | None = None,
        max_new_tokens: int | None = None,
        device: str = "cpu",
        note: str = "",
        actor: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> PairVersion:
        """Qualify and register a pair version; return it.

        Give either ``pair_dir`` (a pair folder with ``target/``, ``draft/`` and maybe ``pair.json``)
        or ``target`` and ``draft``. ``config`` (file or mapping) supplies PairSpec fields;
        ``min_acceptance`` and ``min_speedup`` override the spec's floors (``0.0`` records a figure
        without judging it; a speedup floor left unset everywhere is the default of ``device``, the
        torch device the gate measures on: see ``qualification_rules.default_min_speedup``). A
        ``qualification`` report already measured for these checkpoints is used as is; otherwise the
        gate runs here. A refused pair raises :class:`QualificationRefused` after a ``version.refuse``
        audit event, and nothing is created in MLflow.
        """
        from specops.pairs import qualification as gate

        actor = actor or self.actor
        if not isinstance(name, str) or not _valid_name(name):
            raise InvalidInput(f"pair name {name!r} is not valid (letters, digits, '.', '_', '-'; up to 128)")
        target_dir, draft_dir, config_data = _resolve_inputs(pair_dir, target, draft, config, spec)
        if draft_dir is None:
            raise InvalidInput("a pair needs a draft checkpoint (--draft)")
        if spec is not None:  # a given spec keeps its choices, but checksums are always measured here
            config_data = json.loads(spec.model_dump_json())
        spec = pair_spec.build_spec(
            name,
            target=target_dir,
            draft=draft_dir,
            config=config_data,
            min_acceptance=min_acceptance,
            min_speedup=min_speedup,
        )

        self._experiment_id()  # fail fast: an unreachable store or unwritable artifact folder before measuring
        report = qualification or gate.qualify(
            target_dir,
            draft_dir,
            prompts=prompts,
            min_acceptance=spec.min_acceptance,
            min_speedup=spec.min_speedup,
            num_speculative_tokens=spec.speculation.num_speculative_tokens,
            adaptive=spec.speculation.adaptive,
            temperature=spec.speculation.temperature,
            top_p=spec.speculation.top_p,
            top_k=spec.speculation.top_k,
            max_new_tokens=max_new_tokens or gate.DEFAULT_MAX_NEW_TOKENS,
            device=device,
            progress=progress,
        )
        if not report.passed:
            self._audit(
                actor=actor,
                action="version.refuse",
                subject=f"pair:{name}",
                payload={
                    "reason": report.reason,
                    "target_sha256": spec.target.sha256,
                    "draft_sha256": spec.draft.sha256 if spec.draft else None,
                    "figures": _figures(report),
                    "note": note,
                },
            )
            gate.enforce(report)

        version = self._create_version(name, spec, report, target_dir, draft_dir, note=note, actor=actor)
        self._record(version, spec, report, actor)
        self._audit(
            actor=actor,
            action="version.register",
            subject=f"pair:{name}",
            payload={
                "version": version.version,
                "uri": version.uri,
                "target_sha256": spec.target.sha256,
                "draft_sha256": spec.draft.sha256 if spec.draft else None,
                "tokenizer_sha256": spec.tokenizer_sha256,
                "figures": _figures(report),
                "note": note,
            },
        )
        return version

    def _create_version(
        self,
        name: str,
        spec: pair_spec.PairSpec,
        report: QualificationReport,
        target_dir: Path,
        draft_dir: Path | None,
        *,
        note: str,
        actor: str,
    ) -> PairVersion:
        import mlflow.pyfunc

        from specops.registry import pyfunc

        client = self.client
        experiment_id = self._experiment_id()
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
            with _mlflow_errors(f"register {name}"):
                if not _exists(lambda: client.get_registered_model(name)):
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
                for key, value in _figures(report).items():
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
                created_at=_iso_ms(model_version.creation_timestamp),
                description=model_version.description or "",
            )
        except BaseException:
            self._undo(name, created_model, created_run, created_version)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _undo(self, name: str, model: str | None, run_id: str | None, version: str | None) -> None:
        """Delete what a failed registration created (best effort; never masks the first error)."""
        client = self.client
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

    def _record(self, version: PairVersion, spec: pair_spec.PairSpec, report: QualificationReport, actor: str) -> None:
        """Mirror the version into the governance store's ``pairs``/``pair_versions`` (when it has one)."""
        if self.audit is None:
            return
        import sqlalchemy as sa

        from specops.governance import models

        store = self.audit.store
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

    def _audit(self, **event: Any) -> None:
        if self.audit is not None:
            self.audit.append(**event)

    # ------------------------------------------------------------------------------ read

    def versions(self, name: str) -> list[PairVersion]:
        """Every version of ``name``, newest first (NotFound when the pair is unknown)."""
        client = self.client
        with _mlflow_errors(f"list the versions of {name}"):
            model = self._registered_model(name)
            by_version: dict[str, list[str]] = {}
            for alias, number in (model.aliases or {}).items():
                by_version.setdefault(str(number), []).append(alias)
            found = client.search_model_versions(f"name = '{_quote(name)}'")
        versions = [self._to_version(item, by_version.get(str(item.version), [])) for item in found]
        return sorted(versions, key=lambda item: int(item.version), reverse=True)

    def version(self, name: str, version: str | int) -> PairVersion:
        """One version (NotFound when it does not exist)."""
        version = _version_number(version)
        client = self.client
        with _mlflow_errors(f"read {name} version {version}"):
            model = self._registered_model(name)
            try:
                item = client.get_model_version(name, version)
            except Exception as error:
                if _is_missing(error):
                    raise NotFound(f"pair {name} has no version {version}") from error
                raise
        aliases = [alias for alias, number in (model.aliases or {}).items() if str(number) == str(version)]
        return self._to_version(item, aliases)

    def alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` of ``name`` points at, or None."""
        with _mlflow_errors(f"read alias {alias} of {name}"):
            model = self._registered_model(name)
        value = (model.aliases or {}).get(alias)
        return str(value) if value is not None else None

    def aliases(self, name: str) -> dict[str, str]:
        """Every alias of ``name`` and its version."""
        with _mlflow_errors(f"read the aliases of {name}"):
            model = self._registered_model(name)
        return {alias: str(number) for alias, number in (model.aliases or {}).items()}

    def _registered_model(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except Exception as error:
            if _is_missing(error):
                raise NotFound(f"pair {name} is not registered") from error
            raise

    def _to_version(self, item: Any, aliases: list[str]) -> PairVersion:
        return PairVersion(
            name=item.name,
            version=str(item.version),
            tags=dict(item.tags or {}),
            aliases=sorted(aliases),
            source=item.source or "",
            run_id=item.run_id or "",
            created_at=_iso_ms(item.creation_timestamp),
            description=item.description or "",
        )

    # ------------------------------------------------------------------------------ aliases

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` of ``name`` at ``version``.

        Refuses (Conflict) a version that did not pass qualification, NotFound for a missing one.
        The caller records the move in the audit log (the rollout controller does; see
        :meth:`move_alias` for a move and its audit event in one call).
        """
        if alias not in ALIASES:
            raise InvalidInput(f"unknown alias {alias!r} (SpecOps moves {', '.join(ALIASES)})")
        target = self.version(name, version)
        if not target.qualified:
            raise Conflict(f"{name} version {target.version} did not pass qualification: it cannot be {alias}")
        with _mlflow_errors(f"set alias {alias} of {name}"):
            self.client.set_registered_model_alias(name, alias, target.version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name`` (no error when it is not set)."""
        if self.alias(name, alias) is None:
            return
        with _mlflow_errors(f"delete alias {alias} of {name}"):
            self.client.delete_registered_model_alias(name, alias)

    def move_alias(
        self, name: str, alias: str, version: str | int, *, actor: str | None = None, reason: str = ""
    ) -> None:
        """Set an alias and write the ``alias.set`` audit event (for moves made outside a rollout)."""
        before = self.alias(name, alias)
        self.set_alias(name, alias, version)
        self._audit(
            actor=actor or self.actor,
            action="alias.set",
            subject=f"{name}@{alias}",
            payload={"pair": name, "alias": alias, "version": str(version), "previous": before, "reason": reason},
        )

    # ------------------------------------------------------------------------------ artifacts

    def download(self, name: str, version: str | int) -> Path:
        """A local pair folder of ``name`` ``version`` (``target/``, ``draft/``, ``pair.json``), cached."""
        item = self.version(name, version)
        folder = self.cache_dir / name / item.version
        if (folder / "pair.json").is_file():
            return folder
        import mlflow.artifacts

        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{name}-{item.version}-", dir=self.cache_dir))
        except OSError as error:
            raise StoreUnavailable(f"cannot write the pair cache {self.cache_dir}: {error.strerror}") from error
        try:
            with _mlflow_errors(f"download {name} version {item.version}"):
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=item.source, dst_path=str(scratch), tracking_uri=self.tracking_uri
                    )
                )
            artifacts = local / "artifacts"
            if not (artifacts / "pair.json").is_file():
                raise StoreUnavailable(f"{name} version {item.version} has no pair folder in its artifacts")
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                artifacts.rename(folder)
            except OSError:
                if not (folder / "pair.json").is_file():  # not a concurrent download that won the race
                    raise
        except OSError as error:
            raise StoreUnavailable(f"cannot write the pair cache {folder}: {error.strerror}") from error
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return folder

    def qualification_report(self, name: str, version: str | int) -> dict[str, Any]:
        """The qualification report stored with a version."""
        folder = self.download(name, version)
        return json.loads((folder / "qualification.json").read_text())

    def load(self, name: str, version_or_alias: str | int) -> Any:
        """The pyfunc model of a version (``predict(prompts) -> completions``)."""
        import mlflow.pyfunc

        reference = str(version_or_alias)
        if reference in ALIASES:
            number = self.alias(name, reference)
            if number is None:
                raise NotFound(f"pair {name} has no alias {reference!r}")
            reference = number
        item = self.version(name, reference)
        with _mlflow_errors(f"load {name} version {item.version}"):
            return mlflow.pyfunc.load_model(item.source)


# ---------------------------------------------------------------------------------- helpers


def _resolve_inputs(
    pair_dir: str | Path | None,
    target: str | Path | None,
    draft: str | Path | None,
    config: str | Path | dict[str, Any] | None,
    spec: pair_spec.PairSpec | None,
) -> tuple[Path, Path | None, dict[str, Any]]:
    config_data: dict[str, Any] = {}
    if pair_dir is not None:
        folder = Path(pair_dir)
        if not folder.is_dir():
            raise InvalidInput(f"pair folder {folder} does not exist")
        target = target or folder / "target"
        if draft is None and (folder / "draft").exists():
            draft = folder / "draft"
        existing = packaging.read_pair_spec(folder)
        if existing is not None and spec is None:
            config_data = json.loads(existing.model_dump_json())
            for role in ("target", "draft"):
                if config_data.get(role):
                    config_data[role] = {"licence": config_data[role].get("licence", "unknown")}
    if target is None:
        raise InvalidInput("a pair needs a target checkpoint (--target)")
    target_dir = pair_spec.checkpoint_folder(target, "target")
    draft_dir = pair_spec.checkpoint_folder(draft, "draft") if draft is not None else None
    if isinstance(config, dict):
        config_data = {**config_data, **config}
    elif config is not None:
        config_data = {**config_data, **pair_spec.read_config(config)}
    return target_dir, draft_dir, config_data


def _figures(report: QualificationReport) -> dict[str, Any]:
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


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(pair_spec.NAME_PATTERN, name) is not None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _version_number(version: str | int) -> str:
    text = str(version).strip().removeprefix("v")
    if not text.isdigit():
        raise InvalidInput(f"version must be a number, got {version!r}")
    return text


def _iso_ms(timestamp_ms: int | None) -> str:
    if not timestamp_ms:
        return ""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exists(read: Any) -> bool:
    try:
        read()
        return True
    except Exception as error:
        if _is_missing(error):
            return False
        raise


def _is_missing(error: BaseException) -> bool:
    code = getattr(error, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(code)


def _connect(tracking_uri: str) -> Any:
    """An MlflowClient for ``tracking_uri``; an unreachable store is :class:`StoreUnavailable`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # an unreachable server fails in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(
                f"cannot create the MLflow store folder {database.parent}: {error.strerror}"
            ) from error
    with _mlflow_errors("open the MLflow tracking store"):
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextlib.contextmanager
def _mlflow_errors(doing: str):  # type: ignore[no-untyped-def]
    """Turn MLflow and storage failures into one-line SpecOps errors."""
    try:
        yield
    except SpecOpsError:
        raise
    except OSError as error:
        raise StoreUnavailable(f"cannot {doing}: {error.strerror or error}") from error
    except Exception as error:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException):
            if _is_missing(error):
                raise NotFound(f"cannot {doing}: {_first_line(error.message)}") from error
            raise StoreUnavailable(f"cannot {doing}: {_first_line(error.message)}") from error
        raise


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0][:300] if text else "unknown error"
