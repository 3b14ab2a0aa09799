"""The fused decoder layer of the GPU path: concatenated projections, queries folded into heads.

Its work around attention is two pure functions, `attention_inputs` and `attention_output_and_mlp`,
which `kernels.compiled_kernels` may compile; the cache writes and attention stay eager between them.
Every function computes what the transformers Llama modules compute, in the same dtypes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from specops.engine.kernels import Kernels


@dataclass
class FusedLayer:
    """One decoder layer with concatenated projections (same maths as the transformers modules).

    Its work around attention is two pure functions of `Kernels`, `before` (norm, q/k/v projection,
    rotary) and `after` (output projection, residuals, norm, MLP), which may be compiled; the cache
    writes and attention stay eager between them, so compiled code never mutates its inputs.
    """

    input_norm: torch.Tensor  # [hidden]
    input_eps: float
    post_norm: torch.Tensor  # [hidden]
    post_eps: float
    qkv_weight: torch.Tensor  # [(heads + 2 kv_heads) * head_dim, hidden]
    qkv_bias: torch.Tensor | None
    o_weight: torch.Tensor  # [hidden, heads * head_dim]
    o_bias: torch.Tensor | None
    gate_up_weight: torch.Tensor  # [2 * intermediate, hidden]
    down_weight: torch.Tensor  # [hidden, intermediate]
    down_bias: torch.Tensor | None
    act: Callable[[torch.Tensor], torch.Tensor]
    scaling: float

    @classmethod
    def of(cls, layer: torch.nn.Module) -> FusedLayer:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        biases = [p.bias for p in projections]
        return cls(
            input_norm=layer.input_layernorm.weight,
            input_eps=layer.input_layernorm.variance_epsilon,
            post_norm=layer.post_attention_layernorm.weight,
            post_eps=layer.post_attention_layernorm.variance_epsilon,
            qkv_weight=torch.cat([p.weight.detach() for p in projections]),
            qkv_bias=None if biases[0] is None else torch.cat([b.detach() for b in biases]),
            o_weight=attn.o_proj.weight,
            o_bias=attn.o_proj.bias,
            gate_up_weight=torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()]),
            down_weight=mlp.down_proj.weight,
            down_bias=mlp.down_proj.bias,
            act=activation_function(mlp.act_fn),
            scaling=attn.scaling,
        )

    def forward(
        self,
        hidden: torch.Tensor,  # [batch_size, q, hidden]
        cos: torch.Tensor,  # [batch_size, 1, q, head_dim]
        sin: torch.Tensor,  # [batch_size, 1, q, head_dim]
        kv: torch.Tensor,  # [2 (keys, values), batch_size, kv_heads, capacity, head_dim], the layer's cache
        slots: torch.Tensor,  # [q]
        mask: torch.Tensor,  # [batch_size, heads * q or 1, 1, kv_len], as `forward.step_inputs` folds them
        kv_len: int,
        num_heads: int,
        num_kv_heads: int,
        gqa: bool,
        kernels: Kernels,
    ) -> torch.Tensor:
        batch_size, q, _ = hidden.shape
        qs, new_kv = kernels.before(
            hidden, self.input_norm, self.input_eps, self.qkv_weight, self.qkv_bias, cos, sin, num_heads, num_kv_heads
        )
        kv.index_copy_(3, slots, new_kv.to(kv.dtype))  # keys and values in one write
        # queries folded [batch_size, heads * q, 1, head_dim]: a step's q positions attend as q query
        # heads per key head, one query each, which a GPU's attention kernels for one-token steps take
        # (measured on an H100 at batch 8 and q = 3: a quarter less time per layer than the q-token kernel)
        out = F.scaled_dot_product_attention(
            qs, kv[0, :, :, :kv_len], kv[1, :, :, :kv_len], attn_mask=mask, scale=self.scaling, enable_gqa=gqa or q > 1
        )
        return kernels.after(
            hidden,
            out.view(batch_size, num_heads, q, -1),  # [batch_size, heads, q, head_dim]
            self.o_weight,
            self.o_bias,
            self.post_norm,
            self.post_eps,
            self.gate_up_weight,
            self.down_weight,
            self.down_bias,
            self.act,
        )


def norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as transformers computes it: in float32, cast back, then scaled."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def attention_inputs(
    hidden: torch.Tensor,  # [batch_size, q, hidden]
    norm_weight: torch.Tensor,
    eps: float,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    cos: torch.Tensor,  # [batch_size, 1, q, head_dim]
    sin: torch.Tensor,  # [batch_size, 1, q, head_dim]
    num_heads: int,
    num_kv_heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries folded [batch_size, heads * q, 1, head_dim] (query position fastest) and keys and values
    stacked [2, batch_size, kv_heads, q, head_dim], rotary applied."""
    batch_size, q, _ = hidden.shape
    qkv = F.linear(norm(hidden, norm_weight, eps), qkv_weight, qkv_bias)
    qkv = qkv.view(batch_size, q, num_heads + 2 * num_kv_heads, -1).transpose(1, 2)
    # rotary for queries and keys apart: each result has one use, into which it fuses (the folded
    # queries' copy, the keys and values' stack)
    queries = rotary(qkv[:, :num_heads], cos, sin).reshape(batch_size, num_heads * q, 1, -1)
    keys = rotary(qkv[:, num_heads : num_heads + num_kv_heads], cos, sin)
    return queries, torch.stack([keys, qkv[:, num_heads + num_kv_heads :]])


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def final_logits(
    hidden: torch.Tensor,  # [batch_size, q, hidden]
    norm_weight: torch.Tensor,
    eps: float,
    weight: torch.Tensor,  # [vocab, hidden]
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """The final norm and the LM head: logits [batch_size, q, vocab] in the model's dtype."""
    return F.linear(norm(hidden, norm_weight, eps), weight, bias)


def attention_output_and_mlp(
    hidden: torch.Tensor,  # [batch_size, q, hidden]
    attended: torch.Tensor,  # [batch_size, heads, q, head_dim]
    o_weight: torch.Tensor,
    o_bias: torch.Tensor | None,
    norm_weight: torch.Tensor,
    eps: float,
    gate_up_weight: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The layer's output [batch_size, q, hidden]: attention projected and added, then the MLP block."""
    batch_size, q, _ = hidden.shape
    hidden = hidden + F.linear(attended.transpose(1, 2).reshape(batch_size, q, -1), o_weight, o_bias)
    gate, up = F.linear(norm(hidden, norm_weight, eps), gate_up_weight).chunk(2, dim=-1)
    return hidden + F.linear(act(gate) * up, down_weight, down_bias)


def activation_function(act: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a function shared by all layers (a module per layer would be compiled per layer)."""
    if type(act).__name__ in {"SiLU", "SiLUActivation"}:  # torch's, or transformers' own since 5.x
        return F.silu
    return act


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
