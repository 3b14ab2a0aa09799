"""What one `specops serve` process serves and how: `ServingConfig`, and where its pair comes from."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from specops import errors

ROLES: tuple[str, ...] = ("stable", "canary")


ENV_PREFIX = "SPECOPS_"
"""Every setting may come from the environment as ``SPECOPS_<FIELD NAME IN CAPITALS>``."""


def _setting(
    default: Any = MISSING, *, doc: str, flag: str = "", low: float | None = None, high: float | None = None
) -> Any:
    """A `ServingConfig` field: its default, its help text, (for on/off switches) its flag pair, and for a
    number its allowed range ``low``..``high`` (inclusive; None: unbounded on that side)."""
    metadata = {"help": doc, "flag": flag, "low": low, "high": high}
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ServingConfig:
    """Settings of one serving process: the options of `specops serve`, each also read from ``SPECOPS_*``.

    Each field's metadata holds its help text; `options` derives the command-line flag and the
    environment variable from the field's name, so the command and this class cannot drift apart.
    """

    pair: str = _setting(
        doc="Pair folder (target/, draft/, optional pair.json), or models:/NAME/VERSION or models:/NAME@ALIAS."
    )
    port: int = _setting(8080, low=1, high=65535, doc="HTTP port; the KServe server binds every interface.")
    role: str = _setting("stable", doc="stable or canary: a label on every metric and request record.")
    deployment: str = _setting(
        "", doc="Deployment name stored on request records, also accepted as the model name (default: the model name)."
    )
    model_name: str = _setting(
        "", doc="Model name clients send as `model`, and the KServe model name (default: the pair's name)."
    )
    pair_version: str = _setting(
        "", doc="Version label (default: pair.json's version, the MLflow version, or 'local')."
    )
    max_batch: int = _setting(16, low=1, doc="Most sequences per engine batch.")
    # 10 ms, a fraction of one engine step, buys full batches under load
    max_wait_ms: float = _setting(
        10.0,
        low=0,
        doc="Longest the batcher holds the first queued request for others to join, in ms, counted from its "
        "arrival or from the end of the previous batch.",
    )
    max_tokens: int = _setting(512, low=1, doc="Largest max_tokens a request may ask for.")
    context_limit: int = _setting(
        0, low=0, doc="Most prompt + output tokens per request (0: the target's max_position_embeddings)."
    )
    database_url: str = _setting("", doc="SQLAlchemy URL for request records (empty: no records).")
    record_sample_rate: float = _setting(1.0, low=0, high=1, doc="Share of requests recorded, 0..1.")
    record_prompt: str = _setting("full", doc="Prompt in records: full | none | hash | truncate:N.")
    telemetry: bool = _setting(
        True, flag="--telemetry/--no-telemetry", doc="Metrics and request records (off only to measure their cost)."
    )
    num_speculative_tokens: int | None = _setting(
        None, low=0, doc="Largest draft length k (default: pair.json's speculation section, else 4)."
    )
    adaptive: bool | None = _setting(
        None,
        flag="--adaptive/--fixed-k",
        doc="Adapt k per sequence to acceptance and batch size, or keep it fixed (default: pair.json, else adaptive).",
    )
    proposer: str | None = _setting(
        None,
        doc="draft | prompt_lookup | none; draft falls back to prompt_lookup when the pair has no draft model "
        "(default: pair.json, else draft).",
    )
    device: str = _setting("cpu", doc="torch device.")
    dtype: str = _setting(
        "auto", doc="Weights' dtype: auto (bfloat16 on CUDA, else float32) | float32 | bfloat16 | float16."
    )

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise errors.InvalidInput(f"role must be stable or canary, got {self.role!r}")
        for item in dataclasses.fields(self):
            value, low, high = getattr(self, item.name), item.metadata["low"], item.metadata["high"]
            if value is None or ((low is None or value >= low) and (high is None or value <= high)):
                continue
            allowed = f"<= {high:g}" if low is None else f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
            raise errors.InvalidInput(f"{item.name.replace('_', ' ')} must be {allowed}, got {value}")
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
class ServingOption:
    """One `ServingConfig` field as a command-line option (`specops serve` builds its options from these)."""

    name: str  # the field's name, and the command function's parameter
    flags: str  # "--max-batch", or a pair "--telemetry/--no-telemetry" for an on/off switch
    envvar: str  # SPECOPS_MAX_BATCH
    help: str
    default: Any  # ... (Ellipsis) when the option is required
    annotation: Any  # the field's type, resolved (int, str | None, ...)
    low: float | None = None  # smallest allowed value of a number (None: unbounded)
    high: float | None = None  # largest allowed value of a number (None: unbounded)


def options() -> list[ServingOption]:
    """Every `ServingConfig` field as an option, in field order: flag and env var derived from its name."""
    types = typing.get_type_hints(ServingConfig)
    return [
        ServingOption(
            name=item.name,
            flags=item.metadata["flag"] or "--" + item.name.replace("_", "-"),
            envvar=ENV_PREFIX + item.name.upper(),
            help=item.metadata["help"],
            default=... if item.default is MISSING else item.default,
            annotation=types[item.name],
            low=item.metadata["low"],
            high=item.metadata["high"],
        )
        for item in dataclasses.fields(ServingConfig)
    ]


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
