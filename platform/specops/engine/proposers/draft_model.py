"""Draft-model proposer: a small causal LM sharing the target's tokenizer drafts k tokens autoregressively."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specops import errors
from specops.engine import phases, sampling
from specops.engine.batch import SequenceBatch, left_padded, left_padded_rows
from specops.engine.config import SpeculationConfig
from specops.engine.kv_cache import KVCache, window_kept
from specops.engine.proposers.base import Proposal
from specops.engine.runner import ModelRunner
from specops.engine.timing import PhaseClock
from specops.engine.transfer import host_staged, to_device

MAX_FIRST_ROUND = 4
"""Most tokens the first drafting round feeds (the step's new token, a draft token left over from a
full acceptance, and tokens decoded by up to two plain steps); CUDA graphs exist for 1..this."""


@dataclass
class _Ahead:
    """Drafts started during the step before (`DraftModelProposer.prefetch`)."""

    draft_token_ids: torch.Tensor  # [batch_size, max_k]
    clock: PhaseClock  # their device time
    round_start: int  # first slot of their window: 2 first-round slots, then max_k - 1 fed drafts
    joined: list[bool]  # sequences whose first round fed their last prompt token too (just admitted)


class DraftModelProposer:
    """Drafts with its own KV cache, trimmed to the accepted prefix after each verification.

    The draft cache holds a prefix of each sequence; the rest (`tokens[i][cached:]`, usually the
    step's new token, plus the last draft token after a full acceptance) is fed in the first round.
    Greedy sequences draft the draft's argmax, sampled ones sample from the draft's processed
    distribution q, which the verifier needs.

    In steady greedy drafting the next step's drafts are started before the host reads the
    verifier's decision (`prefetch`): their first round is built on the device from that decision, so
    the drafting runs while the host commits the step, and no host work precedes its launch.
    """

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.cache: KVCache | None = None
        self.cached: list[int] = []  # tokens of each sequence in the draft cache
        self._round_start = 0
        self._first_round = 0
        self._fed_first: list[int] = []  # first-round tokens of each sequence this step
        self._ahead: _Ahead | None = None

    @classmethod
    def build(
        cls, config: SpeculationConfig, *, target: ModelRunner, draft: torch.nn.Module | None
    ) -> DraftModelProposer:
        """The proposer of `draft`, run as `config.execution` says; it must share the target's vocabulary."""
        if draft is None:
            raise errors.InvalidInput("proposer 'draft' needs a draft model")
        _check_vocabularies(target.model, draft)
        return cls(ModelRunner.for_settings(draft, config.execution))

    @property
    def num_graphs(self) -> int:
        return self.runner.num_graphs

    def start(self, batch: SequenceBatch) -> None:
        """An empty draft cache: the prompts go in with the first draft (`_catch_up`), so a batch
        the governor decodes plainly throughout never runs the draft at all."""
        self.cache = self.runner.cache(batch.batch_size, batch.capacity)
        self.cached = [0] * batch.batch_size
        self._fed_first = [0] * batch.batch_size
        self._ahead = None

    def admit(self, batch: SequenceBatch, row: int) -> None:
        """Forget the row's old sequence; the new prompt goes in with its first draft (`_catch_up`),
        or, beside drafts made ahead, at its first step but its last token (`_prefill_admitted`).
        Drafts made ahead are not the new sequence's: it drafts nothing in its first step."""
        assert self.cache is not None, "start() first"
        self.cache.clear_row(row)
        self.cached[row] = 0
        self._fed_first[row] = 0

    @property
    def drafted_ahead(self) -> bool:
        return self._ahead is not None

    @phases.named("propose")
    def propose(self, batch: SequenceBatch, num_tokens: list[int]) -> Proposal:
        assert self.cache is not None, "start() first"
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            if batch.sampling.all_greedy:
                assert max(num_tokens) <= ahead.draft_token_ids.shape[1], "more drafts than were made ahead"
                return Proposal(
                    draft_token_ids=ahead.draft_token_ids,
                    # a sequence admitted since drafts nothing (fed nothing: its prompt is not in yet)
                    num_draft_tokens=[n if fed else 0 for n, fed in zip(num_tokens, self._fed_first, strict=True)],
                    draft_probs=None,
                    draft_clock=ahead.clock,
                    catch_up_tokens=self._prefill_admitted(batch, before=ahead.round_start),
                )
            self._forget(ahead)  # a sampled sequence was admitted: draft again, with probabilities
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

    def prefetch(self, batch: SequenceBatch, proposal: Proposal, decided: torch.Tensor, max_k: int) -> None:
        """Start the next step's `max_k` drafts now, before the host reads this step's decision.

        Only in steady greedy drafting: every running sequence drafted this step, so what it feeds
        next is known on the device: the token the target chose, after this step's last draft token
        where all drafts were accepted (that one never went through the draft). The first round is
        therefore 2 tokens wide, left-padded. A sequence in its first step (admitted, drafting
        nothing) whose draft cache holds its prompt but the last token feeds that token and the
        target's.
        """
        assert self.cache is not None
        k = proposal.max_k
        if k == 0 or not batch.sampling.all_greedy:
            return
        # a sequence that drafted nothing this step joins only if it was just admitted and its draft
        # cache holds its prompt but the last token (which its first round then feeds too)
        joined = [active and n == 0 for active, n in zip(batch.active, proposal.num_draft_tokens, strict=True)]
        if any(
            j and (self._fed_first[row] or self.cached[row] != len(batch.tokens[row]) - 1)
            for row, j in enumerate(joined)
        ):
            return  # it needs its own first round (its prompt did not fit before the window; the context ends)
        # after this step a sequence has at most k + 1 more tokens, and drafting feeds max_k - 1 beyond
        longest = max(len(tokens) for tokens, active in zip(batch.tokens, batch.active, strict=True) if active)
        if longest + k + max_k > self.runner.max_context or not self.runner.make_room(self.cache, max_k + 1):
            return  # a sequence is about to end
        accepted, output = decided[:, 0], decided[:, 1:]  # [batch_size], [batch_size, k + 1]
        full = (accepted == k).long()
        # per row: running, joined, and a joined sequence's last prompt token
        rows = [list(map(int, batch.active)), list(map(int, joined)), [tokens[-1] for tokens in batch.tokens]]
        running, joining, last = to_device(rows, torch.long, batch.device)
        chosen = output.gather(1, accepted[:, None])[:, 0]  # the target's token
        first = torch.where(joining.bool(), last, output[:, k - 1] * full)
        # [batch_size, 5] as `left_padded_rows` lays out 2 tokens: ids, valid marks, running
        staged = torch.stack([first, chosen, torch.maximum(full, joining) * running, running, running], dim=1)
        clock = PhaseClock(batch.device)
        clock.mark()
        draft_ids = self.runner.greedy_rounds(self.cache, staged, max_k)
        clock.mark()
        self._ahead = _Ahead(draft_ids, clock, round_start=self.cache.length - (max_k + 1), joined=joined)

    def _prefill_admitted(self, batch: SequenceBatch, *, before: int) -> int:
        """Prefill the prompts (but their last tokens) of sequences admitted since the last step, alone
        and into slots before `before` (drafts made ahead follow), so that the drafts made ahead at
        the end of this step include them. Where they do not fit there, they wait for `_catch_up`.
        Returns the tokens fed."""
        assert self.cache is not None
        new = [
            active and fed == 0 and cached == 0
            for active, fed, cached in zip(batch.active, self._fed_first, self.cached, strict=False)
        ]
        prompts = [tokens[:-1] if fresh else [] for tokens, fresh in zip(batch.tokens, new, strict=True)]
        if not any(prompts) or not self.runner.fits_before(self.cache, prompts, before):
            return 0
        self.runner.append(self.cache, prompts, fresh=True, end=before)
        self.cached = [cached + len(p) for cached, p in zip(self.cached, prompts, strict=True)]
        return sum(map(len, prompts))

    def _forget(self, ahead: _Ahead) -> None:
        """Undo drafts made ahead: none of their window's slots stays, so the tokens they fed are fed again."""
        width = 1 + ahead.draft_token_ids.shape[1]
        start = to_device([ahead.round_start], torch.long, self.runner.device)
        self.cache.drop(start, torch.zeros(self.cache.batch_size, width, dtype=torch.bool, device=start.device))
        self.cache.trim(ahead.round_start, 0)
        self._fed_first = [0] * self.cache.batch_size

    @phases.named("catch_up")
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

    @phases.named("settle")
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
        self._drop_rejected(self.cache, num_accepted, self._round_start + self._first_round, fed_drafts)

    def _drop_rejected(self, cache: KVCache, num_accepted: torch.Tensor, start: int, fed_drafts: int) -> None:
        def compute(num_accepted: torch.Tensor, start: torch.Tensor, kv_len: int | None) -> None:
            cache.set_window(*self.runner.kernel(_kept_drafts)(cache.valid, num_accepted, start, fed_drafts))

        self.runner.replay(("settle", cache.batch_size, fed_drafts), cache, compute, [num_accepted], start)

    def warm_up(self, batch_size: int, capacity: int, max_k: int) -> None:
        """Capture the CUDA graphs of drafting up to `max_k` tokens at `batch_size` (prefill, the
        drafting rounds, the drop of rejected drafts)."""
        self.runner.warm_up_prefill(batch_size, capacity)
        cache = self.runner.cache(batch_size, capacity)
        for first_round in range(1, MAX_FIRST_ROUND + 1):
            staged = torch.ones(batch_size, 2 * first_round + 1, dtype=torch.long, device=self.runner.device)
            for rounds in range(1, max_k + 1):
                self.runner.greedy_rounds(cache, staged, rounds)
                cache.reset()
        none_accepted = torch.zeros(batch_size, dtype=torch.long, device=self.runner.device)
        for fed_drafts in range(1, max_k):
            self._drop_rejected(cache, none_accepted, 0, fed_drafts)
        cache.reset()

    @phases.named("commit")
    def commit(self, batch: SequenceBatch, proposal: Proposal, num_accepted: list[int]) -> None:
        assert self.cache is not None
        fed_drafts = proposal.max_k - 1
        if fed_drafts >= 0:
            # the rows that drafted this step (a row that stopped during it still kept its slots)
            drafted = [n > 0 for n in proposal.num_draft_tokens]
            kept_drafts = [min(n, fed_drafts) if d else 0 for n, d in zip(num_accepted, drafted, strict=True)]
            if self._ahead is None:  # else the next window already follows this one
                self.cache.trim(self._round_start, self._first_round + max(kept_drafts))
            self.cached = [
                cached + fed + kept for cached, fed, kept in zip(self.cached, self._fed_first, kept_drafts, strict=True)
            ]
        if self._ahead is None:
            self.runner.tidy(self.cache)  # holes left by rejected drafts (a no-op with CUDA graphs)
            return
        # the drafts made ahead fed each running sequence its chosen token, after its last draft token
        # when all of this step's were accepted (or its last prompt token when it just joined)
        self._fed_first = [
            (2 if n == proposal.max_k or joined else 1) if active else 0
            for n, active, joined in zip(num_accepted, batch.active, self._ahead.joined, strict=True)
        ]
        self._round_start, self._first_round = self._ahead.round_start, 2


def _kept_drafts(
    valid: torch.Tensor,  # [batch_size, capacity], the draft cache's slots
    num_accepted: torch.Tensor,  # [batch_size]
    start: torch.Tensor,  # [1], the fed drafts' first slot
    fed_drafts: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`window_kept` for the drafts fed to the draft model: each sequence keeps its accepted ones."""
    columns = torch.arange(fed_drafts, device=num_accepted.device)
    return window_kept(valid, start, columns[None, :] < num_accepted.clamp(max=fed_drafts)[:, None])


def _check_vocabularies(target: torch.nn.Module, draft: torch.nn.Module) -> None:
    target_vocab = target.get_output_embeddings().weight.shape[0]
    draft_vocab = draft.get_output_embeddings().weight.shape[0]
    if target_vocab != draft_vocab or target.config.vocab_size != draft.config.vocab_size:
        raise errors.InvalidInput(
            f"target and draft vocabularies differ ({target_vocab} vs {draft_vocab} tokens): "
            "a draft must share the target's tokenizer"
        )
