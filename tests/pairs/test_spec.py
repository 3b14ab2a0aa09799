"""PairSpec: built from checkpoints plus a config file; checksums measured, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.errors import InvalidInput
from specops.pairs import pair_spec


def test_a_spec_is_built_from_the_checkpoints_and_the_config(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "pair.yaml"
    config.write_text(
        "target:\n  licence: Apache-2.0\n"
        "speculation:\n  num_speculative_tokens: 3\n"
        "lineage:\n  training_data: [stdlib]\n  parents: [tiny/1]\n"
        "out_of_scope_use: [medical advice]\n"
    )
    spec = pair_spec.build_spec(
        "tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_random, config=pair_spec.read_config(config)
    )
    assert spec.target.licence == "Apache-2.0"
    assert spec.target.architecture == "LlamaForCausalLM"
    assert spec.target.num_parameters > spec.draft.num_parameters > 0
    assert len(spec.target.sha256) == 64
    assert spec.target.sha256 != spec.draft.sha256
    assert spec.tokenizer_sha256 == pair_spec.tokenizer_sha256(tiny_pairs.target)
    assert spec.speculation.num_speculative_tokens == 3
    assert spec.lineage.parents == ["tiny/1"]
    assert spec.min_acceptance == 0.2


def test_a_config_cannot_claim_a_checksum(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    spec = pair_spec.build_spec(
        "tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, config={"target": {"sha256": "forged"}}
    )
    assert spec.target.sha256 == pair_spec.weights_sha256(tiny_pairs.target)


def test_the_floor_can_be_lowered_explicitly(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    spec = pair_spec.build_spec("tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, min_acceptance=0.0)
    assert spec.min_acceptance == 0.0


@pytest.mark.parametrize(
    ("config", "override", "expected"),
    [({}, None, None), ({"slos": {"min_speedup": 0}}, None, 0.0), ({"slos": {"min_speedup": 1.2}}, 2.0, 2.0)],
    ids=["unset: the device's default", "zero: recorded, not judged", "a flag overrides the config"],
)
def test_the_speedup_floor_comes_from_the_config_or_an_override(tiny_pairs, config, override, expected) -> None:  # type: ignore[no-untyped-def]
    spec = pair_spec.build_spec(
        "tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, config=config, min_speedup=override
    )
    assert spec.min_speedup == expected


def test_the_spec_round_trips_through_pair_json(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = pair_spec.build_spec("tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy)
    path = spec.write(tmp_path)
    assert pair_spec.PairSpec.from_file(path) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"speculation": {"num_speculative_tokens": 0}}, "num_speculative_tokens"),
        ({"slos": {"min_acceptance_rate": 1.5}}, "min_acceptance_rate"),
        ({"slos": {"min_speedup": -1}}, "slos.min_speedup"),
        ({"slos": {"min_speedup": "fast"}}, "slos.min_speedup"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=[
        "unknown schema version",
        "k of zero",
        "floor above one",
        "negative speedup floor",
        "speedup floor not a number",
        "unknown field",
    ],
)
def test_invalid_specs_are_refused_with_one_line(tiny_pairs, data: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message) as caught:
        pair_spec.build_spec("tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, config=data)
    assert "\n" not in str(caught.value)


def test_bad_names_are_refused(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        pair_spec.build_spec("no spaces", target=tiny_pairs.target, draft=tiny_pairs.draft_copy)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "file").write_text("x") and root / "file", "not a folder"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no config.json"),
    ],
    ids=["missing", "a file", "no config"],
)
def test_missing_or_malformed_checkpoints_are_invalid_input(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message):
        pair_spec.checkpoint_folder(make(tmp_path), "target")


def test_a_config_file_that_is_not_yaml_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid"):
        pair_spec.read_config(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        pair_spec.read_config(tmp_path / "none.yaml")


def test_checksums_follow_the_weights(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_pairs.target, copy)
    assert pair_spec.weights_sha256(copy) == pair_spec.weights_sha256(tiny_pairs.target)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert pair_spec.weights_sha256(copy) != pair_spec.weights_sha256(tiny_pairs.target)
    assert json.loads((copy / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
