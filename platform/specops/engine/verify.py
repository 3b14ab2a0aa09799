"""The verifier: decide which draft tokens the target keeps.

Vocabulary (as in vLLM's rejection sampler). Per sequence and step the proposer drafts k tokens
`d_1..d_k`; the target scores `[last, d_1..d_k]` in one forward, giving k+1 distributions.

* **accepted** tokens: the longest prefix of the draft the rule keeps (0..k of them);
* **recovered** token: when draft token `d_{n+1}` is rejected, the token sampled in its place
  (greedy: the target's argmax; sampling: from `normalize(max(0, p - q))`);
* **bonus** token: when all k are accepted, one more token from the target's k+1-th distribution.

Output tokens = accepted + (recovered or bonus): every step gains between 1 and k+1 tokens.
With the rule below the output is distributed exactly as the target's own sampling
(Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", arXiv 2211.17192;
Chen et al., arXiv 2302.01318): accept `d` with probability `min(1, p(d) / q(d))`.
A proposer without a distribution (prompt lookup) drafts deterministically: `q` is one-hot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specops.engine.sampling import RowRandom


@dataclass(frozen=True)
class VerifyResult:
    """What the verifier decided for a batch."""

    num_accepted: torch.Tensor  # [batch_size] long, accepted draft tokens n (0..k)
    output_token_ids: torch.Tensor  # [batch_size, max_k + 1] long, n accepted + 1 recovered/bonus, then -1


def _check(draft_token_ids: torch.Tensor, num_draft_tokens: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    if draft_token_ids.ndim != 2 or target.ndim != 3:
        raise ValueError("draft_token_ids must be [batch, k] and target scores [batch, k + 1, vocab]")
    batch_size, max_k = draft_token_ids.shape
    if target.shape[:2] != (batch_size, max_k + 1):
        raise ValueError(f"target scores {tuple(target.shape)} do not match drafts {(batch_size, max_k)}")
    if num_draft_tokens.shape != (batch_size,):
        raise ValueError(f"num_draft_tokens must be [{batch_size}], got {tuple(num_draft_tokens.shape)}")
    return batch_size, max_k


def _finish(draft_token_ids: torch.Tensor, accepted: torch.Tensor, final_token: torch.Tensor) -> VerifyResult:
    """accepted [batch, k] bool per position (already valid-masked); final_token [batch]."""
    batch_size, max_k = draft_token_ids.shape
    num_accepted = torch.cumprod(accepted.long(), dim=1).sum(dim=1)  # [batch_size]
    positions = torch.arange(max_k + 1, device=draft_token_ids.device)
    padded = torch.cat([draft_token_ids, draft_token_ids.new_full((batch_size, 1), -1)], dim=1)
    output = torch.where(positions[None, :] < num_accepted[:, None], padded, -1)
    output = output.scatter(1, num_accepted[:, None], final_token[:, None])
    return VerifyResult(num_accepted=num_accepted, output_token_ids=output)


def greedy(
    draft_token_ids: torch.Tensor,  # [batch_size, max_k] long
    num_draft_tokens: torch.Tensor,  # [batch_size] long, k per sequence (<= max_k)
    target_logits: torch.Tensor,  # [batch_size, max_k + 1, vocab]
) -> VerifyResult:
    """Accept while the draft token equals the target's argmax; then the target's argmax."""
    _, max_k = _check(draft_token_ids, num_draft_tokens, target_logits)
    target_argmax = target_logits.argmax(dim=-1)  # [batch_size, max_k + 1]
    in_draft = torch.arange(max_k, device=draft_token_ids.device)[None, :] < num_draft_tokens[:, None]
    accepted = (draft_token_ids == target_argmax[:, :max_k]) & in_draft
    num_accepted = torch.cumprod(accepted.long(), dim=1).sum(dim=1)
    final_token = target_argmax.gather(1, num_accepted[:, None])[:, 0]
    return _finish(draft_token_ids, accepted, final_token)


def acceptance_mask(
    draft_token_ids: torch.Tensor,  # [batch_size, max_k] long
    target_probs: torch.Tensor,  # [batch_size, max_k (+1), vocab]
    draft_probs: torch.Tensor | None,  # [batch_size, max_k, vocab], None = one-hot drafts
    uniform: torch.Tensor,  # [batch_size, max_k] in [0, 1)
) -> torch.Tensor:
    """The acceptance rule: keep d where u < p(d) / q(d), i.e. with probability min(1, p/q). [batch, k] bool."""
    max_k = draft_token_ids.shape[1]
    p = target_probs[:, :max_k].gather(-1, draft_token_ids[..., None])[..., 0]  # [batch_size, max_k]
    if draft_probs is None:
        return uniform < p
    q = draft_probs.gather(-1, draft_token_ids[..., None])[..., 0]  # [batch_size, max_k]
    return uniform * q < p


def residual(
    target_probs: torch.Tensor,  # [batch_size, vocab]
    draft_probs: torch.Tensor | None,  # [batch_size, vocab], None = one-hot at `draft_token_ids`
    draft_token_ids: torch.Tensor,  # [batch_size] long, the rejected token
) -> torch.Tensor:
    """normalize(max(0, p - q)): the distribution of the recovered token. [batch_size, vocab]"""
    if draft_probs is None:
        draft_probs = torch.zeros_like(target_probs).scatter_(-1, draft_token_ids[:, None], 1.0)
    diff = (target_probs - draft_probs).clamp(min=0.0)
    total = diff.sum(dim=-1, keepdim=True)
    # p == q up to rounding: rejection had probability ~0; fall back to p
    return torch.where(total > 1e-12, diff / total.clamp(min=1e-30), target_probs)


def rejection(
    draft_token_ids: torch.Tensor,  # [batch_size, max_k] long
    num_draft_tokens: torch.Tensor,  # [batch_size] long
    target_probs: torch.Tensor,  # [batch_size, max_k + 1, vocab]
    draft_probs: torch.Tensor | None,  # [batch_size, max_k, vocab], None = one-hot drafts
    rng: RowRandom,
) -> VerifyResult:
    """Speculative sampling: output tokens follow `target_probs` exactly (see module docstring)."""
    batch_size, max_k = _check(draft_token_ids, num_draft_tokens, target_probs)
    device = draft_token_ids.device
    in_draft = torch.arange(max_k, device=device)[None, :] < num_draft_tokens[:, None]
    uniform = rng.uniform(batch_size, max_k)
    accepted = acceptance_mask(draft_token_ids, target_probs, draft_probs, uniform) & in_draft
    num_accepted = torch.cumprod(accepted.long(), dim=1).sum(dim=1)  # [batch_size]
    at = num_accepted[:, None, None]
    p_next = target_probs.gather(1, at.expand(-1, 1, target_probs.shape[-1]))[:, 0]  # [batch_size, vocab]
    if max_k == 0:
        final_probs = p_next
    else:
        at_draft = at.clamp(max=max_k - 1)
        rejected_token = draft_token_ids.gather(1, at_draft[:, :, 0])[:, 0]  # [batch_size]
        q_next = (
            None if draft_probs is None else draft_probs.gather(1, at_draft.expand(-1, 1, draft_probs.shape[-1]))[:, 0]
        )
        recovered_probs = residual(p_next, q_next, rejected_token)
        bonus = num_accepted == num_draft_tokens  # [batch_size]
        final_probs = torch.where(bonus[:, None], p_next, recovered_probs)
    final_token = rng.sample(final_probs)
    return _finish(draft_token_ids, accepted, final_token)
