"""The forward of a Hugging Face Llama-family model over the engine's own KV cache (kv_cache.py).

Owning the forward (instead of calling `model(...)`) keeps the engine independent of the cache API,
which changes between transformers releases, and lets a CUDA device replay each (batch, q) shape as
a CUDA graph. Each layer runs either as the transformers modules do (eager path) or as one
`fused_layer.FusedLayer` (the GPU path); the pure work around the layers comes from `kernels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from specops.engine import fused_layer
from specops.engine.kv_cache import KVCache

if TYPE_CHECKING:
    from specops.engine.runner import ModelRunner


def model_forward(
    runner: ModelRunner,
    cache: KVCache,
    input_ids: torch.Tensor,  # [batch_size, q]
    input_valid: torch.Tensor,  # [batch_size, q]
    start: torch.Tensor,  # [1] long, first slot
    *,
    kv_len: int | None,
    logits: bool = True,
    last: bool = False,
    float32: bool = True,
) -> torch.Tensor | None:
    """The model over slots [start, start + q); attends over kv_len slots (None = the capacity).

    Returns the logits [batch_size, q, vocab] in float32 (in the model's dtype without `float32`:
    enough for an argmax), or with `last` only the last position's [batch_size, 1, vocab] in the
    model's dtype, or nothing (`logits` off).
    """
    inner = runner.model.model
    batch_size, q = input_ids.shape
    kv_len = kv_len or cache.capacity
    kernels = runner.forward_kernels()
    fold_heads = runner.num_heads if runner.fused is not None else 0
    slots, positions, mask, seq_lens, *rotary = kernels.step_inputs(
        cache.valid, cache.seq_lens, input_valid, start, kv_len, runner.dtype, runner.rope_table, fold_heads
    )
    cache.valid.index_copy_(1, slots, input_valid)
    cache.seq_lens.copy_(seq_lens)
    hidden = runner.kernel(F.embedding)(input_ids, inner.embed_tokens.weight)  # [batch_size, q, hidden]
    if rotary:
        cos, sin = rotary  # [batch_size, 1, q, head_dim]
    else:
        cos, sin = (x[:, None] for x in inner.rotary_emb(hidden, positions))
    gqa = runner.num_kv_heads != runner.num_heads
    for layer_index, layer in enumerate(inner.layers[: runner.num_layers]):
        if runner.fused is not None:
            hidden = runner.fused[layer_index].forward(
                hidden,
                cos,
                sin,
                cache.kv[:, layer_index],
                slots,
                mask,
                kv_len,
                runner.num_heads,
                runner.num_kv_heads,
                gqa,
                kernels,
            )
            continue
        keys, values = cache.keys[layer_index], cache.values[layer_index]
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        qs = attn.q_proj(x).view(batch_size, q, -1, runner.head_dim)
        ks = attn.k_proj(x).view(batch_size, q, -1, runner.head_dim)
        vs = attn.v_proj(x).view(batch_size, q, -1, runner.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):
            qs, ks = attn.q_norm(qs), attn.k_norm(ks)
        qs, ks = qs.transpose(1, 2), ks.transpose(1, 2)  # [batch_size, heads, q, head_dim]
        qs, ks = fused_layer.rotary(qs, cos, sin), fused_layer.rotary(ks, cos, sin)
        keys.index_copy_(2, slots, ks.to(keys.dtype))
        values.index_copy_(2, slots, vs.to(values.dtype))
        out = F.scaled_dot_product_attention(
            qs,
            keys[:, :, :kv_len],
            values[:, :, :kv_len],
            attn_mask=mask,
            scale=attn.scaling,
            enable_gqa=gqa,
        )  # [batch_size, heads, q, head_dim]
        hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(batch_size, q, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    if not logits:
        return None
    if last:
        hidden = hidden[:, -1:]
    if runner.fused is not None:
        head = runner.model.lm_head
        out = kernels.head(hidden, inner.norm.weight, inner.norm.variance_epsilon, head.weight, head.bias)
    else:
        out = runner.model.lm_head(inner.norm(hidden))
    return out.float() if float32 and not last else out  # [batch_size, q or 1, vocab]


def step_inputs(
    valid: torch.Tensor,  # [batch_size, capacity] bool, the cache's slots before this forward
    seq_lens: torch.Tensor,  # [batch_size] long, valid tokens per sequence before it
    input_valid: torch.Tensor,  # [batch_size, q] bool
    start: torch.Tensor,  # [1] long, first slot written
    kv_len: int,
    dtype: torch.dtype,
    rope: tuple[torch.Tensor, torch.Tensor] | None,  # cos and sin [max_context, head_dim] of every position
    fold_heads: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Slots [q], positions [batch_size, q], the additive attention mask [batch_size, 1, q, kv_len]
    (0 or -inf, in `dtype`: built once per forward, not converted by every layer's attention), the
    new `seq_lens` of a forward writing `input_valid`'s tokens into slots [start, start + q), and
    (with `rope`) the positions' cos and sin [batch_size, 1, q, head_dim].

    With `fold_heads` (the model's query heads) and q > 1, the mask is laid out for queries folded
    as `fused_layer.FusedLayer` attends them: [batch_size, heads * q, 1, kv_len], query position fastest."""
    q = input_valid.shape[1]
    slots = start + torch.arange(q, device=valid.device)
    # position = valid tokens before this one in the same sequence
    positions = (seq_lens[:, None] + torch.cumsum(input_valid.long(), dim=1) - 1).clamp(min=0)
    key_slots = torch.arange(kv_len, device=valid.device)[None, None, None, :]
    query_slots = slots[None, None, :, None]
    owned = valid[:, :kv_len].index_copy(1, slots, input_valid)[:, None, None, :]  # with this forward's slots
    # attend to valid slots up to and including one's own; always to oneself (padding too)
    allowed = (owned & (key_slots <= query_slots)) | (key_slots == query_slots)
    mask = torch.where(allowed, 0.0, float("-inf")).to(dtype)
    if fold_heads and q > 1:
        batch_size = valid.shape[0]
        mask = mask.expand(batch_size, fold_heads, q, kv_len).reshape(batch_size, fold_heads * q, 1, kv_len)
    rotary = () if rope is None else (rope[0][positions][:, None], rope[1][positions][:, None])
    return slots, positions, mask, seq_lens + input_valid.sum(dim=1), *rotary
