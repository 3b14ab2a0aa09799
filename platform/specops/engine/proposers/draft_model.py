"""Draft-model proposer: a small causal LM sharing the target's tokenizer drafts k tokens autoregressively."""

from __future__ import annotations

import torch

from specops.engine import sampling
from specops.engine.batch import SequenceBatch, host_staged, left_padded, left_padded_rows
from specops.engine.proposers.base import Proposal
from specops.engine.runner import KVCache, ModelRunner

MAX_FIRST_ROUND = 4
"""Most tokens the first drafting round feeds (the step's new token, a draft token left over from a
full acceptance, and tokens decoded by up to two plain steps); CUDA graphs exist for 1..this."""


class DraftModelProposer:
    """Drafts with its own KV cache, trimmed to the accepted prefix after each verification.

    The draft cache holds a prefix of each sequence; the rest (`tokens[i][cached:]`, usually the
    step's new token, plus the last draft token after a full acceptance) is fed in the first round.
    Greedy sequences draft the draft's argmax, sampled ones sample from the draft's processed
    distribution q, which the verifier needs.
    """

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.cache: KVCache | None = None
        self.cached: list[int] = []  # tokens of each sequence in the draft cache
        self._round_start = 0
        self._first_round = 0
        self._fed_first: list[int] = []

    def start(self, batch: SequenceBatch) -> None:
        """An empty draft cache: the prompts go in with the first draft (`_catch_up`), so a batch
        the governor decodes plainly throughout never runs the draft at all."""
        self.cache = self.runner.cache(batch.batch_size, batch.capacity)
        self.cached = [0] * batch.batch_size

    def admit(self, batch: SequenceBatch, row: int) -> None:
        """Forget the row's old sequence; the new prompt goes in with its first draft (`_catch_up`)."""
        assert self.cache is not None, "start() first"
        self.cache.clear_row(row)
        self.cached[row] = 0

    def propose(self, batch: SequenceBatch, num_tokens: list[int]) -> Proposal:
        assert self.cache is not None, "start() first"
        max_k = max(num_tokens)
        caught_up = self._catch_up(batch)
        pending = [
            tokens[cached:] if active else []
            for tokens, cached, active in zip(batch.tokens, self.cached, batch.active, strict=True)
        ]
        self._fed_first = [len(p) for p in pending]
        first_round = max(1, *self._fed_first)
        if batch.sampling.all_greedy:
            staged = host_staged(left_padded_rows(pending, flags=batch.active), torch.long, batch.device)
            draft_ids = self.runner.greedy_rounds(self.cache, staged, max_k)  # [batch_size, max_k]
            self._note_window(first_round, max_k)
            return Proposal(
                draft_token_ids=draft_ids,
                num_draft_tokens=list(num_tokens),
                draft_probs=None,
                catch_up_tokens=caught_up,
            )
        # [batch_size, first_round] ids and valid, [batch_size] active
        ids, valid, active = left_padded(pending, batch.device, flags=batch.active)
        self.runner.ensure_room(self.cache, first_round + max_k - 1)  # no compaction between rounds
        drafts, probs = [], []
        for round_index in range(max_k):
            logits = self.runner.forward(self.cache, ids, valid)[:, -1]  # [batch_size, vocab]
            token, q = self._choose(logits, batch)
            drafts.append(token)
            probs.append(q)
            if round_index + 1 < max_k:
                ids, valid = token[:, None], active[:, None]
        draft_ids = torch.stack(drafts, dim=1)  # [batch_size, max_k]
        self._note_window(first_round, max_k)
        return Proposal(
            draft_token_ids=draft_ids,
            num_draft_tokens=list(num_tokens),
            draft_probs=torch.stack(probs, dim=1),
            catch_up_tokens=caught_up,
        )

    def _catch_up(self, batch: SequenceBatch) -> int:
        """After plain steps the draft lags by several tokens: feed all but the last
        `MAX_FIRST_ROUND` in one forward outside the CUDA graphs, so the drafting rounds keep a first
        round of at most that many tokens (shapes captured once) instead of a new shape per lag.
        A lag of up to two plain steps thus costs no extra forward. Returns the tokens fed."""
        lagging = [
            tokens[cached:-MAX_FIRST_ROUND] if active else []
            for tokens, cached, active in zip(batch.tokens, self.cached, batch.active, strict=True)
        ]
        fed = sum(map(len, lagging))
        if fed == 0:
            return 0
        fresh = all(cached == 0 for cached, lag in zip(self.cached, lagging, strict=True) if lag)
        self.runner.append(self.cache, lagging, fresh=fresh)
        self.cached = [cached + len(lag) for cached, lag in zip(self.cached, lagging, strict=True)]
        return fed

    def _note_window(self, first_round: int, max_k: int) -> None:
        """Remember where this step's slots start (read after the forwards: they may compact the cache)."""
        self._round_start = self.cache.length - (first_round + max_k - 1)
        self._first_round = first_round

    @staticmethod
    def _choose(logits: torch.Tensor, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next draft token per sequence [batch_size] and, when sampling, q [batch_size, vocab]."""
        argmax = logits.argmax(dim=-1)
        if batch.sampling.all_greedy:
            return argmax, None
        q = sampling.probabilities(logits[:, None], batch.sampling)[:, 0]
        return torch.where(batch.sampling.greedy, argmax, batch.rng.sample(q)), q

    def settle(self, proposal: Proposal, num_accepted: torch.Tensor) -> None:
        """Drop the rejected drafts from the draft cache (device work, queued before the host syncs).

        num_accepted: [batch_size] long, the verifier's decision, still on the device (0 for a row
        that did not draft).
        """
        assert self.cache is not None
        fed_drafts = proposal.max_k - 1  # d_1..d_{max_k-1} went through the draft; d_max_k did not
        if fed_drafts <= 0:
            return
        # the window: the first round's inputs (all kept), then d_1..d_{max_k-1} (kept while accepted)
        self._drop_rejected(num_accepted, self._round_start + self._first_round, fed_drafts)

    def _drop_rejected(self, num_accepted: torch.Tensor, start: int, fed_drafts: int) -> None:
        cache = self.cache

        def compute(num_accepted: torch.Tensor, start: torch.Tensor, kv_len: int | None) -> None:
            columns = torch.arange(fed_drafts, device=num_accepted.device)
            cache.drop(start, columns[None, :] < num_accepted.clamp(max=fed_drafts)[:, None])

        self.runner.replay(("settle", cache.batch_size, fed_drafts), cache, compute, [num_accepted], start)

    def warm_up(self, batch_size: int, capacity: int, max_k: int) -> None:
        """Capture the CUDA graphs of drafting up to `max_k` tokens at `batch_size` (prefill, the
        drafting rounds, the drop of rejected drafts)."""
        self.runner.warm_up_prefill(batch_size, capacity)
        self.cache = self.runner.cache(batch_size, capacity)
        for first_round in range(1, MAX_FIRST_ROUND + 1):
            staged = torch.ones(batch_size, 2 * first_round + 1, dtype=torch.long, device=self.runner.device)
            for rounds in range(1, max_k + 1):
                self.runner.greedy_rounds(self.cache, staged, rounds)
                self.cache.reset()
        for fed_drafts in range(1, max_k):
            self._drop_rejected(torch.zeros(batch_size, dtype=torch.long, device=self.runner.device), 0, fed_drafts)
        self.cache.reset()

    def commit(self, batch: SequenceBatch, proposal: Proposal, num_accepted: list[int]) -> None:
        assert self.cache is not None
        fed_drafts = proposal.max_k - 1
        if fed_drafts >= 0:
            # the rows that drafted this step (a row that stopped during it still kept its slots)
            drafted = [n > 0 for n in proposal.num_draft_tokens]
            kept_drafts = [min(n, fed_drafts) if d else 0 for n, d in zip(num_accepted, drafted, strict=True)]
            self.cache.trim(self._round_start, self._first_round + max(kept_drafts))
            self.cached = [
                cached + fed + kept for cached, fed, kept in zip(self.cached, self._fed_first, kept_drafts, strict=True)
            ]
        self.runner.tidy(self.cache)  # holes left by rejected drafts (a no-op with CUDA graphs)
