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

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from specops.pairs import pair_spec
from specops.registry import mlflow_access, packaging, version_writer
from specops.registry.pair_version import ALIASES, EXPERIMENT, PairVersion

if TYPE_CHECKING:
    from specops.governance.audit import AuditLog
    from specops.pairs.qualification import ProgressCallback
    from specops.pairs.qualification_report import QualificationReport
    from specops.settings import Settings


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
            self._client = mlflow_access.connect(self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        client = self.client
        with mlflow_access.mlflow_errors("find the registration experiment"):
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is not None:
                return experiment.experiment_id
            mlflow_access.create_folder(self.artifacts_dir, "artifact folder")
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
        if not isinstance(name, str) or not mlflow_access.valid_name(name):
            raise InvalidInput(f"pair name {name!r} is not valid (letters, digits, '.', '_', '-'; up to 128)")
        target_dir, draft_dir, config_data = packaging.resolve_inputs(
            pair_dir, target=target, draft=draft, config=config, spec=spec
        )
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
                    "figures": version_writer.figures(report),
                    "note": note,
                },
            )
            gate.enforce(report)

        version = version_writer.create_version(
            self.client,
            experiment_id=self._experiment_id(),
            name=name,
            spec=spec,
            report=report,
            target_dir=target_dir,
            draft_dir=draft_dir,
            note=note,
            actor=actor,
        )
        if self.audit is not None:
            version_writer.record_in_governance(self.audit, version, spec=spec, report=report, actor=actor)
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
                "figures": version_writer.figures(report),
                "note": note,
            },
        )
        return version

    def _audit(self, **event: Any) -> None:
        if self.audit is not None:
            self.audit.append(**event)

    # ------------------------------------------------------------------------------ read

    def versions(self, name: str) -> list[PairVersion]:
        """Every version of ``name``, newest first (NotFound when the pair is unknown)."""
        client = self.client
        with mlflow_access.mlflow_errors(f"list the versions of {name}"):
            model = self._registered_model(name)
            by_version: dict[str, list[str]] = {}
            for alias, number in (model.aliases or {}).items():
                by_version.setdefault(str(number), []).append(alias)
            found = client.search_model_versions(f"name = '{mlflow_access.quote(name)}'")
        versions = [self._to_version(item, by_version.get(str(item.version), [])) for item in found]
        return sorted(versions, key=lambda item: int(item.version), reverse=True)

    def version(self, name: str, version: str | int) -> PairVersion:
        """One version (NotFound when it does not exist)."""
        version = mlflow_access.version_number(version)
        client = self.client
        with mlflow_access.mlflow_errors(f"read {name} version {version}"):
            model = self._registered_model(name)
            try:
                item = client.get_model_version(name, version)
            except Exception as error:
                if mlflow_access.is_missing(error):
                    raise NotFound(f"pair {name} has no version {version}") from error
                raise
        aliases = [alias for alias, number in (model.aliases or {}).items() if str(number) == str(version)]
        return self._to_version(item, aliases)

    def alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` of ``name`` points at, or None."""
        with mlflow_access.mlflow_errors(f"read alias {alias} of {name}"):
            model = self._registered_model(name)
        value = (model.aliases or {}).get(alias)
        return str(value) if value is not None else None

    def aliases(self, name: str) -> dict[str, str]:
        """Every alias of ``name`` and its version."""
        with mlflow_access.mlflow_errors(f"read the aliases of {name}"):
            model = self._registered_model(name)
        return {alias: str(number) for alias, number in (model.aliases or {}).items()}

    def _registered_model(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except Exception as error:
            if mlflow_access.is_missing(error):
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
            created_at=mlflow_access.iso_ms(item.creation_timestamp),
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
        with mlflow_access.mlflow_errors(f"set alias {alias} of {name}"):
            self.client.set_registered_model_alias(name, alias, target.version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name`` (no error when it is not set)."""
        if self.alias(name, alias) is None:
            return
        with mlflow_access.mlflow_errors(f"delete alias {alias} of {name}"):
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
            with mlflow_access.mlflow_errors(f"download {name} version {item.version}"):
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
        with mlflow_access.mlflow_errors(f"load {name} version {item.version}"):
            return mlflow.pyfunc.load_model(item.source)
