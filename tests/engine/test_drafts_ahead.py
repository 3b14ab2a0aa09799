"""Drafts made ahead: in steady greedy drafting the draft model drafts the next step before the host
reads the verifier's decision (`DraftModelProposer.prefetch`). Those drafts are used, change no token,
and give way where a step cannot use them (an admitted sequence, a sampled one)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specops.engine import ExecutionSettings, SamplingParams, SpeculationConfig, SpeculativeEngine
from specops.engine.proposers import DraftModelProposer
from tests.support.tiny_llamas import hf_greedy

PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [3], [5, 6, 7, 5, 6, 7, 5, 6, 7, 5]]


@pytest.fixture
def proposals(monkeypatch) -> list[tuple[bool, list[int]]]:
    """(made ahead?, drafts per row) of every proposal."""
    seen: list[tuple[bool, list[int]]] = []
    real = DraftModelProposer.propose

    def propose(self, batch, num_tokens):
        ahead = self.drafted_ahead
        proposal = real(self, batch, num_tokens)
        seen.append((ahead, list(proposal.num_draft_tokens)))
        return proposal

    monkeypatch.setattr(DraftModelProposer, "propose", propose)
    return seen


@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed-k", "adaptive"])
def test_drafts_made_ahead_are_used_and_change_no_token(target, near_draft, tokenizer, proposals, adaptive):
    config = SpeculationConfig(num_speculative_tokens=3, adaptive=adaptive)
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=24)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [hf_greedy(target, p, 24) for p in PROMPTS]
    ahead = sum(made_ahead for made_ahead, _ in proposals)
    assert ahead >= len(proposals) // 2, f"only {ahead} of {len(proposals)} proposals were made ahead"
    assert sum(r.stats.num_accepted_tokens for r in results) > 0


def test_a_sequence_admitted_beside_drafts_made_ahead_drafts_the_step_after(target, near_draft, tokenizer, proposals):
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=SpeculationConfig(num_speculative_tokens=3))
    finished = _admitting(engine, [(PROMPTS[0], 4), (PROMPTS[3], 20)], (PROMPTS[1], SamplingParams(max_new_tokens=16)))
    assert finished[0] == [hf_greedy(target, PROMPTS[0], 4), hf_greedy(target, PROMPTS[1], 16)]
    assert finished[1] == [hf_greedy(target, PROMPTS[3], 20)]
    # the step that admitted it used drafts made ahead, in which its row drafted nothing
    assert any(made_ahead and drafts[0] == 0 and drafts[1] > 0 for made_ahead, drafts in proposals)


def _admitting(
    engine: SpeculativeEngine, running: list[tuple[list[int], int]], admitted: tuple[list[int], SamplingParams]
) -> dict[int, list[list[int]]]:
    """Generate `running` (prompt, max_new_tokens), one row each, and admit one more sequence into the
    first row that frees; per row, the tokens of each sequence it finished."""
    pending = [admitted]
    finished: dict[int, list[list[int]]] = {}
    engine.generate(
        [prompt for prompt, _ in running],
        [SamplingParams(max_new_tokens=n) for _, n in running],
        admit=lambda free: [pending.pop()] if pending else [],
        on_finish=lambda row, result: finished.setdefault(row, []).append(result.token_ids),
        rows=len(running),
        max_tokens=64,
    )
    return finished


def gpu_shaped(engine: SpeculativeEngine) -> SpeculativeEngine:
    """The CUDA-graph path's shapes on a CPU: attention over the whole cache and fused layers (with
    `pad_batches`), where a prompt admitted beside running rows is prefilled alone."""
    for runner in (engine.target, engine.proposer.runner):
        runner.attend_capacity = True
        runner.fuse()
    return engine


def test_a_sequence_admitted_beside_drafts_made_ahead_joins_the_next_ones(target, near_draft, tokenizer, monkeypatch):
    """On the GPU-shaped path its prompt goes into the draft cache before the drafts made ahead, and
    the drafts made at the end of its first step include it (no step drafts inline for it)."""
    config = SpeculationConfig(num_speculative_tokens=3, adaptive=False, execution=ExecutionSettings(pad_batches=True))
    engine = gpu_shaped(SpeculativeEngine(target, tokenizer, draft=near_draft, config=config))
    steps = []  # (made ahead?, row 0 running?, row 0's drafts)
    real = DraftModelProposer.propose

    def propose(self, batch, num_tokens):
        ahead = self.drafted_ahead
        proposal = real(self, batch, num_tokens)
        steps.append((ahead, batch.active[0], proposal.num_draft_tokens[0]))
        return proposal

    monkeypatch.setattr(DraftModelProposer, "propose", propose)
    running = [(PROMPTS[0], 4), (PROMPTS[3], 30), (PROMPTS[2], 30), (PROMPTS[3], 30)]
    finished = _admitting(engine, running, (PROMPTS[1], SamplingParams(max_new_tokens=16)))
    assert finished[0] == [hf_greedy(target, PROMPTS[0], 4), hf_greedy(target, PROMPTS[1], 16)]
    assert finished[1] == [hf_greedy(target, PROMPTS[3], 30)]
    # its first step (row 0 running, drafting nothing) used drafts made ahead, and so did the next,
    # in which it drafted
    first = next(i for i, (_, running, drafts) in enumerate(steps) if running and drafts == 0)
    assert steps[first][0] and steps[first + 1] == (True, True, 3)


def test_a_sampled_sequence_admitted_beside_drafts_made_ahead_is_drafted_afresh(target, near_draft, tokenizer):
    config = SpeculationConfig(num_speculative_tokens=2, adaptive=False)  # the same k: the same random draws
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    sampled = SamplingParams(max_new_tokens=12, temperature=1.0, seed=99)
    alone = engine.generate([PROMPTS[2]], [sampled])[0].token_ids
    forgotten = []
    real_forget = DraftModelProposer._forget
    engine.proposer._forget = lambda ahead: (forgotten.append(1), real_forget(engine.proposer, ahead))
    finished = _admitting(engine, [(PROMPTS[0], 4), (PROMPTS[3], 20)], (PROMPTS[2], sampled))
    assert forgotten, "the admission should have found drafts made ahead"
    assert finished[0] == [hf_greedy(target, PROMPTS[0], 4), alone]
    assert finished[1] == [hf_greedy(target, PROMPTS[3], 20)]


def _run(engine: SpeculativeEngine, continuous: bool) -> list:
    """A batch of `PROMPTS`, or (continuous) two rows through which all of them stream, with
    different budgets; returns the results' stats."""
    if not continuous:
        return [r.stats for r in engine.generate(PROMPTS, [SamplingParams(max_new_tokens=24)] * len(PROMPTS))]
    queue = [(prompt, SamplingParams(max_new_tokens=8 + 5 * i)) for i, prompt in enumerate(PROMPTS)]
    finished = []
    engine.generate(
        [],
        [],
        admit=lambda free: [queue.pop(0) for _ in free if queue],
        on_finish=lambda row, result: finished.append(result.stats),
        rows=2,
        max_tokens=64,
    )
    return finished


