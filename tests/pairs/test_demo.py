"""The demo-pair trainer's plumbing, on a tiny recipe: layout, cache, atomicity, determinism, prompts."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specops.errors import InvalidInput
from specops.pairs import corpus, demo, demo_training

FOLDERS = (demo.TARGET_DIR, demo.DRAFT_DIR, demo.MISMATCHED_DIR)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _no_training(*args: object, **kwargs: object) -> float:
    raise AssertionError("trained although the cache holds the recipe")


def test_each_folder_loads_offline_with_auto_classes_and_shares_one_tokenizer(tiny_demo_pairs):
    assert [tiny_demo_pairs.target, tiny_demo_pairs.draft, tiny_demo_pairs.draft_mismatched] == [
        tiny_demo_pairs.root / name for name in FOLDERS
    ]
    for folder in (tiny_demo_pairs.target, tiny_demo_pairs.draft, tiny_demo_pairs.draft_mismatched):
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        assert model.config.model_type == "llama"
        assert model.config.max_position_embeddings >= 512
        assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
            demo_training.BOS_TOKEN,
            demo_training.EOS_TOKEN,
            demo_training.PAD_TOKEN,
        )
        assert len(tokenizer) == model.config.vocab_size
        assert tokenizer.decode(tokenizer("def f(x):\n    return x")["input_ids"]) == "def f(x):\n    return x"
    for name in TOKENIZER_FILES:
        contents = {(tiny_demo_pairs.root / folder / name).read_bytes() for folder in FOLDERS}
        assert len(contents) == 1, f"{name} differs between the folders"


def test_the_target_is_bigger_than_both_drafts(tiny_demo_pairs):
    sizes = tiny_demo_pairs.report.num_parameters
    assert sizes[demo.TARGET_DIR] > sizes[demo.DRAFT_DIR] == sizes[demo.MISMATCHED_DIR]


def test_the_report_records_time_and_agreement_per_phase(tiny_demo_pairs):
    report = tiny_demo_pairs.report
    assert set(report.seconds) >= {"tokenizer", "target", "draft", "draft_mismatched", "distillation", "evaluation"}
    assert set(report.agreement) == set(report.generated_agreement) == {demo.DRAFT_DIR, demo.MISMATCHED_DIR}
    assert all(0.0 <= value <= 1.0 for value in (*report.agreement.values(), *report.generated_agreement.values()))
    assert "draft-distilled" in report.final_loss
    assert report.target_and_draft_seconds > 0


def test_a_second_call_is_a_cache_hit_that_trains_nothing(tiny_cache, tiny_recipe, monkeypatch):
    monkeypatch.setattr(demo_training, "train_model", _no_training)
    monkeypatch.setattr(demo_training, "build_corpus", _no_training)
    pairs = demo.train_demo_pairs(recipe=tiny_recipe, cache=tiny_cache, progress=False)
    assert pairs.from_cache
    assert pairs.root == tiny_cache / tiny_recipe.cache_key()


def test_out_receives_copies_of_the_three_folders_and_can_be_written_again(tiny_cache, tiny_recipe, tmp_path):
    out = tmp_path / "pair"
    for _ in range(2):
        pairs = demo.train_demo_pairs(out, recipe=tiny_recipe, cache=tiny_cache, progress=False)
        assert pairs.root == out and pairs.from_cache
        assert sorted(path.name for path in out.iterdir()) == sorted([*FOLDERS, demo.REPORT_FILE])
        for name in FOLDERS:
            assert (out / name / "model.safetensors").read_bytes() == (
                tiny_cache / tiny_recipe.cache_key() / name / "model.safetensors"
            ).read_bytes()


def test_an_interrupted_run_leaves_no_cache_entry_and_the_next_run_completes(tiny_recipe, tmp_path, monkeypatch):
    recipe = dataclasses.replace(tiny_recipe, seed=7)
    real_train = demo_training.train_model

    def interrupted(*args: object, **kwargs: object) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_training, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.train_demo_pairs(recipe=recipe, cache=tmp_path, progress=False)
    assert not (tmp_path / recipe.cache_key()).exists()
    assert not list(tmp_path.glob(".tmp-*"))

    monkeypatch.setattr(demo_training, "train_model", real_train)
    pairs = demo.train_demo_pairs(recipe=recipe, cache=tmp_path, progress=False)
    assert not pairs.from_cache and (pairs.target / "model.safetensors").is_file()


def test_leftovers_of_a_killed_run_are_removed_by_the_next_one(tiny_recipe, tmp_path):
    recipe = dataclasses.replace(tiny_recipe, seed=8)
    leftover = tmp_path / f".tmp-{recipe.cache_key()}-killed"
    (leftover / "target").mkdir(parents=True)
    demo.train_demo_pairs(recipe=recipe, cache=tmp_path, progress=False)
    assert not leftover.exists()


def test_training_is_deterministic(tiny_recipe, tiny_demo_pairs, tmp_path):
    again = demo.train_demo_pairs(recipe=tiny_recipe, cache=tmp_path, progress=False)
    for name in FOLDERS:
        assert (again.root / name / "model.safetensors").read_bytes() == (
            tiny_demo_pairs.root / name / "model.safetensors"
        ).read_bytes(), name
    assert again.report.agreement == tiny_demo_pairs.report.agreement


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(demo.DemoRecipe)])
def test_every_recipe_field_changes_the_cache_key(field):
    recipe = demo.DemoRecipe()
    value = getattr(recipe, field)
    if isinstance(value, demo.ModelShape):
        changed = dataclasses.replace(value, num_layers=value.num_layers + 1)
    elif isinstance(value, bool):
        changed = not value
    else:
        changed = value * 2 + 1
    assert dataclasses.replace(recipe, **{field: changed}).cache_key() != recipe.cache_key()


def test_the_python_version_changes_the_cache_key(monkeypatch):
    before = demo.DemoRecipe().cache_key()
    monkeypatch.setattr(corpus, "python_tag", lambda: "cpython-9.99.0")
    assert demo.DemoRecipe().cache_key() != before


def test_held_out_files_follow_the_crc_rule_and_are_never_trained_on():
    held_out = corpus.source_files(held_out=True)
    training = corpus.source_files(held_out=False)
    assert held_out and len(training) > 10 * len(held_out)
    assert all(zlib.crc32(name.encode()) % 20 == 0 for name in held_out)
    assert not set(held_out) & set(training)
    assert corpus.PROSE_FILE not in training


def test_code_files_list_each_file_once_across_nested_roots_and_skip_short_ones(tmp_path):
    names = [f"pkg/m{i}.py" for i in range(60)]
    for name in names:
        (tmp_path / "lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lib" / name).write_text("x = 1\n" * 50)
    (tmp_path / "lib" / "pkg" / "short.py").write_text("x = 1\n")
    roots = [tmp_path / "lib", tmp_path / "lib" / "pkg"]  # the second inside the first, as site-packages may be
    held_out = corpus.code_files(roots, held_out=True, min_chars=100)
    training = corpus.code_files(roots, held_out=False, min_chars=100)
    assert sorted(held_out + training) == sorted(tmp_path / "lib" / name for name in names)
    assert held_out == [tmp_path / "lib" / name for name in names if corpus.is_held_out(name)]


def test_texts_up_to_stops_at_the_text_that_reaches_the_limit():
    read: list[str] = []

    def texts():
        for text in ("aaaa", "bbbb", "cccc", "dddd"):
            read.append(text)
            yield text

    assert corpus.texts_up_to(texts(), 6) == (["aaaa", "bbbb"], 8)
    assert read == ["aaaa", "bbbb"]
    assert corpus.texts_up_to(["aaaa"], 0) == ([], 0)


def test_demo_prompts_are_repeatable_slices_of_held_out_files():
    prompts = demo.demo_prompts(12, 48)
    assert prompts == demo.demo_prompts(12, 48)
    assert prompts != demo.demo_prompts(12, 48, seed=1)
    assert len(prompts) == 12 and all(prompts)
    held_out = [corpus.read_text(name) for name in corpus.source_files(held_out=True)]
    assert all(any(prompt in text for text in held_out) for prompt in prompts)
    assert all(len(prompt) <= 48 * demo.CHARS_PER_TOKEN for prompt in prompts)


def test_demo_prompts_have_exactly_the_tokens_asked_of_a_given_tokenizer(tiny_demo_pairs):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_demo_pairs.target))
    prompts = demo.demo_prompts(8, 20, tokenizer=tokenizer)
    assert [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts] == [20] * 8


def test_demo_prompts_refuse_nonsense_sizes():
    with pytest.raises(InvalidInput):
        demo.demo_prompts(3, 0)


def test_a_model_agrees_with_itself_everywhere(tiny_demo_pairs):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_demo_pairs.target)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_demo_pairs.target))
    batches = demo.held_out_batches(tokenizer, seq_len=32, num_windows=3)
    assert demo.greedy_agreement(model, model, batches) == 1.0


def test_agreement_refuses_batches_that_are_not_token_matrices(tiny_demo_pairs):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_demo_pairs.target)).eval()
    with pytest.raises(InvalidInput):
        demo.greedy_agreement(model, model, [torch.zeros(2, 3, 4, dtype=torch.long)])
    with pytest.raises(InvalidInput):
        demo.greedy_agreement(model, model, [])


def test_the_demo_cache_honours_its_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path))
    assert demo.cache_dir() == tmp_path
    monkeypatch.delenv(demo.CACHE_ENV)
    assert demo.cache_dir().parts[-2:] == ("specops", "demo-pairs")


def test_the_cache_entry_is_readable_like_its_parent(tiny_demo_pairs):
    assert Path(tiny_demo_pairs.root).stat().st_mode & 0o755 == 0o755
