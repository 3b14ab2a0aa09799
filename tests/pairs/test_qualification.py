"""The qualification gate measures losslessness, tokenizers, acceptance and speedup, and judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.errors import InvalidInput, QualificationRefused
from specops.pairs import eval_inputs, qualification, qualification_rules
from tests.support.tiny_checkpoints import PROMPTS

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


def test_a_speedup_floor_above_what_the_pair_reaches_refuses_it_naming_figure_and_floor(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(
        tiny_pairs.target, tiny_pairs.draft_copy, min_acceptance=0.0, min_speedup=100.0, adaptive=False, **FAST
    )
    assert report.lossless
    assert not report.passed
    assert report.reason == (
        f"speedup is under the floor 100×: greedy {report.speedup:.3f}×, sampled {report.speedup_sampled:.3f}×"
    )
    assert "\n" not in report.reason
    assert report.min_speedup == 100.0
    assert report.min_speedup_source == "given"
    assert report.speedup_note == ""  # refused: the reason says it
    assert report.tags()["qualification.min_speedup"] == "100"
    with pytest.raises(QualificationRefused, match="under the floor 100×"):
        qualification.enforce(report)


def test_the_sampled_speedup_is_measured_with_the_chat_setting_when_the_pair_is_greedy(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_random, min_acceptance=0.0, **FAST)
    assert report.speedup > 0
    assert report.speedup_sampled > 0
    assert report.target_seconds_sampled > 0 and report.pair_seconds_sampled > 0
    assert (report.sampled_temperature, report.sampled_top_p, report.sampled_top_k) == (0.7, 0.95, 0)
    assert "typical chat setting" in report.sampled_settings
    assert "the pair's default is greedy" in report.sampled_settings
    tags = report.tags()
    assert float(tags["qualification.speedup_sampled"]) == pytest.approx(report.speedup_sampled, abs=1e-3)
    assert tags["qualification.sampled_temperature"] == "0.7"
    assert tags["qualification.sampled_top_p"] == "0.95"
    saved = json.loads(report.to_json())
    assert saved["speedup_sampled"] == report.speedup_sampled
    assert saved["sampled_temperature"] == 0.7
    assert f"{report.speedup_sampled:.2f}× sampled" in report.summary()


def test_a_pair_that_samples_by_default_is_timed_with_its_own_settings(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(
        tiny_pairs.target,
        tiny_pairs.draft_random,
        min_acceptance=0.0,
        temperature=1.2,
        top_p=0.8,
        top_k=20,
        **FAST,
    )
    assert report.passed, report.reason
    assert (report.sampled_temperature, report.sampled_top_p, report.sampled_top_k) == (1.2, 0.8, 20)
    assert report.sampled_settings == "the pair's default sampling"
    assert report.speedup_sampled > 0


def test_on_a_cpu_the_speedup_is_recorded_not_judged_and_a_slowdown_is_said_plainly(tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    report = qualification.qualify(tiny_pairs.target, tiny_pairs.draft_random, min_acceptance=0.0, **FAST)
    assert report.passed, report.reason
    assert (report.min_speedup, report.min_speedup_source) == (0.0, "default on cpu")
    if min(report.speedup, report.speedup_sampled) < 1.0:
        assert report.speedup_note.startswith("speculation does not pay on this machine")
        assert report.summary().endswith(report.speedup_note)
        assert report.tags()["qualification.speedup_note"] == report.speedup_note
    else:
        assert report.speedup_note == ""


@pytest.mark.parametrize(
    ("device", "floor"),
    [("cpu", 0.0), ("cuda", 1.0), ("cuda:1", 1.0), ("CUDA:0", 1.0), ("mps", 0.0), ("xpu:0", 0.0)],
    ids=["cpu", "cuda", "second gpu", "upper case", "apple gpu", "intel gpu"],
)
def test_the_default_speedup_floor_suits_the_device(device: str, floor: float) -> None:
    assert qualification_rules.default_min_speedup(device) == floor


@pytest.mark.parametrize(
    ("greedy", "sampled", "floor", "source", "device", "expected"),
    [
        (
            0.74,
            0.70,
            0.0,
            "default on cpu",
            "cpu",
            "speculation does not pay on this machine (greedy 0.74×, sampled 0.70×): not judged here "
            "(floor 0 on cpu); pass --min-speedup to enforce",
        ),
        (
            0.74,
            1.30,
            0.0,
            "given",
            "cuda",
            "speculation does not pay on this machine (greedy 0.74×, sampled 1.30×): not judged (floor 0 given)",
        ),
        (
            0.74,
            0.70,
            0.5,
            "given",
            "cpu",
            "speculation does not pay on this machine (greedy 0.74×, sampled 0.70×): at or above the floor 0.5",
        ),
        (1.4, 1.2, 0.0, "default on cpu", "cpu", ""),
        (0.74, 0.70, 1.0, "default on cuda", "cuda", ""),
    ],
    ids=["not judged on a cpu", "floor 0 given", "passes a low floor", "it pays", "refused: the reason says it"],
)
def test_the_speedup_note_says_when_speculation_does_not_pay(  # type: ignore[no-untyped-def]
    greedy, sampled, floor, source, device, expected
) -> None:
    note = qualification_rules.speedup_note(greedy=greedy, sampled=sampled, floor=floor, source=source, device=device)
    assert note == expected


@pytest.mark.parametrize(
    ("greedy", "sampled", "expected"),
    [
        (0.5, 0.4, "speedup is under the floor 1×: greedy 0.500×, sampled 0.400×"),
        (0.5, 1.4, "greedy speedup 0.500× is under the floor 1× (sampled 1.400×)"),
        (1.5, 0.4, "sampled speedup 0.400× (temperature 0.7, top_p 0.95) is under the floor 1× (greedy 1.500×)"),
    ],
    ids=["both", "greedy only", "sampled only"],
)
def test_the_floor_applies_to_the_greedy_and_to_the_sampled_figure(
    tiny_pairs, monkeypatch, greedy, sampled, expected
) -> None:  # type: ignore[no-untyped-def]
    timings = iter([1.0, greedy, 1.0, sampled])  # (target-alone seconds, speedup) of the greedy then the sampled run

    def fake_run_both(baseline, pair, encoded, params, phases, progress):  # type: ignore[no-untyped-def]
        target_results = [baseline.generate([ids], [p])[0] for ids, p in zip(encoded, params, strict=True)]
        pair_results = [pair.generate([ids], [p])[0] for ids, p in zip(encoded, params, strict=True)]
        target_seconds = next(timings)
        return (target_results, target_seconds), (pair_results, target_seconds / next(timings))

    monkeypatch.setattr(qualification, "_run_both", fake_run_both)
    report = qualification.qualify(
        tiny_pairs.target, tiny_pairs.draft_copy, min_acceptance=0.0, min_speedup=1.0, adaptive=False, **FAST
    )
    assert (report.speedup, report.speedup_sampled) == pytest.approx((greedy, sampled))
    assert not report.passed
    assert report.reason == expected


@pytest.mark.parametrize("floor", [-1.0, float("nan")], ids=["negative", "not a number"])
def test_a_negative_speedup_floor_is_invalid_input(tiny_pairs, floor: float) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="min_speedup must be >= 0"):
        qualification.qualify(tiny_pairs.target, tiny_pairs.draft_copy, min_speedup=floor, **FAST)


def test_the_sampled_settings_follow_the_pair_unless_it_is_greedy() -> None:
    assert qualification_rules.sampled_settings(temperature=0.9, top_p=0.5, top_k=7)[:3] == (0.9, 0.5, 7)
    assert qualification_rules.sampled_settings(temperature=0.0, top_p=1.0, top_k=0)[:3] == (0.7, 0.95, 0)
    with pytest.raises(InvalidInput, match="top_p"):
        qualification_rules.sampled_settings(temperature=0.5, top_p=0.0, top_k=0)


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
    assert eval_inputs.load_prompts(path) == expected


def test_the_bundled_prompts_are_there() -> None:
    assert len(eval_inputs.load_prompts()) >= 8


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
        eval_inputs.load_prompts(path)