@pytest.mark.parametrize("continuous", [False, True], ids=["batch", "continuous"])
def test_every_draft_is_the_draft_models_own_greedy_continuation(target, near_draft, tokenizer, continuous):
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=SpeculationConfig(num_speculative_tokens=3))
    checked = []
    real = DraftModelProposer.propose

    def propose(self, batch, num_tokens):
        made_ahead = self.drafted_ahead
        proposal = real(self, batch, num_tokens)
        for row, n in enumerate(proposal.num_draft_tokens):
            if n:
                drafts = proposal.draft_token_ids[row, :n].tolist()
                checked.append((made_ahead, drafts == hf_greedy(near_draft, batch.tokens[row], n)))
        return proposal

    engine.proposer.propose = propose.__get__(engine.proposer)
    _run(engine, continuous)
    assert checked and all(same for _, same in checked)
    assert sum(made_ahead for made_ahead, _ in checked) >= len(checked) // 2


@pytest.mark.parametrize("continuous", [False, True], ids=["batch", "continuous"])
def test_a_self_draft_made_ahead_is_always_accepted(target, tokenizer, continuous):
    engine = SpeculativeEngine(target, tokenizer, draft=target, config=SpeculationConfig(num_speculative_tokens=3))
    stats = _run(engine, continuous)
    assert all(s.acceptance_rate == 1.0 for s in stats)


