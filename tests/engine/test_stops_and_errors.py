"""Stop conditions, streaming, statistics and the errors users see."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from specops import errors
from specops.engine import SamplingParams, SpeculationConfig, SpeculativeEngine
from tests.support.tiny_llamas import ByteTokenizer, hf_greedy, tiny_llama

PROMPT = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def reference(target) -> list[int]:
    return hf_greedy(target, PROMPT, 30)


def _self_draft_engine(target, tokenizer, k: int = 4) -> SpeculativeEngine:
    """Draft = target: every draft is accepted, so blocks of k + 1 tokens arrive per step."""
    return SpeculativeEngine(
        target, tokenizer, draft=target, config=SpeculationConfig(num_speculative_tokens=k, adaptive=False)
    )


def test_eos_inside_an_accepted_block_ends_the_output_there(target, reference):
    index = next(i for i in range(6, 9) if reference[i] not in reference[:i])  # inside the 2nd block of 5
    tokenizer = ByteTokenizer()
    tokenizer.eos_token_id = reference[index]
    (result,) = _self_draft_engine(target, tokenizer).generate([PROMPT], [SamplingParams(max_new_tokens=30)])
    assert result.token_ids == reference[: index + 1]
    assert result.finish_reason == "stop"


def test_ignore_eos_decodes_past_it(target, reference):
    tokenizer = ByteTokenizer()
    tokenizer.eos_token_id = reference[3]
    engine = _self_draft_engine(target, tokenizer)
    (result,) = engine.generate([PROMPT], [SamplingParams(max_new_tokens=30, ignore_eos=True)])
    assert result.token_ids == reference and result.finish_reason == "length"


def test_a_stop_string_ends_the_output_at_the_token_completing_it(target, tokenizer, reference):
    stop = tokenizer.decode(reference[7:9])
    first = next(i for i in range(1, 30) if stop in tokenizer.decode(reference[: i + 1]))
    engine = _self_draft_engine(target, tokenizer)
    (result,) = engine.generate([PROMPT], [SamplingParams(max_new_tokens=30, stop=("\x00never", stop))])
    assert result.token_ids == reference[: first + 1]
    assert result.finish_reason == "stop"


@pytest.mark.parametrize("budget", [1, 4, 5, 6, 11])
def test_max_new_tokens_is_honoured_exactly(target, tokenizer, reference, budget):
    (result,) = _self_draft_engine(target, tokenizer).generate([PROMPT], [SamplingParams(max_new_tokens=budget)])
    assert result.token_ids == reference[:budget] and result.finish_reason == "length"


def test_on_tokens_streams_every_token_once_in_order(target, near_draft, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=SpeculationConfig(num_speculative_tokens=3))
    streamed: dict[int, list[int]] = {0: [], 1: []}
    steps = []
    results = engine.generate(
        [PROMPT, [9, 9]],
        [SamplingParams(max_new_tokens=17)] * 2,
        on_tokens=lambda i, ids: streamed[i].extend(ids),
        on_step=steps.append,
    )
    assert [streamed[0], streamed[1]] == [r.token_ids for r in results]
    assert sum(s.num_accepted_tokens[0] for s in steps) == results[0].stats.num_accepted_tokens
    assert sum(s.num_emitted_tokens[1] for s in steps) == 17


def test_a_prompt_longer_than_the_context_is_refused(target, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, config=SpeculationConfig(proposer="none"))
    with pytest.raises(errors.InvalidInput, match="context"):
        engine.generate([[1] * engine.max_context], [SamplingParams()])
    with pytest.raises(errors.InvalidInput):
        engine.generate([[]], [SamplingParams()])


def test_generation_stops_at_the_end_of_the_context(target, tokenizer):
    engine = _self_draft_engine(target, tokenizer)
    prompt = [1] * (engine.max_context - 6)
    (result,) = engine.generate([prompt], [SamplingParams(max_new_tokens=50)])
    assert len(result.token_ids) == 6 and result.finish_reason == "length"


def test_a_draft_with_another_vocabulary_is_refused(target, tokenizer):
    other = tiny_llama(3, vocab=80)
    with pytest.raises(errors.InvalidInput, match="vocabular"):
        SpeculativeEngine(target, tokenizer, draft=other, config=SpeculationConfig())


def _hf_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=words[0]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=words[0])


def test_load_refuses_a_draft_with_another_tokenizer(tmp_path, target, draft):
    words = [f"w{i}" for i in range(64)]
    target.save_pretrained(tmp_path / "target")
    _hf_tokenizer(words).save_pretrained(tmp_path / "target")
    draft.save_pretrained(tmp_path / "draft")
    _hf_tokenizer(list(reversed(words))).save_pretrained(tmp_path / "draft")
    with pytest.raises(errors.InvalidInput, match="tokenizer"):
        SpeculativeEngine.load(tmp_path / "target", tmp_path / "draft")
    _hf_tokenizer(words).save_pretrained(tmp_path / "draft")
    engine = SpeculativeEngine.load(tmp_path / "target", tmp_path / "draft")
    assert engine.max_context == 256 and engine.tokenizer.get_vocab()["w3"] == 3
    (result,) = engine.generate([[1, 2, 3]], [SamplingParams(max_new_tokens=5)])
    assert result.token_ids == hf_greedy(target, [1, 2, 3], 5)


def test_an_unknown_proposer_is_refused(target, tokenizer):
    with pytest.raises(errors.InvalidInput, match="proposer"):
        SpeculativeEngine(target, tokenizer, config=SpeculationConfig(proposer="medusa"))
