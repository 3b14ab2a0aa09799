"""Properties of the verifier, for any drafts and distributions (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specops.engine import verify
from specops.engine.sampling import RowRandom

VOCAB = 6


@st.composite
def verify_case(draw):
    batch = draw(st.integers(1, 4))
    max_k = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    num_draft = torch.tensor([draw(st.integers(0, max_k)) for _ in range(batch)], dtype=torch.long)
    draft_ids = torch.randint(0, VOCAB, (batch, max_k), generator=generator)
    sharpness = draw(st.floats(0.1, 8.0))
    target = torch.softmax(torch.randn(batch, max_k + 1, VOCAB, generator=generator) * sharpness, dim=-1)
    draft = torch.softmax(torch.randn(batch, max_k, VOCAB, generator=generator) * sharpness, dim=-1)
    return draft_ids, num_draft, target, draft, seed


def _check_shape_of_result(result, draft_ids, num_draft):
    batch, max_k = draft_ids.shape
    assert result.output_token_ids.shape == (batch, max_k + 1)
    for row in range(batch):
        n = int(result.num_accepted[row])
        assert 0 <= n <= int(num_draft[row])
        out = result.output_token_ids[row].tolist()
        assert out[:n] == draft_ids[row, :n].tolist()  # accepted tokens are the draft's
        assert 0 <= out[n] < VOCAB  # then exactly one recovered or bonus token
        assert all(t == -1 for t in out[n + 1 :])


@settings(max_examples=60, deadline=None)
@given(verify_case())
def test_greedy_keeps_the_prefix_matching_the_targets_argmax_then_its_token(case):
    draft_ids, num_draft, target, _, _ = case
    result = verify.greedy(draft_ids, num_draft, target.log())
    _check_shape_of_result(result, draft_ids, num_draft)
    argmax = target.argmax(-1)
    for row in range(draft_ids.shape[0]):
        n = int(result.num_accepted[row])
        assert (draft_ids[row, :n] == argmax[row, :n]).all()
        if n < int(num_draft[row]):
            assert draft_ids[row, n] != argmax[row, n]  # stopped at the first mismatch
        assert result.output_token_ids[row, n] == argmax[row, n]


@settings(max_examples=60, deadline=None)
@given(verify_case(), st.booleans())
def test_rejection_sampling_returns_accepted_then_one_token(case, one_hot):
    draft_ids, num_draft, target, draft, seed = case
    rng = RowRandom([seed] * draft_ids.shape[0], torch.device("cpu"))
    result = verify.rejection(draft_ids, num_draft, target, None if one_hot else draft, rng)
    _check_shape_of_result(result, draft_ids, num_draft)


@settings(max_examples=60, deadline=None)
@given(verify_case())
def test_a_draft_equal_to_the_target_is_always_accepted(case):
    draft_ids, num_draft, target, _, seed = case
    max_k = draft_ids.shape[1]
    # d must have probability > 0 under q = p for the rule to apply; softmax never gives exact 0
    rng = RowRandom([seed] * draft_ids.shape[0], torch.device("cpu"))
    result = verify.rejection(draft_ids, num_draft, target, target[:, :max_k], rng)
    assert torch.equal(result.num_accepted, num_draft)


@settings(max_examples=60, deadline=None)
@given(verify_case())
def test_a_token_the_target_rules_out_is_never_accepted(case):
    draft_ids, num_draft, target, draft, seed = case
    max_k = draft_ids.shape[1]
    if max_k == 0:
        return
    target = target.clone()
    target[:, :max_k].scatter_(-1, draft_ids[..., None], 0.0)  # p(d) = 0 at every position
    rng = RowRandom([seed] * draft_ids.shape[0], torch.device("cpu"))
    result = verify.rejection(draft_ids, num_draft, target, draft, rng)
    assert int(result.num_accepted.max()) == 0


@settings(max_examples=60, deadline=None)
@given(verify_case())
def test_the_residual_is_a_distribution_supported_where_p_exceeds_q(case):
    _, _, target, draft, _ = case
    if draft.shape[1] == 0:
        return
    p, q = target[:, 0], draft[:, 0]
    residual = verify.residual(p, q, torch.zeros(p.shape[0], dtype=torch.long))
    assert torch.allclose(residual.sum(-1), torch.ones(p.shape[0]), atol=1e-5)
    assert (residual[(p - q) <= 0] == 0).all() or torch.allclose(p, q)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), st.integers(0, 2**31 - 1))
def test_acceptance_probability_is_min_one_p_over_q(p_d, q_d, seed):
    n = 4000
    draft_ids = torch.zeros(n, 1, dtype=torch.long)
    target = torch.tensor([p_d, 1 - p_d]).expand(n, 1, 2)
    draft = torch.tensor([q_d, 1 - q_d]).expand(n, 1, 2)
    uniform = torch.rand(n, 1, generator=torch.Generator().manual_seed(seed))
    rate = verify.acceptance_mask(draft_ids, target, draft, uniform).double().mean().item()
    expected = min(1.0, p_d / q_d)
    assert abs(rate - expected) < 5 * (expected * (1 - expected) / n) ** 0.5 + 1e-3
