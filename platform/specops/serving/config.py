"""What one `specops serve` process serves and how: `ServingConfig`, and where its pair comes from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from specops import errors

ROLES: tuple[str, ...] = ("stable", "canary")


@dataclass(frozen=True)
class ServingConfig:
    """Settings of one serving process (flags of `specops serve`, env fallbacks ``SPECOPS_*``).

    pair: a pair folder (``target/``, ``draft/``, optional ``pair.json``) or an MLflow URI
        ``models:/NAME/VERSION`` / ``models:/NAME@ALIAS`` (``SPECOPS_PAIR``).
    port: HTTP port; the KServe server binds every interface (``SPECOPS_PORT``, default 8080).
    role: ``stable`` or ``canary``; a label on every metric and record (``SPECOPS_ROLE``).
    deployment: deployment name stored on request records (``SPECOPS_DEPLOYMENT``, default the model name).
    model_name: the name clients send as ``model`` and the KServe model name (``SPECOPS_MODEL_NAME``;
        default the pair's name).
    pair_version: version label (``SPECOPS_PAIR_VERSION``; default pair.json's version, the MLflow
        version, or ``local``).
    max_batch: most sequences per engine batch (``SPECOPS_MAX_BATCH``, default 16).
    max_wait_ms: longest the batcher holds the first queued request for others to join, counted
        from its arrival or from the end of the previous batch (``SPECOPS_MAX_WAIT_MS``, default
        10 ms: a fraction of one engine step buys full batches under load).
    max_tokens: largest ``max_tokens`` a request may ask for (``SPECOPS_MAX_TOKENS``, default 512).
    context_limit: most prompt + output tokens per request; 0 means the target's
        ``max_position_embeddings`` (``SPECOPS_CONTEXT_LIMIT``).
    database_url: SQLAlchemy URL for request records; empty disables them (``SPECOPS_DATABASE_URL``).
    record_sample_rate: share of requests recorded, 0..1 (``SPECOPS_RECORD_SAMPLE_RATE``, default 1).
    record_prompt: prompt redaction in records: full | none | hash | truncate:N (``SPECOPS_RECORD_PROMPT``).
    telemetry: metrics and records on (default); off only to measure their cost.
    num_speculative_tokens: largest draft length k (``SPECOPS_NUM_SPECULATIVE_TOKENS``).
    adaptive: let the engine adapt k per sequence and batch size; off: fixed k.
    proposer: ``draft``, ``prompt_lookup`` or ``none``; ``draft`` falls back to ``prompt_lookup``
        when the pair has no draft model.
    The last three default (None) to the pair's ``pair.json`` ``speculation`` section, else k=4,
    adaptive, draft.
    device: torch device (``SPECOPS_DEVICE``, default ``cpu``).
    dtype: weights' dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``float32``, ``bfloat16``
        or ``float16`` (``SPECOPS_DTYPE``).
    """

    pair: str
    port: int = 8080
    role: str = "stable"
    deployment: str = ""
    model_name: str = ""
    pair_version: str = ""
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_tokens: int = 512
    context_limit: int = 0
    database_url: str = ""
    record_sample_rate: float = 1.0
    record_prompt: str = "full"
    telemetry: bool = True
    num_speculative_tokens: int | None = None
    adaptive: bool | None = None
    proposer: str | None = None
    device: str = "cpu"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise errors.InvalidInput(f"role must be stable or canary, got {self.role!r}")
        if not 0 < self.port < 65536:
            raise errors.InvalidInput(f"port must be in 1..65535, got {self.port}")
        if self.max_batch < 1:
            raise errors.InvalidInput(f"max batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise errors.InvalidInput(f"max wait must be >= 0 ms, got {self.max_wait_ms}")
        if self.max_tokens < 1:
            raise errors.InvalidInput(f"max tokens must be >= 1, got {self.max_tokens}")
        if self.context_limit < 0:
            raise errors.InvalidInput(f"context limit must be >= 0, got {self.context_limit}")
        if not 0.0 <= self.record_sample_rate <= 1.0:
            raise errors.InvalidInput(f"record sample rate must be in [0, 1], got {self.record_sample_rate}")
        if self.num_speculative_tokens is not None and self.num_speculative_tokens < 0:
            raise errors.InvalidInput(f"num speculative tokens must be >= 0, got {self.num_speculative_tokens}")
        if self.dtype not in DTYPES:
            raise errors.InvalidInput(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.proposer not in (None, "draft", "prompt_lookup", "none"):
            raise errors.InvalidInput(f"proposer must be draft, prompt_lookup or none, got {self.proposer!r}")


DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


def torch_dtype(config: ServingConfig) -> str:
    """The dtype name the engine loads the pair in (``auto`` resolved for the device)."""
    if config.dtype != "auto":
        return config.dtype
    return "bfloat16" if config.device.startswith("cuda") else "float32"


@dataclass(frozen=True)
class ResolvedPair:
    """A pair folder on disk and its identity."""

    path: Path
    name: str
    version: str
    speculation: dict = field(default_factory=dict)  # pair.json's "speculation" section, if any

    @property
    def target_dir(self) -> Path:
        return self.path / "target"

    @property
    def draft_dir(self) -> Path | None:
        draft = self.path / "draft"
        return draft if (draft / "config.json").exists() else None


def resolve_pair(source: str) -> ResolvedPair:
    """Find the pair folder for ``source`` (a path or ``models:/NAME/VERSION`` / ``models:/NAME@ALIAS``).

    A local folder is named by its ``pair.json`` (``name``, ``version``) when present, else by the
    folder name and version ``local``. MLflow URIs are downloaded through `specops.registry`.
    """
    if source.startswith("models:/"):
        return _resolve_registry_uri(source)
    path = Path(source).expanduser().resolve()
    if not (path / "target" / "config.json").exists():
        raise errors.NotFound(f"no pair at {source}: expected {path / 'target' / 'config.json'}")
    spec = _read_spec(path)
    return ResolvedPair(
        path=path,
        name=str(spec.get("name") or path.name),
        version=str(spec.get("version") or "local"),
        speculation=_speculation(spec),
    )


def _read_spec(path: Path) -> dict:
    spec_file = path / "pair.json"
    if not spec_file.exists():
        return {}
    try:
        spec = json.loads(spec_file.read_text())
    except (OSError, ValueError) as error:
        raise errors.InvalidInput(f"cannot read {spec_file}: {error}") from error
    return spec if isinstance(spec, dict) else {}


def _speculation(spec: dict) -> dict:
    section = spec.get("speculation")
    return dict(section) if isinstance(section, dict) else {}


def _resolve_registry_uri(uri: str) -> ResolvedPair:
    body = uri.removeprefix("models:/").strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        version = None
    elif "/" in body:
        name, version = body.split("/", 1)
        alias = None
    else:
        raise errors.InvalidInput(f"pair URI must be models:/NAME/VERSION or models:/NAME@ALIAS, got {uri}")
    if not name or not (version or alias):
        raise errors.InvalidInput(f"pair URI must be models:/NAME/VERSION or models:/NAME@ALIAS, got {uri}")
    from specops import registry
    from specops.settings import Settings

    reg = registry.PairRegistry.from_settings(Settings.from_env())
    if version is None:
        version = reg.alias(name, alias)
        if version is None:
            raise errors.NotFound(f"pair {name} has no alias {alias!r}")
    path = Path(reg.download(name, version))
    return ResolvedPair(path=path, name=name, version=str(version), speculation=_speculation(_read_spec(path)))
