"""Forward passes of a Hugging Face Llama-family model over the engine's own KV cache.

The cache is a slot array shared by the batch. Every forward writes its `q` new tokens into the same
slots `[length, length + q)` for all sequences; a per-sequence validity mask hides the slots a
sequence does not own (padding of ragged prompts, rejected draft tokens). Trimming after a rejection
moves `length` back to the last slot any sequence still owns, so nothing is re-encoded. When the
holes would overflow the capacity the cache is compacted. The one exception to the shared slots: a
prompt admitted alone into a running batch is copied into the last slots in use (its row owns none
of them). Positions (RoPE) are per sequence: the count of its valid tokens, so padding and holes
never shift a sequence.

Owning the forward (instead of calling `model(...)`) keeps the engine independent of the cache API,
which changes between transformers releases, and lets a CUDA device replay each (batch, q) shape as
a CUDA graph.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from specops import errors
from specops.engine.batch import left_padded
from specops.engine.transfer import to_device

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

APPEND_WIDTHS: tuple[int, ...] = (8, 32, 128)
"""Chunk widths of prefill and catch-up on the fixed-shape path: with CUDA graphs every chunk is a
replay, so admitting a prompt into a running batch costs a few replays instead of an eager forward
(whose host time, hundreds of small kernels, is many times its device time)."""


@dataclass
class KVCache:
    """Keys and values of one model for one batch; see the module docstring for the slot scheme."""

    kv: torch.Tensor  # [2 (keys, values), num_layers, batch_size, num_kv_heads, capacity, head_dim]
    valid: torch.Tensor  # [batch_size, capacity] bool, slot holds a token of that sequence
    seq_lens: torch.Tensor  # [batch_size] long, valid tokens per sequence (next position)
    length: int = 0  # slots in use

    @property
    def keys(self) -> torch.Tensor:
        """[num_layers, batch_size, num_kv_heads, capacity, head_dim]; `keys[layer]` is one layer's."""
        return self.kv[0]

    @property
    def values(self) -> torch.Tensor:
        return self.kv[1]

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def capacity(self) -> int:
        return self.valid.shape[1]

    def reset(self) -> None:
        self.valid.zero_()
        self.seq_lens.zero_()
        self.length = 0

    def row(self, row: int) -> KVCache:
        """A one-sequence view of `row` (writes through to this cache), at the same `length`."""
        return KVCache(
            kv=self.kv[:, :, row : row + 1],
            valid=self.valid[row : row + 1],
            seq_lens=self.seq_lens[row : row + 1],
            length=self.length,
        )

    def clear_row(self, row: int) -> None:
        """Forget everything of sequence `row` (a new sequence takes the row)."""
        self.valid[row] = False
        self.seq_lens[row] = 0

    def drop(self, start: torch.Tensor, keep: torch.Tensor) -> None:
        """After forwards that wrote slots `[start, start + q)`, keep only the marked ones.

        start: [1] long (a tensor, so that a CUDA graph can replay this for any window);
        keep: [batch_size, q] bool, True for slots the sequence keeps (rejection drops a suffix).
        Device work only: the caller, once it has read the verifier's decision on the host, moves
        `length` back to the window's last kept slot (`trim`).
        """
        self.set_window(*window_kept(self.valid, start, keep))

    def set_window(self, slots: torch.Tensor, window: torch.Tensor, dropped: torch.Tensor) -> None:
        """Apply `window_kept`'s result: the window's valid marks [batch_size, q], `dropped` [batch_size]."""
        self.seq_lens -= dropped
        self.valid.index_copy_(1, slots, window)

    def trim(self, start: int, used: int) -> None:
        """Slots in use end `used` slots after `start` (the last one any sequence kept)."""
        self.length = start + used

    def compact(self) -> None:
        """Move every sequence's valid slots to the front, removing holes."""
        counts = self.valid.sum(dim=1)  # [batch_size]
        new_length = int(counts.max()) if counts.numel() else 0
        order = torch.argsort((~self.valid[:, : self.length]).to(torch.int8), dim=1, stable=True)
        index = order[:, :new_length]  # [batch_size, new_length]
        for tensor in self.kv:  # keys, then values: [num_layers, batch_size, kv_heads, capacity, head_dim]
            layers, _, heads, _, head_dim = tensor.shape
            gather_index = index[None, :, None, :, None].expand(layers, -1, heads, -1, head_dim)
            tensor[:, :, :, :new_length] = torch.gather(tensor[:, :, :, : self.length], 3, gather_index)
        slots = torch.arange(self.capacity, device=self.valid.device)
        self.valid.copy_(slots[None, :] < counts[:, None])
        self.length = new_length


