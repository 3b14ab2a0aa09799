"""What the target's attention costs per layer at decoding shapes, by way of computing it (CUDA graphs).

A greedy step attends `q` = k + 1 new tokens per sequence over the cache's whole capacity with an
additive mask (holes, padding, causality). PyTorch picks cuDNN's kernel, a different one for q = 1
than for q > 1; this times the alternatives the engine could use, each captured in a CUDA graph of
16 calls (one per target layer) replayed back to back. The compiled variants (math, FlexAttention)
compile per shape and stop at dynamo's recompilation limit (8); their later rows hold the error:

    python -m benchmarks.engine_attention --out benchmarks/results/engine-attention-h100.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from benchmarks.harness import replay_us, save_rows

LAYERS = 16


def sdpa(qs: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PyTorch's choice of kernel."""
    return F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask)


def folded(qs: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The q query positions as q query heads per key head (grouped-query attention), one query each:
    the kernel of a one-token step, over q times the heads. The mask is per (head, position)."""
    batch_size, heads, q, head_dim = qs.shape
    out = F.scaled_dot_product_attention(
        qs.reshape(batch_size, heads * q, 1, head_dim),
        keys,
        values,
        attn_mask=mask.expand(batch_size, heads, q, mask.shape[-1]).reshape(batch_size, heads * q, 1, -1),
        enable_gqa=True,
    )
    return out.view(batch_size, heads, q, head_dim)


def math(qs: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Two batched matrix products around a softmax."""
    scores = qs @ keys.transpose(-1, -2) * qs.shape[-1] ** -0.5 + mask
    return torch.softmax(scores.float(), dim=-1).to(qs.dtype) @ values


_flex = torch.compile(flex_attention, dynamic=False)


def flex(qs: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FlexAttention (Triton, split over the keys for short queries), the mask added to the scores."""

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + mask[b, 0, q_idx, kv_idx]

    return _flex(qs, keys, values, score_mod=score_mod)


VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": sdpa,
    "sdpa_folded_gqa": folded,
    "math_compiled": torch.compile(math, dynamic=False, fullgraph=True),
    "flex_compiled": flex,
}


def time_variant(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], replays: int) -> float:
    """Device µs of one call, from a graph of `LAYERS` calls replayed back to back."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(LAYERS):
            fn(*inputs)
    return replay_us(graph, replays) / LAYERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--capacities", default="384,640")
    parser.add_argument("--replays", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("engine_attention.py times CUDA graphs: it needs a CUDA device")
    heads, head_dim = 16, 64  # the bench target's
    rows = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        for capacity in map(int, args.capacities.split(",")):
            for q in (1, 2, 3):
                bf16 = {"device": "cuda", "dtype": torch.bfloat16}
                qs = torch.randn(batch_size, heads, q, head_dim, **bf16)
                keys, values = (torch.randn(batch_size, heads, capacity, head_dim, **bf16) for _ in range(2))
                used = capacity * 3 // 4  # the step's slots near the end, holes before them
                allowed = (
                    torch.arange(capacity, device="cuda")[None, None, None, :]
                    <= used + torch.arange(q, device="cuda")[None, None, :, None]
                )
                mask = torch.where(allowed, 0.0, float("-inf")).to(torch.bfloat16).expand(batch_size, 1, q, capacity)
                mask = mask.contiguous()
                reference = sdpa(qs, keys, values, mask).float()
                row: dict = {"batch_size": batch_size, "capacity": capacity, "q": q}
                for name, fn in VARIANTS.items():
                    try:
                        error = (fn(qs, keys, values, mask).float() - reference).abs().max().item()
                        row[name] = {
                            "us": round(time_variant(fn, (qs, keys, values, mask), args.replays), 2),
                            "max_abs_error": round(error, 4),
                        }
                    except Exception as failure:  # a backend that does not take these shapes
                        row[name] = {"error": str(failure).splitlines()[0][:160]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    save_rows(rows, args.out, "cuda")


if __name__ == "__main__":
    main()
