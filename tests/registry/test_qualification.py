"""The qualification gate measures losslessness, tokenizers, acceptance and speedup, and judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.errors import InvalidInput, QualificationRefused
from specops.pairs import qualification
from tests.registry.conftest import PROMPTS

FAST = {"prompts": PROMPTS[:3], "max_new_tokens": 8}


def test_a_draft_identical_to_the_target_is_lossless_and_always_accepted(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    # Fixed k: the adaptive governor may stop drafting where a draft as big as the target is slower.
    report = qualification.qualify(
        tiny_pairs.target, tiny_pairs.draft_copy, num_speculative_tokens=3, adaptive=False, **FAST
    )
    assert report.passed, report.reason
    assert report.lossless
    assert report.tokenizer_compatible
    assert report.acceptance_rate == 1.0
    assert report.mean_accepted_length > 3.0
    assert report.speedup > 0
    assert report.num_accepted_per_position[0] == report.num_drafts
    tags = report.tags()
    assert tags["qualification.acceptance_rate"] == "1.0000"
    assert tags["qualification.passed"] == "true"
    assert tags["qualification.adaptive"] == "false"
    qualification.enforce(report)


def test_an_unrelated_draft_is_refused_under_the_floor_but_stays_lossless(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_random, **FAST)
    assert report.lossless
    assert report.acceptance_rate < 0.2
    assert not report.passed
    assert "under the floor" in report.reason
    with pytest.raises(QualificationRefused, match="under the floor"):
        qualification.enforce(report)


def test_a_floor_of_zero_records_the_figures_without_refusing(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_random, min_acceptance=0.0, **FAST)
    assert report.passed
    assert report.tags()["qualification.min_acceptance"] == "0"


def test_a_draft_with_another_tokenizer_is_refused(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_foreign, min_acceptance=0.0, **FAST)
    assert not report.passed
    assert not report.tokenizer_compatible
    assert report.reason.startswith("tokenizers differ")


def test_a_same_size_vocabulary_with_other_tokens_is_refused(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    draft = tmp_path / "draft"
    shutil.copytree(tiny_pairs.draft_copy, draft)
    data = json.loads((draft / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[10:12]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (draft / "tokenizer.json").write_text(json.dumps(data))
    report = qualification.qualify(tiny_pairs.target, draft, min_acceptance=0.0, **FAST)
    assert not report.tokenizer_compatible
    assert "vocabulary differs" in report.reason


def test_output_that_differs_from_the_target_alone_is_not_lossless(tiny_pairs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from specops.engine import SpeculativeEngine

    real_generate = SpeculativeEngine.generate

    def corrupting_generate(self, prompts, params, *args, **kwargs):  # type: ignore[no-untyped-def]
        results = real_generate(self, prompts, params, *args, **kwargs)
        if self.proposer is not None:
            for result in results:
                result.token_ids[-1] = (result.token_ids[-1] + 1) % 300
        return results

    monkeypatch.setattr(SpeculativeEngine, "generate", corrupting_generate)
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_copy, min_acceptance=0.0, **FAST)
    assert not report.lossless
    assert not report.passed
    assert report.reason.startswith("not lossless")
    assert report.first_mismatch == {"prompt_index": 0, "prompt": PROMPTS[0], "token_position": 7}


def test_an_unreadable_checkpoint_is_invalid_input(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    draft = tmp_path / "draft"
    shutil.copytree(tiny_pairs.draft_copy, draft)
    (draft / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a safetensors file")
    with pytest.raises(InvalidInput, match="cannot load checkpoint"):
        qualification.qualify(tiny_pairs.target, draft, **FAST)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("p.json", json.dumps(["a", "b"]), ["a", "b"]),
        ("p.json", json.dumps({"prompts": ["a"]}), ["a"]),
        ("p.jsonl", '"a"\n{"prompt": "b"}\n', ["a", "b"]),
        ("p.txt", "a\n\nb\n", ["a", "b"]),
    ],
    ids=["json list", "json object", "jsonl", "text lines"],
)
def test_prompt_files_in_each_format_are_read(tmp_path: Path, name: str, content: str, expected: list[str]) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert qualification.load_prompts(path) == expected


def test_the_bundled_prompts_are_there() -> None:
    assert len(qualification.load_prompts()) >= 8


@pytest.mark.parametrize(
    ("name", "content"),
    [("missing.json", None), ("empty.txt", "\n"), ("bad.json", "{"), ("numbers.json", "[1, 2]")],
    ids=["missing", "empty", "not json", "not strings"],
)
def test_bad_prompt_files_are_invalid_input(tmp_path: Path, name: str, content: str | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInput):
        qualification.load_prompts(path)
