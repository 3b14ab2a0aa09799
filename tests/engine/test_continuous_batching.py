"""Continuous batching: sequences admitted into rows freed mid-call decode exactly as they would alone."""

from __future__ import annotations

import collections

import pytest

from specops import errors
from specops.engine import ExecutionSettings, SamplingParams, SpeculationConfig, SpeculativeEngine
from tests.support.tiny_llamas import hf_greedy

PROMPTS = [
    [1, 2, 3, 4, 5],
    [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
    [3],
    [5, 6, 7, 5, 6, 7, 5, 6, 7, 5],
    [40, 41, 42],
    [9, 9, 9, 9, 9, 9],
]
BUDGETS = [6, 20, 9, 14, 5, 11]  # rows free at different steps


def run_continuously(engine: SpeculativeEngine, *, start: int, rows: int, **hooks) -> dict[int, tuple[list[int], str]]:
    """Start with `start` prompts in `rows` rows, admit the rest as rows free; outputs by prompt index.
    `hooks`: more callbacks of `generate` (on_step, on_tokens)."""
    queue = collections.deque(range(start, len(PROMPTS)))
    in_row: dict[int, int] = {row: index for row, index in enumerate(range(start))}
    done: dict[int, tuple[list[int], str]] = {}

    def admit(free: list[int]):
        taken = []
        for row in free:
            if not queue:
                break
            index = queue.popleft()
            in_row[row] = index
            taken.append((PROMPTS[index], SamplingParams(max_new_tokens=BUDGETS[index])))
        return taken

    def on_finish(row: int, result) -> None:
        index = in_row.pop(row)
        assert index not in done, "a sequence finished twice"
        done[index] = (result.token_ids, result.finish_reason)

    engine.generate(
        PROMPTS[:start],
        [SamplingParams(max_new_tokens=b) for b in BUDGETS[:start]],
        on_finish=on_finish,
        admit=admit,
        rows=rows,
        **hooks,
        max_tokens=64,
    )
    return done


@pytest.mark.parametrize("proposer", ["none", "draft", "prompt_lookup"])
def test_admitted_sequences_equal_the_targets_own_greedy_decoding(target, near_draft, tokenizer, proposer):
    config = SpeculationConfig(proposer=proposer, num_speculative_tokens=3)
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft if proposer == "draft" else None, config=config)
    done = run_continuously(engine, start=2, rows=3)
    assert sorted(done) == list(range(len(PROMPTS)))
    for index, (tokens, reason) in done.items():
        assert tokens == hf_greedy(target, PROMPTS[index], BUDGETS[index]), f"prompt {index}"
        assert reason == "length"


@pytest.mark.parametrize("in_step", [True, False], ids=["admitted-in-step", "admitted-before-step"])
def test_the_gpu_shaped_path_admits_losslessly_too(target, near_draft, tokenizer, monkeypatch, in_step):
    """Attention over the whole cache, fused layers and padded batches, as with CUDA graphs; a prompt
    admitted alone is prefilled alone (batch size 1) and copied into its row, into slots already in
    use where they fit (the cache does not grow). It is admitted while the running rows' step is
    queued, into slots before that step's, and decodes from the next step (`admit_in_step`); or
    before the step, and decodes in it."""
    config = SpeculationConfig(
        num_speculative_tokens=3, execution=ExecutionSettings(pad_batches=True, admit_in_step=in_step)
    )
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    alone = []  # (runner, rows, slot it ends before or None, cache length before, after)
    steps, admitted_at, waits = [], {}, []  # waits: steps from a target prefill alone to its row's first tokens

    def recorded(runner):
        real = runner._prefill_alone

        def prefill_alone(cache, sequences, rows, end):
            if runner is engine.target:
                admitted_at.update(dict.fromkeys(rows, len(steps)))
            before = cache.length
            real(cache, sequences, rows, end)
            alone.append((runner, rows, end, before, cache.length))

        return prefill_alone

    for runner in (engine.target, engine.proposer.runner):
        runner.attend_capacity = True
        runner.fuse()
        monkeypatch.setattr(runner, "_prefill_alone", recorded(runner))

    def on_tokens(row, new_ids):
        if row in admitted_at:
            waits.append(len(steps) - admitted_at.pop(row))

    done = run_continuously(engine, start=1, rows=3, on_step=steps.append, on_tokens=on_tokens)
    assert {i: tokens for i, (tokens, _) in done.items()} == {
        i: hf_greedy(target, p, b) for i, (p, b) in enumerate(zip(PROMPTS, BUDGETS, strict=True))
    }
    assert alone and all(len(rows) == 1 for _, rows, _, _, _ in alone)
    assert any(0 < before == after for _, _, _, before, after in alone)
    # the call's own prompts are prefilled before its first step; later ones during a step or before it
    in_steps = [end is not None for runner, _, end, _, _ in alone if runner is engine.target]
    assert in_steps[0] is False and in_steps[1:] and all(went == in_step for went in in_steps[1:])
    assert waits[0] == 0 and waits[1:] and set(waits[1:]) == {1 if in_step else 0}


def test_a_seeded_sampled_sequence_draws_the_same_tokens_when_admitted(target, near_draft, tokenizer):
    config = SpeculationConfig(num_speculative_tokens=2, adaptive=False)
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    sampled = SamplingParams(max_new_tokens=12, temperature=1.0, seed=1234)
    alone = engine.generate([PROMPTS[3]], [sampled])[0].token_ids
    finished = {}
    pending = [(PROMPTS[3], sampled)]
    engine.generate(
        [PROMPTS[0]],
        [SamplingParams(max_new_tokens=3)],
        admit=lambda free: [pending.pop()] if pending and len(free) == 1 else [],
        on_finish=lambda row, result: finished.setdefault(row, []).append(result.token_ids),
        rows=2,
        max_tokens=64,
    )
    assert alone in finished[1]


def test_a_sequence_beyond_max_tokens_is_refused(target, tokenizer):
    engine = SpeculativeEngine(target, tokenizer, config=SpeculationConfig(proposer="none"))
    with pytest.raises(errors.InvalidInput, match="exceeds the call's max_tokens"):
        engine.generate(
            [[1, 2]],
            [SamplingParams(max_new_tokens=2)],
            admit=lambda free: [([5] * 40, SamplingParams(max_new_tokens=40))],
            rows=2,
            max_tokens=16,
        )
