"""``PairSpec``: what a pair version is — its two models, tokenizer, speculation settings, SLOs,
lineage and intended use. Stored as ``pair.json`` in the pair folder and in the registry.

Spec files (``--config FILE``, YAML or JSON) are versioned by ``schema_version``; an unknown version is
refused. A config file may give any subset of fields; the register command fills in the model
references (path, checksum, architecture, parameter count) from the checkpoints themselves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from specops.errors import InvalidInput

SCHEMA_VERSION = 1
"""The only spec schema this code reads and writes."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Pair names: what MLflow, Kubernetes labels and file names all accept."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
"""Files whose bytes are a checkpoint's weights (hashed into ``sha256``)."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
)
"""Files that define a Hugging Face tokenizer (hashed into ``tokenizer_sha256``)."""

_HASH_CHUNK = 1 << 20
_MAX_SAFETENSORS_HEADER = 100 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    """One checkpoint: where it came from and what it is."""

    source: str = Field(description="Path or URI the checkpoint was registered from.")
    sha256: str = Field(default="", description="sha256 over the weight files (name + bytes, sorted by name).")
    architecture: str = Field(default="", description="Hugging Face architecture, e.g. LlamaForCausalLM.")
    num_parameters: int = Field(default=0, ge=0, description="Parameter count.")
    licence: str = Field(default="unknown", description="SPDX identifier or licence name.")


class SpeculationSettings(_Strict):
    """How the engine speculates with this pair, and the default sampling of its requests."""

    proposer: Literal["draft", "prompt_lookup", "none"] = "draft"
    num_speculative_tokens: int = Field(default=4, ge=1, le=16, description="k, the draft length.")
    adaptive: bool = Field(default=True, description="Adapt k to measured acceptance and batch size.")
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    max_new_tokens: int = Field(default=64, ge=1)


class ServiceLevels(_Strict):
    """Default SLOs of a deployment of this pair (the monitoring package turns them into rules)."""

    min_acceptance_rate: float = Field(
        default=0.2, ge=0.0, le=1.0, description="Qualification floor and canary threshold for acceptance."
    )
    min_speedup: float | None = Field(
        default=None,
        ge=0.0,
        description="Qualification floor on speedup over the target alone, applied to the greedy and the "
        "sampled figure (× wall time). None: the qualification device's default "
        "(qualification_rules.default_min_speedup: 1.0 on CUDA, 0 = recorded but not judged on a CPU).",
    )
    availability: float = Field(default=0.99, gt=0.0, lt=1.0)
    p95_e2e_latency_s: float = Field(default=5.0, gt=0.0)
    p95_ttft_s: float = Field(default=1.0, gt=0.0)


class Lineage(_Strict):
    """Where the pair came from."""

    training_data: list[str] = Field(default_factory=list, description="References to training data.")
    parents: list[str] = Field(default_factory=list, description="Parent pair versions, e.g. NAME/3.")
    notes: str = ""


class PairSpec(_Strict):
    """A speculative-decoding pair: target + draft + how to run and judge it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    target: ModelRef
    draft: ModelRef | None = None
    tokenizer_sha256: str = ""
    speculation: SpeculationSettings = Field(default_factory=SpeculationSettings)
    slos: ServiceLevels = Field(default_factory=ServiceLevels)
    lineage: Lineage = Field(default_factory=Lineage)
    intended_use: str = "Speculative decoding of the target model's greedy and sampled completions."
    out_of_scope_use: list[str] = Field(default_factory=list)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_schema(cls, value: Any) -> Any:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unknown pair spec schema_version {value!r} (this SpecOps reads {SCHEMA_VERSION})")
        return value

    # -------------------------------------------------------------------------------- reading

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str = "pair spec") -> PairSpec:
        """Validate ``data``; errors become one-line :class:`InvalidInput`."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InvalidInput(f"{source}: {_one_line(error)}") from error

    @classmethod
    def from_file(cls, path: str | Path) -> PairSpec:
        """Read a complete spec from a JSON or YAML file."""
        return cls.parse(read_config(path), source=str(path))

    def to_json(self) -> str:
        """The spec as indented JSON (what ``pair.json`` holds)."""
        return self.model_dump_json(indent=2) + "\n"

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/pair.json`` and return its path."""
        path = Path(folder) / "pair.json"
        path.write_text(self.to_json())
        return path

    @property
    def min_acceptance(self) -> float:
        """The qualification floor on acceptance rate."""
        return self.slos.min_acceptance_rate

    @property
    def min_speedup(self) -> float | None:
        """The qualification floor on speedup (None: the qualification device's default)."""
        return self.slos.min_speedup


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping; missing or malformed files are :class:`InvalidInput`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise InvalidInput(f"config file {path} does not exist") from error
    except OSError as error:
        raise InvalidInput(f"cannot read config file {path}: {error.strerror}") from error
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as error:  # json.JSONDecodeError, yaml.YAMLError
        raise InvalidInput(
            f"config file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {str(error).splitlines()[0]}"
        ) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def build_spec(
    name: str,
    *,
    target: str | Path,
    draft: str | Path | None,
    config: dict[str, Any] | None = None,
    min_acceptance: float | None = None,
    min_speedup: float | None = None,
) -> PairSpec:
    """A spec for ``name`` from a config mapping plus facts read from the checkpoints.

    Checksums, architectures and parameter counts are always measured (a config cannot claim them);
    licences and everything else come from ``config``. ``min_acceptance`` and ``min_speedup``
    override the SLO floors (None keeps the config's).
    """
    data = dict(config or {})
    data["name"] = name
    data.setdefault("schema_version", SCHEMA_VERSION)
    data["target"] = {**(data.get("target") or {}), **describe_checkpoint(target)}
    if draft is not None:
        data["draft"] = {**(data.get("draft") or {}), **describe_checkpoint(draft)}
    else:
        data["draft"] = None
    data["tokenizer_sha256"] = tokenizer_sha256(target)
    if min_acceptance is not None:
        data["slos"] = {**(data.get("slos") or {}), "min_acceptance_rate": min_acceptance}
    if min_speedup is not None:
        data["slos"] = {**(data.get("slos") or {}), "min_speedup": min_speedup}
    return PairSpec.parse(data, source=f"pair spec for {name}")


