"""Pair folders for the registry: reading what to register (:func:`resolve_inputs`) and staging the folder
(checkpoints, ``pair.json``, the draft's speculators block).

The staged folder is what a registered version's artifacts hold (see docs/CONTRACTS.md, "Pair folder")::

    target/              the target checkpoint (hard links where the filesystem allows, else copies)
    draft/               the draft checkpoint; its config.json gains a ``speculators_config`` block
    pair.json            the PairSpec
    qualification.json   the qualification report

The ``speculators_config`` block follows the Speculators model format
(https://github.com/vllm-project/speculators, docs/architecture/model_formats.md): an independent
draft model (algorithm ``specdec``), a greedy proposal method with its number of speculative tokens,
and the verifier (target) it was qualified with.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from specops.errors import InvalidInput, StoreUnavailable
from specops.pairs import pair_spec
from specops.pairs.pair_spec import PairSpec

SPECULATORS_ALGORITHM = "specdec"
"""Speculators' name for an independent draft model proposing for a verifier."""


def speculators_config(spec: PairSpec, target_config: dict[str, Any]) -> dict[str, Any]:
    """The ``speculators_config`` block for the draft of ``spec``."""
    verifier: dict[str, Any] = {
        "name_or_path": spec.target.source,
        "architectures": target_config.get("architectures") or [spec.target.architecture],
    }
    for key in (
        "hidden_size",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        if key in target_config:
            verifier[key] = target_config[key]
    return {
        "algorithm": SPECULATORS_ALGORITHM,
        "proposal_methods": [
            {
                "proposal_type": "greedy",
                "speculative_tokens": spec.speculation.num_speculative_tokens,
                "verifier_accept_k": 1,
                "accept_tolerance": 0.0,
            }
        ],
        "default_proposal_method": "greedy",
        "verifier": verifier,
    }


def stage_pair(
    folder: Path, *, target: Path, draft: Path | None, spec: PairSpec, qualification_json: str | None
) -> Path:
    """Write the pair folder for ``spec`` under ``folder`` (which must be empty or absent)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _link_tree(target, folder / "target")
        if draft is not None:
            _link_tree(draft, folder / "draft")
            draft_config_path = folder / "draft" / "config.json"
            target_config = json.loads((target / "config.json").read_text())
            draft_config = json.loads(draft_config_path.read_text())
            draft_config["speculators_config"] = speculators_config(spec, target_config)
            draft_config_path.unlink()  # a hard link: never write through to the user's checkpoint
            draft_config_path.write_text(json.dumps(draft_config, indent=2, sort_keys=True) + "\n")
        spec.write(folder)
        if qualification_json is not None:
            (folder / "qualification.json").write_text(qualification_json)
    except ValueError as error:
        raise InvalidInput(f"a checkpoint's config.json is not JSON: {error}") from error
    except OSError as error:
        raise StoreUnavailable(f"cannot stage the pair under {folder}: {error}") from error
    return folder


def _link_tree(source: Path, destination: Path) -> None:
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy)


def read_pair_spec(pair_dir: Path) -> PairSpec | None:
    """The PairSpec in ``pair_dir/pair.json``, or None when there is none."""
    path = pair_dir / "pair.json"
    if not path.is_file():
        return None
    try:
        return PairSpec.parse(json.loads(path.read_text()), source=str(path))
    except ValueError as error:
        raise InvalidInput(f"{path} is not JSON: {error}") from error


def resolve_inputs(
    pair_dir: str | Path | None,
    *,
    target: str | Path | None,
    draft: str | Path | None,
    config: str | Path | dict[str, Any] | None,
    spec: PairSpec | None,
) -> tuple[Path, Path | None, dict[str, Any]]:
    """(target folder, draft folder or None, PairSpec fields) of a pair to register.

    From a pair folder (``target/``, ``draft/``, maybe ``pair.json``, whose fields are kept unless
    ``spec`` is given) and/or explicit ``target``/``draft``; ``config`` (file or mapping) adds fields.
    """
    config_data: dict[str, Any] = {}
    if pair_dir is not None:
        folder = Path(pair_dir)
        if not folder.is_dir():
            raise InvalidInput(f"pair folder {folder} does not exist")
        target = target or folder / "target"
        if draft is None and (folder / "draft").exists():
            draft = folder / "draft"
        existing = read_pair_spec(folder)
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
