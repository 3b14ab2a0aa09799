"""The engine's KV cache: a slot array shared by the batch, one validity mask per sequence.

Every forward writes its `q` new tokens into the same slots `[length, length + q)` for all sequences;
a per-sequence validity mask hides the slots a sequence does not own (padding of ragged prompts,
rejected draft tokens). Trimming after a rejection moves `length` back to the last slot any sequence
still owns, so nothing is re-encoded. When the holes would overflow the capacity the cache is
compacted. The one exception to the shared slots: a prompt admitted alone into a running batch is
copied into the last slots in use (its row owns none of them). Positions (RoPE) are per sequence: the
count of its valid tokens, so padding and holes never shift a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specops.engine import phases


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

    @phases.named("compact")
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