def prefilled_alone(batch_size: int, rows: int) -> bool:
    """Whether new prompts in `rows` rows of a batch are prefilled each alone (a few of them), not by
    batch-wide chunks that compute every row (fixed-shape path, `ModelRunner.append`)."""
    return rows <= batch_size // 4


def window_kept(
    valid: torch.Tensor,  # [batch_size, capacity] bool, the cache's slots
    start: torch.Tensor,  # [1] long, the window's first slot
    keep: torch.Tensor,  # [batch_size, q] bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`KVCache.drop` without the writes (pure, so it can be compiled): the window's slots [q], its
    valid marks once the unmarked slots are dropped [batch_size, q], the slots each sequence drops."""
    slots = start + torch.arange(keep.shape[1], device=keep.device)
    window = valid.index_select(1, slots)
    return slots, window & keep, (window & ~keep).sum(dim=1)


class ModelRunner:
    """One causal LM (target or draft) with forwards over a `KVCache`.

    Supports the Llama family as laid out by transformers (llama, mistral, qwen2, qwen3).
    """

    def __init__(self, model: torch.nn.Module, *, cuda_graphs: bool = True, compiled: bool = True) -> None:
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise errors.InvalidInput(
                f"model type {config.model_type!r} is not supported by the engine "
                f"(supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
            )
        self.model = model.eval()
        self.config = config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vocab_size: int = model.get_output_embeddings().weight.shape[0]
        self.num_layers: int = config.num_hidden_layers
        self.num_heads: int = config.num_attention_heads
        self.num_kv_heads: int = getattr(config, "num_key_value_heads", None) or self.num_heads
        self.head_dim: int = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.max_context: int = config.max_position_embeddings
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        # attend over the whole capacity, as CUDA graphs must (tests set it on a CPU to cover that path)
        self.attend_capacity = self.use_graphs
        # on a GPU, fewer and larger kernels: q/k/v and gate/up projections as one matrix each
        # (copies of those weights), one rotary pass for q and k, and (`compiled`) the elementwise
        # work around the matrix products fused by torch.compile
        self.fused: list[_FusedLayer] | None = None
        self._compiled: _Kernels | None = None
        if self.use_graphs:
            self.fuse(compiled=compiled)
        self._caches: dict[int, KVCache] = {}
        self._scratch_cache: KVCache | None = None
        self._graphs: dict[tuple, _CapturedGraph] = {}
        # compiled code runs only while a CUDA graph records (and in its first, real call): called
        # eagerly, as prefill is, its guards and wrappers cost more host time than the plain functions
        # (tests set it on a CPU to cover the compiled code)
        self.run_compiled = False
        self._rope = self._rope_table()

    def kernel(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` as this runner's graphs run their step's work around the forward: compiled with the
        forward's own kernels (`run_compiled`), else itself. `fn` must be pure."""
        return _compiled(fn) if self._kernels() is not _PLAIN_KERNELS else fn

    def _kernels(self) -> _Kernels:
        """The forward's pure functions: compiled while a graph records (on the fused path), else plain."""
        return self._compiled if self.run_compiled and self._compiled is not None else _PLAIN_KERNELS

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def fuse(self, *, compiled: bool = False) -> None:
        """Use the fused layer path (tests call it on a CPU to cover it); `compiled` runs its two
        elementwise-heavy halves (and the step's inputs) through torch.compile."""
        layers = self.model.model.layers[: self.num_layers]
        if not any(hasattr(layer.self_attn, "q_norm") for layer in layers):
            self.fused = [_FusedLayer.of(layer) for layer in layers]
        if compiled:
            self._compiled = _compiled_kernels()

    @torch.inference_mode()
    def _rope_table(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin [max_context, head_dim] of every position, from the model's own rotary module
        (the same numbers it computes per call), or None for RoPE types that depend on the sequence."""
        rotary = self.model.model.rotary_emb
        if getattr(rotary, "rope_type", "default") in {"dynamic", "longrope"}:
            return None
        positions = torch.arange(self.max_context, device=self.device)[None]
        probe = torch.zeros(1, 1, self.head_dim, device=self.device, dtype=self.dtype)
        cos, sin = rotary(probe, positions)
        return cos[0], sin[0]

    # -- cache -------------------------------------------------------------------------------
    def cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty cache for `batch_size` sequences.

        With CUDA graphs, one cache per batch size is kept (the graphs point into it) and reused while
        big enough; memory therefore grows with the number of distinct batch sizes served.
        """
        cache = self._caches.get(batch_size)
        if cache is None or cache.capacity < capacity:
            self._forget(cache)
            cache = self._new_cache(batch_size, capacity)
            if self.use_graphs:
                self._caches[batch_size] = cache
        cache.reset()
        return cache

    def _new_cache(self, batch_size: int, capacity: int) -> KVCache:
        shape = (2, self.num_layers, batch_size, self.num_kv_heads, capacity, self.head_dim)
        return KVCache(
            kv=torch.zeros(shape, device=self.device, dtype=self.dtype),
            valid=torch.zeros(batch_size, capacity, device=self.device, dtype=torch.bool),
            seq_lens=torch.zeros(batch_size, device=self.device, dtype=torch.long),
        )

    def _forget(self, cache: KVCache | None) -> None:
        """Drop the graphs that point into `cache` (it is being replaced)."""
        self._graphs = {key: g for key, g in self._graphs.items() if g.cache is not cache}

    def _scratch(self, capacity: int) -> KVCache:
        """The one-sequence cache in which `append` prefills a new sequence alone (kept, as its graphs)."""
        if self._scratch_cache is None or self._scratch_cache.capacity < capacity:
            self._forget(self._scratch_cache)
            self._scratch_cache = self._new_cache(1, capacity)
        self._scratch_cache.reset()
        return self._scratch_cache

    def warm_up_prefill(self, batch_size: int, capacity: int) -> None:
        """Capture the prefill chunks of a `batch_size` cache of `capacity` slots, and the scratch ones."""
        for cache in (self.cache(batch_size, capacity), self._scratch(capacity)):
            for width in APPEND_WIDTHS:
                chunk = torch.zeros(cache.batch_size, width, dtype=torch.long, device=self.device)
                self.forward(cache, chunk, chunk == 0, logits=False)
                cache.reset()

    # -- forward -----------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        cache: KVCache,
        input_ids: torch.Tensor,  # [batch_size, q] long
        input_valid: torch.Tensor,  # [batch_size, q] bool, False for padding
        *,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Append `q` tokens per sequence to the cache and return their logits [batch_size, q, vocab].

        Padding tokens get a slot too (hidden from every other token); their logits are garbage.
        """
        batch_size, q = input_ids.shape
        start = self.reserve(cache, batch_size, q)

        def compute(ids: torch.Tensor, valid: torch.Tensor, start: torch.Tensor, kv_len: int | None):
            return self._forward(cache, ids, valid, start, kv_len=kv_len, logits=logits)

        return self.replay(("forward", batch_size, q, logits), cache, compute, [input_ids, input_valid], start)

    @torch.inference_mode()
    def greedy_rounds(self, cache: KVCache, staged: torch.Tensor, num_rounds: int) -> torch.Tensor:
        """Greedy autoregressive drafting: `num_rounds` argmax tokens per sequence [batch_size, num_rounds].

        staged: [batch_size, 2 q + 1] long, the first round's `q` inputs as `left_padded_rows` lays
        them out (ids, valid marks, then whether the sequence is running), in pinned host memory or
        on the device. Feeds the first round's inputs, then each new token but the last
        (q + num_rounds - 1 slots). On a CUDA device the whole loop is one graph replay.
        """
        batch_size, width = staged.shape
        q = width // 2
        start = self.reserve(cache, batch_size, q + num_rounds - 1)

        def compute(staged: torch.Tensor, start: torch.Tensor, kv_len: int | None) -> torch.Tensor:
            ids, valid, active = staged[:, :q], staged[:, q : 2 * q].bool(), staged[:, 2 * q].bool()
            return self._greedy_rounds(cache, ids, valid, active, start, num_rounds, kv_len=kv_len)

        return self.replay(("rounds", batch_size, q, num_rounds), cache, compute, [staged], start)

    def replay(
        self,
        key: tuple,
        cache: KVCache,
        compute: Callable[..., torch.Tensor | None],
        inputs: list[torch.Tensor],
        start: int,
    ) -> torch.Tensor | None:
        """`compute(*inputs, start, kv_len)`: device work on `cache` from slot `start` (a [1] tensor),
        attending over `kv_len` slots (None: the capacity).

        With CUDA graphs, captured once per `key` and cache (its first call runs it), then replayed:
        the inputs (on the device, or in pinned host memory) are copied into the graph's own.
        Otherwise called directly. `compute` must not depend on anything but its arguments, `cache`
        and the models' weights.
        """
        if not self.use_graphs:
            start_tensor = to_device([start], torch.long, self.device)
            kv_len = None if self.attend_capacity else cache.length
            return compute(*(x.to(self.device, non_blocking=True) for x in inputs), start_tensor, kv_len)
        graph = self._graph(key, cache, lambda: _CapturedGraph(self, cache, compute, inputs))
        return graph.run(inputs, start)

    @staticmethod
    def make_room(cache: KVCache, num_slots: int) -> bool:
        """Compact now if `num_slots` more slots would not fit; whether they fit."""
        if cache.length + num_slots > cache.capacity:
            cache.compact()
        return cache.length + num_slots <= cache.capacity

    @classmethod
    def ensure_room(cls, cache: KVCache, num_slots: int) -> None:
        """`make_room`, or an error: `num_slots` more slots do not fit (so several forwards stay contiguous)."""
        if not cls.make_room(cache, num_slots):
            raise errors.InvalidInput("sequence does not fit the KV cache; lower max_new_tokens")

    def append(
        self, cache: KVCache, sequences: list[list[int]], *, fresh: bool = False, end: int | None = None
    ) -> None:
        """Feed `sequences[i]` (possibly empty) to row i of `cache`, no logits (prefill, catch-up).

        On the fixed-shape path (CUDA graphs) in chunks of `APPEND_WIDTHS`, all rows at once; or, for a
        few `fresh` rows (new sequences, nothing cached yet) beside running ones, each alone at batch
        size 1, its slots then copied in: a batch-wide chunk would compute every row, most of them
        padding. Otherwise one batch-wide forward when the rows need similar amounts; row by row when
        padding to the longest would more than double the work.

        `end`: the rows go into slots before it (a step's window follows, not yet trimmed); only where
        `fits_before` says so.
        """
        longest = max(map(len, sequences), default=0)
        if longest == 0:
            return
        if end is not None and not self.fits_before(cache, sequences, end):
            raise ValueError(f"these sequences cannot be prefilled before slot {end}")
        if self.attend_capacity:
            rows = [row for row, tokens in enumerate(sequences) if tokens]
            if fresh and prefilled_alone(cache.batch_size, len(rows)):
                self._prefill_alone(cache, sequences, rows, end)
            else:
                self._append_chunks(cache, sequences)
            return
        needed = sum(map(len, sequences))
        if longest * len(sequences) <= 2 * needed:
            ids, valid = left_padded(sequences, self.device)
            self.forward(cache, ids, valid, logits=False)
            return
        self.ensure_room(cache, longest)
        start = cache.length
        for row, tokens in enumerate(sequences):
            if tokens:
                view = cache.row(row)
                ids, valid = left_padded([tokens], self.device)
                self.forward(view, ids, valid, logits=False)
        cache.length = start + longest

    def _append_chunks(self, cache: KVCache, sequences: list[list[int]]) -> None:
        widths = append_chunks(max(map(len, sequences)))
        ids, valid = left_padded(sequences, self.device, width=sum(widths))
        offset = 0
        for width in widths:
            self.forward(cache, ids[:, offset : offset + width], valid[:, offset : offset + width], logits=False)
            offset += width

    def fits_before(self, cache: KVCache, sequences: list[list[int]], end: int) -> bool:
        """Whether `append(cache, sequences, fresh=True, end=end)` can prefill these new sequences alone,
        into slots before `end` (the fixed-shape path, a few rows, enough slots)."""
        rows = [row for row, tokens in enumerate(sequences) if tokens]
        return (
            self.attend_capacity
            and prefilled_alone(cache.batch_size, len(rows))
            and sum(append_chunks(max(map(len, sequences), default=0))) <= end
        )

    def _prefill_alone(self, cache: KVCache, sequences: list[list[int]], rows: list[int], end: int | None) -> None:
        """Prefill each of `rows` (empty in `cache`) in the scratch cache, then copy its slots into the
        row: into the last slots in use (before `end`, if given) where they fit (an empty row owns
        none of them, so admitting a sequence beside running ones costs no slots), else into a window
        reserved after them."""
        width = sum(append_chunks(max(len(sequences[row]) for row in rows)))
        if end is None:
            self.ensure_room(cache, width)
            end = max(cache.length, width)
            cache.length = end
        start = end - width
        for row in rows:
            scratch = self._scratch(cache.capacity)
            self._append_chunks(scratch, [sequences[row]])
            used = scratch.length
            cache.kv[:, :, row, :, start : start + used] = scratch.kv[:, :, 0, :, :used]
            cache.valid[row, start : start + used] = scratch.valid[0, :used]
            cache.seq_lens[row] = scratch.seq_lens[0]

    def tidy(self, cache: KVCache, *, slack: int = 128) -> None:
        """Compact early when holes outnumber `slack` slots and attention spans only the used slots
        (no CUDA graphs): a long continuous-batching call otherwise attends over ever more holes."""
        if not self.attend_capacity and cache.length - int(cache.seq_lens.max()) > slack:
            cache.compact()

    def reserve(self, cache: KVCache, batch_size: int, num_slots: int) -> int:
        """The first of `num_slots` new slots for every sequence of `cache` (compacting first if full)."""
        if batch_size != cache.batch_size:
            raise ValueError(f"input batch {batch_size} != cache batch {cache.batch_size}")
        self.ensure_room(cache, num_slots)
        start = cache.length
        cache.length += num_slots
        return start

    def _graph(self, key: tuple, cache: KVCache, make):
        key = (*key, id(cache))  # the scratch cache and a call's cache of one row have graphs each
        graph = self._graphs.get(key)
        if graph is None or graph.cache is not cache:
            graph = self._graphs[key] = make()
        return graph

    def _greedy_rounds(
        self,
        cache: KVCache,
        input_ids: torch.Tensor,  # [batch_size, q]
        input_valid: torch.Tensor,  # [batch_size, q]
        active: torch.Tensor,  # [batch_size]
        start: torch.Tensor,  # [1] long
        num_rounds: int,
        *,
        kv_len: int | None,
    ) -> torch.Tensor:
        tokens = []
        ids, valid = input_ids, input_valid
        for round_index in range(num_rounds):
            logits = self._forward(cache, ids, valid, start, kv_len=kv_len, last=True)
            tokens.append(self.kernel(_last_argmax)(logits))
            if round_index + 1 < num_rounds:
                start = start + ids.shape[1]
                ids, valid = tokens[-1][:, None], active[:, None]
        return torch.stack(tokens, dim=1)  # [batch_size, num_rounds]

    def _forward(
        self,
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
        inner = self.model.model
        batch_size, q = input_ids.shape
        kv_len = kv_len or cache.capacity
        kernels = self._kernels()
        fold_heads = self.num_heads if self.fused is not None else 0
        slots, positions, mask, seq_lens, *rotary = kernels.step_inputs(
            cache.valid, cache.seq_lens, input_valid, start, kv_len, self.dtype, self._rope, fold_heads
        )
        cache.valid.index_copy_(1, slots, input_valid)
        cache.seq_lens.copy_(seq_lens)
        hidden = self.kernel(F.embedding)(input_ids, inner.embed_tokens.weight)  # [batch_size, q, hidden]
        if rotary:
            cos, sin = rotary  # [batch_size, 1, q, head_dim]
        else:
            cos, sin = (x[:, None] for x in inner.rotary_emb(hidden, positions))
        gqa = self.num_kv_heads != self.num_heads
        for layer_index, layer in enumerate(inner.layers[: self.num_layers]):
            if self.fused is not None:
                hidden = self.fused[layer_index].forward(
                    hidden,
                    cos,
                    sin,
                    cache.kv[:, layer_index],
                    slots,
                    mask,
                    kv_len,
                    self.num_heads,
                    self.num_kv_heads,
                    gqa,
                    kernels,
                )
                continue
            keys, values = cache.keys[layer_index], cache.values[layer_index]
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            qs = attn.q_proj(x).view(batch_size, q, -1, self.head_dim)
            ks = attn.k_proj(x).view(batch_size, q, -1, self.head_dim)
            vs = attn.v_proj(x).view(batch_size, q, -1, self.head_dim).transpose(1, 2)
            if hasattr(attn, "q_norm"):
                qs, ks = attn.q_norm(qs), attn.k_norm(ks)
            qs, ks = qs.transpose(1, 2), ks.transpose(1, 2)  # [batch_size, heads, q, head_dim]
            qs, ks = _rotary(qs, cos, sin), _rotary(ks, cos, sin)
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
        if self.fused is not None:
            head = self.model.lm_head
            out = kernels.head(hidden, inner.norm.weight, inner.norm.variance_epsilon, head.weight, head.bias)
        else:
            out = self.model.lm_head(inner.norm(hidden))
        return out.float() if float32 and not last else out  # [batch_size, q or 1, vocab]


def _step_inputs(
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
    as `_FusedLayer` attends them: [batch_size, heads * q, 1, kv_len], query position fastest."""
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


@dataclass
class _FusedLayer:
    """One decoder layer with concatenated projections (same maths as the transformers modules).

    Its work around attention is two pure functions of `_Kernels`, `before` (norm, q/k/v projection,
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
    def of(cls, layer: torch.nn.Module) -> _FusedLayer:
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
            act=_functional(mlp.act_fn),
            scaling=attn.scaling,
        )

    def forward(
        self,
        hidden: torch.Tensor,  # [batch_size, q, hidden]
        cos: torch.Tensor,  # [batch_size, 1, q, head_dim]
        sin: torch.Tensor,  # [batch_size, 1, q, head_dim]
        kv: torch.Tensor,  # [2 (keys, values), batch_size, kv_heads, capacity, head_dim], the layer's cache
        slots: torch.Tensor,  # [q]
        mask: torch.Tensor,  # [batch_size, heads * q or 1, 1, kv_len], as `_step_inputs` folds it
        kv_len: int,
        num_heads: int,
        num_kv_heads: int,
        gqa: bool,
        kernels: _Kernels,
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


def _norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as transformers computes it: in float32, cast back, then scaled."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _attention_inputs(
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
    qkv = F.linear(_norm(hidden, norm_weight, eps), qkv_weight, qkv_bias)
    qkv = qkv.view(batch_size, q, num_heads + 2 * num_kv_heads, -1).transpose(1, 2)
    # rotary for queries and keys apart: each result has one use, into which it fuses (the folded
    # queries' copy, the keys and values' stack)
    queries = _rotary(qkv[:, :num_heads], cos, sin).reshape(batch_size, num_heads * q, 1, -1)
    keys = _rotary(qkv[:, num_heads : num_heads + num_kv_heads], cos, sin)
    return queries, torch.stack([keys, qkv[:, num_heads + num_kv_heads :]])


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


def _logits(
    hidden: torch.Tensor,  # [batch_size, q, hidden]
    norm_weight: torch.Tensor,
    eps: float,
    weight: torch.Tensor,  # [vocab, hidden]
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """The final norm and the LM head: logits [batch_size, q, vocab] in the model's dtype."""
    return F.linear(_norm(hidden, norm_weight, eps), weight, bias)


def _attention_output_and_mlp(
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
    gate, up = F.linear(_norm(hidden, norm_weight, eps), gate_up_weight).chunk(2, dim=-1)
    return hidden + F.linear(act(gate) * up, down_weight, down_bias)


class _Kernels(NamedTuple):
    """The pure functions of a forward: plain, or compiled (`_compiled_kernels`)."""

    step_inputs: Callable[..., tuple[torch.Tensor, ...]]
    before: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    after: Callable[..., torch.Tensor]
    head: Callable[..., torch.Tensor]


_PLAIN_KERNELS = _Kernels(_step_inputs, _attention_inputs, _attention_output_and_mlp, _logits)


@functools.cache
def _compiled_kernels() -> _Kernels:
    """`_PLAIN_KERNELS` through torch.compile: shapes symbolic, so every batch size, step width and
    model of a process shares a few compilations. Compiling happens at the first call of each shape
    family, which CUDA-graph capture runs eagerly before it records."""
    return _Kernels(*map(_compiled, _PLAIN_KERNELS))


@functools.cache
def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` through torch.compile, shapes symbolic."""
    _allow_recompiles()
    return torch.compile(fn, dynamic=True, fullgraph=True)


def _allow_recompiles() -> None:
    """Room for one compilation per shape family (batch or width 1 are specialised) of each model."""
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))


def _functional(act: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a function shared by all layers (a module per layer would be compiled per layer)."""
    if type(act).__name__ in {"SiLU", "SiLUActivation"}:  # torch's, or transformers' own since 5.x
        return F.silu
    return act


def _last_argmax(logits: torch.Tensor) -> torch.Tensor:
    """The last position's argmax [batch_size] of logits [batch_size, q, vocab]."""
    return logits[:, -1].argmax(dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def append_chunks(num_tokens: int) -> list[int]:
    """Widths (from `APPEND_WIDTHS`) of the chunks that feed `num_tokens` tokens: each the widest that
    is at most a third padding, the last the narrowest that holds what remains."""
    widths: list[int] = []
    left = num_tokens
    while left > 0:
        width = next((w for w in reversed(APPEND_WIDTHS) if 4 * left >= 3 * w), None)
        if width is None:
            width = next(w for w in APPEND_WIDTHS if w >= left)
        widths.append(width)
        left -= width
    return widths


class _CapturedGraph:
    """A CUDA graph of one `ModelRunner.replay` computation for fixed shapes, attending over the
    whole capacity.

    The first call runs the computation for real (its cache writes are the step's), then records
    it; later calls copy inputs into static buffers and replay.
    """

    def __init__(
        self, runner: ModelRunner, cache: KVCache, compute: Callable[..., torch.Tensor | None], inputs: list
    ) -> None:
        self.runner, self.cache, self.compute = runner, cache, compute
        self.inputs = [torch.empty(x.shape, dtype=x.dtype, device=runner.device) for x in inputs]
        self.start = torch.zeros(1, dtype=torch.long, device=runner.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None

    def run(self, inputs: list[torch.Tensor], start: int) -> torch.Tensor | None:
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value, non_blocking=True)
        self.start.fill_(start)
        if self.graph is not None:
            self.graph.replay()
            return None if self.output is None else self.output.clone()
        # the real call happens on a side stream (also warming up), then the same work is recorded;
        # recording does not execute, so the cache holds exactly one copy of the writes
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        self.runner.run_compiled = True  # it compiles in the real call, before recording
        # no garbage collection while recording: collecting a dropped runner's graphs frees device
        # memory, which a capture forbids (it invalidates the recording)
        collecting = gc.isenabled()
        try:
            with torch.cuda.stream(stream):
                result = self.compute(*self.inputs, self.start, None)
                result = None if result is None else result.clone()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            gc.disable()
            with torch.cuda.graph(self.graph):  # a private memory pool per graph: replay order never matters
                self.output = self.compute(*self.inputs, self.start, None)
        finally:
            self.runner.run_compiled = False
            if collecting:
                gc.enable()
        return result
