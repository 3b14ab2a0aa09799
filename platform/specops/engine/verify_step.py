"""The target's side of a step: one forward over `[last, d_1..d_k]` per sequence, the verifier
(verify.py), and the cache's drop of the rejected slots.

Everything up to the read of the decision is queued on the device without waiting (`queue`); the
read (`read`) is the step's one synchronisation and waits for the decision alone. A greedy batch's
target side is one computation (`verify_greedy`), on a GPU one CUDA graph.
"""

from __future__ import annotations

import torch

from specops.engine import verify
from specops.engine.batch import SequenceBatch
from specops.engine.kv_cache import KVCache, window_kept
from specops.engine.proposers import Proposal
from specops.engine.runner import ModelRunner
from specops.engine.sampling import probabilities
from specops.engine.transfer import HostCopy, host_staged, to_device


def queue(target: ModelRunner, *, batch: SequenceBatch, cache: KVCache, proposal: Proposal) -> tuple[torch.Tensor, int]:
    """Queue the step's verification: the packed decision on the device [batch_size, 1 + max_k + 1]
    (accepted count, then tokens) and the step's first slot."""
    staged = host_staged(
        [list(map(int, batch.active)), proposal.num_draft_tokens, [t[-1] for t in batch.tokens]],
        torch.long,
        target.device,
    )  # [3, batch_size]: active, drafted, last token
    if batch.sampling.all_greedy:
        return replay_greedy(target, cache, staged=staged, draft_token_ids=proposal.draft_token_ids)
    return _verify_sampled(target, batch, cache, proposal, staged)


def read(decision: HostCopy, *, batch: SequenceBatch, cache: KVCache, start: int) -> tuple[list[list[int]], list[int]]:
    """Wait for the decision; trim the cache to the last slot a running sequence kept. Returns each
    sequence's output tokens (accepted, then recovered or bonus, then -1) and accepted counts."""
    rows = decision.get().tolist()
    num_accepted = [row[0] for row in rows]
    used = 1 + max(n for n, a in zip(num_accepted, batch.active, strict=True) if a) if any(batch.active) else 0
    cache.trim(start, used)
    return [row[1:] for row in rows], num_accepted


def replay_greedy(
    target: ModelRunner, cache: KVCache, *, staged: torch.Tensor, draft_token_ids: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """`verify_greedy` over new slots of `cache`: (packed decision, first slot)."""
    batch_size, max_k = draft_token_ids.shape
    start = target.reserve(cache, batch_size, max_k + 1)

    def compute(staged: torch.Tensor, draft_token_ids: torch.Tensor, start: torch.Tensor, kv_len: int | None):
        return verify_greedy(target, cache, staged, draft_token_ids, start, kv_len)

    packed = target.replay(("verify", batch_size, max_k), cache, compute, [staged, draft_token_ids], start)
    return packed, start


def _verify_sampled(
    target: ModelRunner, batch: SequenceBatch, cache: KVCache, proposal: Proposal, staged: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Verification of a batch with sampled sequences (greedy rows stay greedy): (packed, first slot)."""
    ids, valid, num_draft = _step_tokens(staged.to(target.device, non_blocking=True), proposal.draft_token_ids)
    logits = target.forward(cache, ids, valid)  # [batch_size, max_k + 1, vocab]
    start = cache.length - (proposal.max_k + 1)  # after the forward: it may have compacted the cache
    sampling = batch.sampling
    greedy = verify.greedy(proposal.draft_token_ids, num_draft, logits)
    sampled = verify.rejection(
        proposal.draft_token_ids, num_draft, probabilities(logits, sampling), proposal.draft_probs, batch.rng
    )
    result = verify.VerifyResult(
        num_accepted=torch.where(sampling.greedy, greedy.num_accepted, sampled.num_accepted),
        output_token_ids=torch.where(sampling.greedy[:, None], greedy.output_token_ids, sampled.output_token_ids),
    )
    start_tensor = to_device([start], torch.long, target.device)
    return _decided(cache, start_tensor, valid, result), start


def _step_tokens(
    staged: torch.Tensor,  # [3, batch_size] long: active, drafted tokens, last token
    draft_token_ids: torch.Tensor,  # [batch_size, max_k] long
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The target's inputs of a step: ids and valid [batch_size, max_k + 1], drafted [batch_size]."""
    active, num_draft, last = staged
    ids = torch.cat([last[:, None], draft_token_ids], dim=1)
    columns = torch.arange(ids.shape[1], device=ids.device)
    valid = active.bool()[:, None] & (columns[None, :] <= num_draft[:, None])
    return ids, valid, num_draft


def _decided(cache: KVCache, start: torch.Tensor, valid: torch.Tensor, result: verify.VerifyResult) -> torch.Tensor:
    """Drop the rejected slots; the decision packed as [batch_size, 1 + max_k + 1]: accepted count, tokens."""
    cache.drop(start, _kept(valid, result))
    return _packed(result)


def _kept(valid: torch.Tensor, result: verify.VerifyResult) -> torch.Tensor:
    """The step's slots a sequence keeps [batch_size, max_k + 1]: its valid ones up to its output's last."""
    columns = torch.arange(valid.shape[1], device=valid.device)
    return valid & (columns[None, :] <= result.num_accepted[:, None])


def _packed(result: verify.VerifyResult) -> torch.Tensor:
    return torch.cat([result.num_accepted[:, None], result.output_token_ids], dim=1)


def _greedy_decision(
    logits: torch.Tensor,  # [batch_size, max_k + 1, vocab]
    draft_token_ids: torch.Tensor,  # [batch_size, max_k]
    num_draft: torch.Tensor,  # [batch_size]
    valid: torch.Tensor,  # [batch_size, max_k + 1], the step's inputs
    cache_valid: torch.Tensor,  # [batch_size, capacity]
    start: torch.Tensor,  # [1]
) -> tuple[torch.Tensor, ...]:
    """`_decided` without the cache writes (pure, so that a graph runs it as a few compiled kernels):
    the packed decision, then `window_kept`'s drop of the rejected slots."""
    result = verify.greedy(draft_token_ids, num_draft, logits)
    return _packed(result), *window_kept(cache_valid, start, _kept(valid, result))


def verify_greedy(
    target: ModelRunner,
    cache: KVCache,
    staged: torch.Tensor,  # [3, batch_size] long, see `_step_tokens`
    draft_token_ids: torch.Tensor,  # [batch_size, max_k] long
    start: torch.Tensor,  # [1] long, the step's first slot
    kv_len: int | None,
) -> torch.Tensor:
    """The target's side of a greedy step, on the device alone (so a CUDA graph can hold it): the
    forward, the verifier, the cache's drop of rejected slots; returns `_decided`'s packed decision."""
    ids, valid, num_draft = target.kernel(_step_tokens)(staged, draft_token_ids)
    logits = target.forward_slots(cache, ids, valid, start, kv_len=kv_len, float32=False)  # an argmax's needs
    packed, *window = target.kernel(_greedy_decision)(logits, draft_token_ids, num_draft, valid, cache.valid, start)
    cache.set_window(*window)
    return packed