# ------------------------------------------------------------------------------------ checkpoints


def checkpoint_folder(path: str | Path, role: str) -> Path:
    """``path`` as an existing checkpoint folder with a ``config.json``, else :class:`InvalidInput`."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise InvalidInput(f"{role} checkpoint {folder} does not exist")
    if not folder.is_dir():
        raise InvalidInput(f"{role} checkpoint {folder} is not a folder (expected a save_pretrained folder)")
    if not (folder / "config.json").is_file():
        raise InvalidInput(f"{role} checkpoint {folder} has no config.json")
    if not weight_files(folder):
        raise InvalidInput(f"{role} checkpoint {folder} has no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    return folder.resolve()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _hash_files(files: list[Path], *, role: str) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        try:
            with file.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            raise InvalidInput(f"cannot read {role} file {file}: {error.strerror}") from error
        digest.update(b"\0")
    return digest.hexdigest()


def weights_sha256(folder: str | Path) -> str:
    """sha256 over a checkpoint's weight files (each file's name, NUL, bytes, NUL; sorted by name)."""
    folder = Path(folder)
    return _hash_files(weight_files(folder), role="checkpoint")


def tokenizer_sha256(folder: str | Path) -> str:
    """sha256 over a checkpoint's tokenizer files ("" when it has none)."""
    folder = Path(folder)
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return _hash_files(files, role="tokenizer") if files else ""


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """source, sha256, architecture and num_parameters of a checkpoint folder."""
    folder = checkpoint_folder(path, "model")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise InvalidInput(f"checkpoint {folder} has an unreadable config.json: {error}") from error
    architectures = config.get("architectures") or [""]
    return {
        "source": str(folder),
        "sha256": weights_sha256(folder),
        "architecture": architectures[0],
        "num_parameters": count_parameters(folder),
    }


def count_parameters(folder: Path) -> int:
    """Parameters in the checkpoint's safetensors files (0 when it has none, or they are unreadable)."""
    total = 0
    for file in weight_files(folder):
        if file.suffix != ".safetensors":
            continue
        try:
            with file.open("rb") as handle:
                header_size = int.from_bytes(handle.read(8), "little")
                if header_size > _MAX_SAFETENSORS_HEADER:
                    raise ValueError("header too large: not a safetensors file")
                header = json.loads(handle.read(header_size))
        except (OSError, ValueError) as error:
            raise InvalidInput(f"cannot read checkpoint file {file}: {error}") from error
        for key, tensor in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for size in tensor.get("shape", []):
                count *= int(size)
            total += count
    return total


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "spec"
        parts.append(f"{where}: {item['msg']}")
    more = f" (+{error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return "; ".join(parts) + more
