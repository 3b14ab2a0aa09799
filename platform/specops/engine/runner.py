"""`ModelRunner`: one causal LM (target or draft) with its KV caches, forwards and CUDA graphs.

A forward appends `q` tokens per sequence to a `kv_cache.KVCache` (see there for the slot scheme)
through `forward.model_forward`. On a CUDA device every (batch, q) shape of a computation is captured
once as a CUDA graph (`graphs.CapturedGraph`) and replayed; prefill and catch-up then run in chunks
of `APPEND_WIDTHS`, so that they replay too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from specops import errors
from specops.engine import kernels, phases
from specops.engine.batch import left_padded
from specops.engine.config import ExecutionSettings
from specops.engine.forward import model_forward
from specops.engine.fused_layer import FusedLayer
from specops.engine.graphs import CapturedGraph
from specops.engine.kv_cache import KVCache
from specops.engine.transfer import to_device

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

APPEND_WIDTHS: tuple[int, ...] = (8, 32, 128)
"""Chunk widths of prefill and catch-up on the fixed-shape path: with CUDA graphs every chunk is a
replay, so admitting a prompt into a running batch costs a few replays instead of an eager forward
(whose host time, hundreds of small kernels, is many times its device time)."""


def prefilled_alone(batch_size: int, rows: int) -> bool:
    """Whether new prompts in `rows` rows of a batch are prefilled each alone (a few of them), not by
    batch-wide chunks that compute every row (fixed-shape path, `ModelRunner.append`)."""
    return rows <= batch_size // 4


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
        self.fused: list[FusedLayer] | None = None
        self._compiled: kernels.Kernels | None = None
        if self.use_graphs:
            self.fuse(compiled=compiled)
        self._caches: dict[int, KVCache] = {}
        self._scratch_cache: KVCache | None = None
        self._graphs: dict[tuple, CapturedGraph] = {}
        # compiled code runs only while a CUDA graph records (and in its first, real call): called
        # eagerly, as prefill is, its guards and wrappers cost more host time than the plain functions
        # (tests set it on a CPU to cover the compiled code)
        self.run_compiled = False
        self.rope_table = self._rope_table()

    @classmethod
    def for_settings(cls, model: torch.nn.Module, execution: ExecutionSettings) -> ModelRunner:
        """A runner of `model` that captures and compiles as `execution` says."""
        return cls(model, cuda_graphs=execution.cuda_graphs, compiled=execution.compiled)

    def kernel(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` as this runner's graphs run their step's work around the forward: compiled with the
        forward's own kernels (`run_compiled`), else itself. `fn` must be pure."""
        return kernels.compiled(fn) if self.forward_kernels() is not kernels.PLAIN_KERNELS else fn

    def forward_kernels(self) -> kernels.Kernels:
        """The forward's pure functions: compiled while a graph records (on the fused path), else plain."""
        return self._compiled if self.run_compiled and self._compiled is not None else kernels.PLAIN_KERNELS

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    @property
    def graphs(self) -> Mapping[tuple, CapturedGraph]:
        """The captured graphs by capture key (kind, batch size, shape…), read-only."""
        return MappingProxyType(self._graphs)

    def fuse(self, *, compiled: bool = False) -> None:
        """Use the fused layer path (tests call it on a CPU to cover it); `compiled` runs its two
        elementwise-heavy halves (and the step's inputs) through torch.compile."""
        layers = self.model.model.layers[: self.num_layers]
        if not any(hasattr(layer.self_attn, "q_norm") for layer in layers):
            self.fused = [FusedLayer.of(layer) for layer in layers]
        if compiled:
            self._compiled = kernels.compiled_kernels()

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
    @phases.named("forward")
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
            return self.forward_slots(cache, ids, valid, start, kv_len=kv_len, logits=logits)

        return self.replay(("forward", batch_size, q, logits), cache, compute, [input_ids, input_valid], start)

    @phases.named("greedy_rounds")
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
        graph = self._graph(key, cache, lambda: CapturedGraph(self, cache, compute, inputs))
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

    @phases.named("append_chunks")
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

    @phases.named("prefill_alone")
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

    @phases.named("tidy")
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

    def _graph(self, key: tuple, cache: KVCache, make: Callable[[], CapturedGraph]) -> CapturedGraph:
        key = (*key, id(cache))  # the scratch cache and a call's cache of one row have graphs each
        graph = self._graphs.get(key)
        if graph is None or graph.cache is not cache:
            graph = self._graphs[key] = make()
        return graph

    #: The model over slots [start, start + q) already reserved, as device work alone: what a `replay`
    #: computation runs (`forward.model_forward`).
    forward_slots = model_forward

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
            logits = self.forward_slots(cache, ids, valid, start, kv_len=kv_len, last=True)
            tokens.append(self.kernel(kernels.last_argmax)(logits))
            if round_index + 1 < num_rounds:
                start = start + ids.shape[1]
                ids, valid = tokens[-1][:, None], active[:, None]
        return torch.stack(tokens, dim=1)  # [batch_size, num_rounds]


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