def test_drafting_ahead_can_be_switched_off(target, near_draft, tokenizer, proposals):
    config = SpeculationConfig(num_speculative_tokens=3, adaptive=False, execution=ExecutionSettings(draft_ahead=False))
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    results = engine.generate(PROMPTS, [SamplingParams(max_new_tokens=24)] * len(PROMPTS))
    assert [r.token_ids for r in results] == [hf_greedy(target, p, 24) for p in PROMPTS]
    assert proposals and not any(made_ahead for made_ahead, _ in proposals)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(
        st.tuples(st.lists(st.integers(0, 63), min_size=1, max_size=14), st.integers(1, 24)), min_size=1, max_size=7
    ),
    rows=st.integers(1, 5),
    k=st.integers(1, 4),
    adaptive=st.booleans(),
    shaped=st.booleans(),
)
def test_any_stream_of_greedy_sequences_decodes_as_each_would_alone(
    target, near_draft, tokenizer, jobs, rows, k, adaptive, shaped
):
    """Continuous batching with drafts made ahead, for any prompts, budgets, rows and k, on the plain
    path or the GPU-shaped one (`shaped`: prompts admitted alone, and into the drafts made ahead)."""
    config = SpeculationConfig(
        num_speculative_tokens=k, adaptive=adaptive, execution=ExecutionSettings(pad_batches=shaped)
    )
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    if shaped:
        gpu_shaped(engine)
    queue = list(enumerate(jobs))
    in_row: dict[int, int] = {}
    done: dict[int, list[int]] = {}

    def admit(free: list[int]):
        taken = [queue.pop(0) for _ in free if queue]
        in_row.update({row: index for row, (index, _) in zip(free, taken, strict=False)})
        return [(prompt, SamplingParams(max_new_tokens=budget)) for _, (prompt, budget) in taken]

    engine.generate(
        [],
        [],
        admit=admit,
        on_finish=lambda row, result: done.setdefault(in_row[row], result.token_ids),
        rows=rows,
        max_tokens=40,
    )
    assert done == {i: hf_greedy(target, prompt, budget) for i, (prompt, budget) in enumerate(jobs)}


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(
        st.tuples(st.lists(st.integers(0, 63), min_size=1, max_size=10), st.integers(1, 16), st.booleans()),
        min_size=2,
        max_size=6,
    ),
    rows=st.integers(1, 5),
    shaped=st.booleans(),
)
def test_greedy_and_seeded_sampled_sequences_mixed_in_a_stream_decode_as_alone(
    target, near_draft, tokenizer, jobs, rows, shaped
):
    """Sampled sequences joining greedy ones undo drafts made ahead; nothing changes any sequence's tokens
    (a seeded sampled sequence draws what it draws alone, at the same fixed k), on either path."""
    config = SpeculationConfig(
        num_speculative_tokens=2, adaptive=False, execution=ExecutionSettings(pad_batches=shaped)
    )
    engine = SpeculativeEngine(target, tokenizer, draft=near_draft, config=config)
    if shaped:
        gpu_shaped(engine)

    def params(index: int) -> SamplingParams:
        _, budget, sampled = jobs[index]
        return SamplingParams(max_new_tokens=budget, temperature=1.0 if sampled else 0.0, seed=index)

    alone = {i: engine.generate([prompt], [params(i)])[0].token_ids for i, (prompt, _, _) in enumerate(jobs)}
    queue = list(range(len(jobs)))
    in_row: dict[int, int] = {}
    done: dict[int, list[int]] = {}

    def admit(free: list[int]):
        taken = [queue.pop(0) for _ in free if queue]
        in_row.update(zip(free, taken, strict=False))
        return [(jobs[index][0], params(index)) for index in taken]

    def on_finish(row: int, result) -> None:
        done[in_row[row]] = result.token_ids

    engine.generate([], [], admit=admit, on_finish=on_finish, rows=rows, max_tokens=30)
    assert done == alone
    assert all(alone[i] == hf_greedy(target, prompt, budget) for i, (prompt, budget, s) in enumerate(jobs) if not s)
