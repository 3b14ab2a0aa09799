"""`SpeculativeEngine`: load a target (+ draft) pair and generate with speculative decoding.

One step for a batch:
  1. choose k per sequence (adaptive controller, batch-size cap, measured fallback);
  2. the proposer drafts up to k tokens per sequence;
  3. the target scores `[last, d_1..d_k]` for every sequence in one forward over its KV cache;
  4. the verifier keeps the accepted prefix plus one recovered or bonus token (verify.py);
  5. stop conditions cut the new tokens; caches drop the rejected slots.

On a GPU the host waits for the device once per step, for the verifier's decision. A greedy batch's
steps 3-4 and the cache's drop are one CUDA graph; the next step's k is chosen, and its drafts
started (`Proposer.prefetch`), before that wait, so the device drafts while the host commits.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from specops import errors
from specops.engine import verify
from specops.engine.adaptive import DraftLengthController, PairAcceptance, SpeculationGovernor
from specops.engine.batch import SequenceBatch
from specops.engine.config import SamplingParams, SpeculationConfig
from specops.engine.proposers import PROPOSERS, DraftModelProposer, PromptLookupProposer, Proposal
from specops.engine.runner import KVCache, ModelRunner, prefilled_alone, window_kept
from specops.engine.sampling import RowRandom, SamplingTensors, probabilities
from specops.engine.stats import RequestStats, StepStats
from specops.engine.timing import PhaseClock
from specops.engine.transfer import HostCopy, host_staged, to_device

FinishReason = Literal["stop", "length"]

GRAPH_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Batch shapes the engine runs with CUDA graphs; a call is padded up to the next (none beyond 256)."""


@dataclass
class GenerationResult:
    """One sequence's output: generated token ids (EOS / stop-completing token included)."""

    token_ids: list[int]
    finish_reason: FinishReason
    stats: RequestStats = field(default_factory=RequestStats)


class SpeculativeEngine:
    """Speculative decoding of a target model with a proposer; see the module docstring.

    Not thread-safe: one `generate` call at a time.
    """

    def __init__(
        self,
        target: torch.nn.Module,
        tokenizer: object,
        *,
        draft: torch.nn.Module | None = None,
        config: SpeculationConfig | None = None,
    ) -> None:
        self.config = config or SpeculationConfig()
        if self.config.proposer not in (*PROPOSERS, "none"):
            raise errors.InvalidInput(
                f"unknown proposer {self.config.proposer!r} (known: {', '.join([*PROPOSERS, 'none'])})"
            )
        self.tokenizer = tokenizer
        self.target = self._runner(target)
        self.max_context: int = self.target.max_context
        self.device = self.target.device
        self.eos_token_ids = _eos_token_ids(target, tokenizer)
        self.proposer: DraftModelProposer | PromptLookupProposer | None = None
        if self.config.proposer == "draft":
            if draft is None:
                raise errors.InvalidInput("proposer 'draft' needs a draft model")
            _check_vocabularies(target, draft)
            self.proposer = DraftModelProposer(self._runner(draft))
        elif self.config.proposer == "prompt_lookup":
            self.proposer = PromptLookupProposer(
                min_ngram=self.config.prompt_lookup_min, max_ngram=self.config.prompt_lookup_max
            )
        self.governor = SpeculationGovernor(self.config)
        self.pair_acceptance = PairAcceptance()  # where new sequences' acceptance estimates start

    @classmethod
    def load(
        cls,
        target_dir: str | Path,
        draft_dir: str | Path | None = None,
        config: SpeculationConfig | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
    ) -> SpeculativeEngine:
        """Load a pair from `save_pretrained` folders; raise InvalidInput for an incompatible pair."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or SpeculationConfig()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(target_dir))
        kwargs = {"dtype": dtype} if dtype is not None else {}
        target = AutoModelForCausalLM.from_pretrained(str(target_dir), **kwargs).to(device)
        draft = None
        if config.proposer == "draft":
            if draft_dir is None:
                raise errors.InvalidInput("proposer 'draft' needs draft_dir")
            draft_path = Path(draft_dir)
            if any((draft_path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
                draft_tokenizer = AutoTokenizer.from_pretrained(str(draft_path))
                if draft_tokenizer.get_vocab() != tokenizer.get_vocab():
                    raise errors.InvalidInput(f"draft {draft_dir} has a different tokenizer than target {target_dir}")
            draft = AutoModelForCausalLM.from_pretrained(str(draft_path), **kwargs).to(device)
        return cls(target, tokenizer, draft=draft, config=config)

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: Sequence[SamplingParams],
        on_tokens: Callable[[int, list[int]], None] | None = None,
        *,
        on_step: Callable[[StepStats], None] | None = None,
        on_finish: Callable[[int, GenerationResult], None] | None = None,
        admit: Callable[[list[int]], Sequence[tuple[Sequence[int], SamplingParams]]] | None = None,
        rows: int = 0,
        max_tokens: int = 0,
    ) -> list[GenerationResult]:
        """Generate for each prompt (token ids) with its own `SamplingParams`, batched.

        `on_tokens(row, new_ids)` is called after each step with the tokens the sequence in `row`
        gained, `on_finish(row, result)` when it finishes, `on_step(StepStats)` once per step with
        the batch's speculation figures. Prompt i starts in row i.

        Continuous batching: before each step `admit(free_rows)` may return new (prompt, params)
        pairs, which take the first of those rows (a row is free once its sequence finished; the
        call runs with `rows` rows at least). The call returns when no row is running and `admit`
        has nothing more; `max_tokens` bounds any admitted sequence's prompt + new tokens (it sizes
        the caches). Returns the results of the initial prompts.
        """
        prompts = [list(map(int, p)) for p in prompts]
        params = list(params)
        self._check_inputs(prompts, params)
        if not prompts and admit is None:
            return []
        requested = len(prompts)
        batch_size = self.padded_batch_size(max(requested, rows, 1))
        # padding rows: finished from the start (free for admission, else they only fill the shape)
        prompts += [[0]] * (batch_size - requested)
        params += [SamplingParams(max_new_tokens=1)] * (batch_size - requested)
        budgets = [self._budget(t, p) for t, p in zip(prompts, params, strict=True)]
        longest = max(len(p) + b for p, b in zip(prompts, budgets, strict=True))
        capacity = self._call_capacity(longest, max_tokens, continuous=admit is not None)
        batch = SequenceBatch(
            tokens=[list(p) for p in prompts],
            active=[row < requested for row in range(batch_size)],
            sampling=SamplingTensors.from_params(params, self.device),
            rng=RowRandom([p.seed for p in params], self.device),
            device=self.device,
            capacity=capacity,
        )
        results = [GenerationResult(token_ids=[], finish_reason="length") for _ in prompts]
        initial = results[:requested]
        controller = DraftLengthController(self.config, batch_size, prior_alpha=self.pair_acceptance.alpha)
        stop_window = [_stop_window(p) for p in params]

        cache = self.target.cache(batch_size, capacity)
        self.target.append(cache, [t[:-1] for t in batch.tokens], fresh=True)
        if self.proposer is not None:
            self.proposer.start(batch)

        clock = PhaseClock(self.device)
        # the cost of a step follows the rows computed (finished ones included), its gain the running ones
        cap = self.config.max_draft_length(batch_size) if self.proposer is not None else 0

        def choose_k() -> int:
            return self.governor.choose(batch_size, cap, lambda k: controller.gain(batch.active, k))

        # each step's K is chosen during the step before, so that the proposer can start drafting it
        # while the host reads that step's decision (`Proposer.prefetch`)
        planned_k: int | None = None

        # continuous batching: rows freed by the last step are admitted while this step is on the
        # device (its host work and prefill overlap the step), and run from the next step. Before a
        # step instead: while nothing runs, when more rows are free than are prefilled alone (one
        # batch-wide prefill then), and requests that did not fit before a step's window
        joining: list[int] = []  # rows admitted during the step (they run from the next one)
        held: list[tuple[int, list[int], SamplingParams]] = []

        def take() -> list[tuple[int, list[int], SamplingParams]]:
            free = [row for row, active in enumerate(batch.active) if not active]
            admitted = list(admit(free)) if admit is not None and free else []
            return [(row, [int(t) for t in prompt], p) for row, (prompt, p) in zip(free, admitted, strict=False)]

        def admit_in_step(proposal: Proposal) -> None:
            nonlocal joining, held
            requests = take()
            if not requests:
                return
            end = cache.length - (proposal.max_k + 1)  # the step's window starts there
            if not self.target.fits_before(cache, _prefixes(batch_size, requests), end):
                held = requests
                return
            self._admit(batch, cache, requests, params, budgets, stop_window, results, controller, end=end)
            joining = [row for row, _, _ in requests]

        def plan_next(proposal: Proposal, decided: torch.Tensor) -> None:
            nonlocal planned_k
            planned_k = choose_k()
            if self.proposer is not None and planned_k > 0 and self.config.draft_ahead:
                self.proposer.prefetch(batch, proposal, decided, planned_k)
            if admit is not None and self.config.admit_in_step:
                admit_in_step(proposal)

        step = 0
        while True:
            for row in joining:
                batch.active[row] = True
            joining = []
            # (nothing running is the case of every row free)
            alone = prefilled_alone(batch_size, batch.active.count(False))
            before_step = held or not alone or not self.config.admit_in_step
            if admit is not None and before_step:
                requests, held = held or take(), []
                if requests:
                    self._admit(batch, cache, requests, params, budgets, stop_window, results, controller)
            if not any(batch.active):
                break
            num_running = sum(batch.active)
            step_k = planned_k if planned_k is not None else choose_k()
            draft_k = controller.batch_length(batch.active, step_k)
            num_tokens = [
                # drafts stay inside the context; past the budget they are merely cut
                min(draft_k, self.max_context - len(batch.tokens[row])) if active else 0
                for row, active in enumerate(batch.active)
            ]
            captures_before = _captures(self.target, self.proposer)
            cost_started = self._cost_clock()
            clock.mark()
            if max(num_tokens) > 0 or (self.proposer is not None and self.proposer.drafted_ahead):
                proposal = self.proposer.propose(batch, num_tokens)
            else:
                proposal = Proposal(
                    draft_token_ids=torch.zeros(batch_size, 0, dtype=torch.long, device=self.device),
                    num_draft_tokens=[0] * batch_size,
                    draft_probs=None,
                )
            clock.mark()
            num_drafted = proposal.num_draft_tokens
            output_ids, num_accepted = self._verify_step(batch, cache, proposal, clock, plan_next)
            draft_seconds, target_seconds = clock.seconds()
            if proposal.draft_clock is not None:  # drafted during the step before
                draft_seconds = proposal.draft_clock.seconds()[0]

            emitted = [0] * batch_size
            ran = list(batch.active)
            for row in range(batch_size):
                if batch.active[row]:
                    emitted[row] = self._emit(
                        row,
                        batch,
                        results[row],
                        params[row],
                        budgets[row],
                        stop_window[row],
                        new_ids=output_ids[row][: num_accepted[row] + 1],
                        num_drafted=num_drafted[row],
                        num_accepted=num_accepted[row],
                        seconds=(draft_seconds, target_seconds),
                        controller=controller,
                        on_tokens=on_tokens,
                        on_finish=on_finish,
                    )
            drafted = [(d, a) for d, a in zip(num_drafted, num_accepted, strict=True) if d]
            self.pair_acceptance.update(sum(a for _, a in drafted), sum(a < d for d, a in drafted))
            if self.proposer is not None:
                self.proposer.commit(batch, proposal, num_accepted)
            self.target.tidy(cache)
            timed = not (proposal.catch_up_tokens or joining)  # a step's own work, nothing more
            if _captures(self.target, self.proposer) == captures_before and timed:
                cost = self._cost_clock() - cost_started
                self.governor.record(batch_size=batch_size, k=step_k, seconds=cost)
            if on_step is not None:
                on_step(
                    StepStats(
                        step=step,
                        batch_size=num_running,
                        num_draft_tokens=list(num_drafted),
                        num_accepted_tokens=[n if d else 0 for n, d in zip(num_accepted, num_drafted, strict=True)],
                        num_emitted_tokens=emitted,
                        draft_seconds=draft_seconds,
                        target_seconds=target_seconds,
                        speculative=proposal.max_k > 0,
                        running=ran,
                    )
                )
            step += 1
        return initial

    def _emit(
        self,
        row: int,
        batch: SequenceBatch,
        result: GenerationResult,
        params: SamplingParams,
        budget: int,
        stop_window: int,
        *,
        new_ids: list[int],
        num_drafted: int,
        num_accepted: int,
        seconds: tuple[float, float],
        controller: DraftLengthController,
        on_tokens: Callable[[int, list[int]], None] | None,
        on_finish: Callable[[int, GenerationResult], None] | None,
    ) -> int:
        """Commit one sequence's verified tokens (cut at its stops), count them; returns how many it kept."""
        new_ids, reason = self._apply_stops(result.token_ids, new_ids, params, budget, stop_window)
        result.token_ids.extend(new_ids)
        batch.tokens[row].extend(new_ids)
        result.stats.record(num_draft_tokens=num_drafted, num_accepted=num_accepted)
        result.stats.draft_seconds += seconds[0]
        result.stats.target_seconds += seconds[1]
        controller.update(row, num_drafted, num_accepted)
        if reason is not None:
            result.finish_reason = reason
            batch.active[row] = False
        if on_tokens is not None and new_ids:
            on_tokens(row, new_ids)
        if reason is not None and on_finish is not None:
            on_finish(row, result)
        return len(new_ids)

    def _admit(
        self,
        batch: SequenceBatch,
        cache: KVCache,
        requests: list[tuple[int, list[int], SamplingParams]],
        params: list[SamplingParams],
        budgets: list[int],
        stop_window: list[int],
        results: list[GenerationResult],
        controller: DraftLengthController,
        *,
        end: int | None = None,
    ) -> None:
        """Put new sequences into free rows (`requests`: row, prompt, params) and prefill their prompts.

        `end`: while a step whose window starts at that slot is on the device; the prompts go into
        slots before it, and the rows run from the next step (inactive until then).
        """
        self._check_inputs([prompt for _, prompt, _ in requests], [p for _, _, p in requests])
        for row, prompt, row_params in requests:
            budget = self._budget(prompt, row_params)
            if len(prompt) + budget > batch.capacity // 2:
                raise errors.InvalidInput(
                    f"an admitted sequence of {len(prompt)} + {budget} tokens exceeds the call's max_tokens"
                )
            params[row], budgets[row] = row_params, budget
            stop_window[row] = _stop_window(row_params)
            results[row] = GenerationResult(token_ids=[], finish_reason="length")
            batch.tokens[row], batch.active[row] = list(prompt), end is None
            batch.rng.reseed(row, row_params.seed)
            controller.reset(row, self.pair_acceptance.alpha)
            cache.clear_row(row)
            if self.proposer is not None:
                self.proposer.admit(batch, row)
        batch.sampling = SamplingTensors.from_params(params, self.device)
        self.target.append(cache, _prefixes(len(batch.tokens), requests), fresh=True, end=end)

    def _runner(self, model: torch.nn.Module) -> ModelRunner:
        return ModelRunner(model, cuda_graphs=self.config.cuda_graphs, compiled=self.config.compiled)

    def _budget(self, prompt: list[int], params: SamplingParams) -> int:
        """New tokens a sequence may have: its max_new_tokens, within the context."""
        return min(params.max_new_tokens, self.max_context - len(prompt))

    def padded_batch_size(self, batch_size: int) -> int:
        """Rows a call of `batch_size` sequences runs with: with CUDA graphs the next of
        `GRAPH_BATCH_SIZES` (graphs are captured per batch size, so a server meets a handful of shapes,
        not one per batch it forms); otherwise `batch_size` itself."""
        if not self.config.pad_batches and not self.target.use_graphs:
            return batch_size
        return next((size for size in GRAPH_BATCH_SIZES if size >= batch_size), batch_size)

    def _call_capacity(self, longest: int, max_tokens: int, *, continuous: bool) -> int:
        """KV slots of a call whose longest sequence has `longest` tokens; with continuous batching an
        admitted sequence's slots start after the longest running one's (see runner.py): room for both."""
        return self._capacity(2 * max(longest, max_tokens) if continuous else longest)

    def _capacity(self, max_tokens: int) -> int:
        """KV slots per sequence: the longest sequence plus room for one step's holes, rounded up
        so that calls of similar sizes share caches (and their CUDA graphs)."""
        max_k = self.config.num_speculative_tokens if self.proposer is not None else 0
        return -(-(max_tokens + 2 * (max_k + 1) + 16) // 128) * 128

    @torch.inference_mode()
    def warm_up(self, batch_sizes: Sequence[int], *, max_tokens: int, continuous: bool = False) -> None:
        """Capture the CUDA graphs of every step shape up front (no-op without graphs).

        max_tokens: the longest prompt + max_new_tokens the calls will use (sizes the caches);
        continuous: for calls that admit sequences (`admit`), whose caches are larger. One cache, and
        one set of graphs, is kept per batch size: the last warm-up of a batch size decides it.
        """
        if not self.target.use_graphs:
            return
        capacity = self._call_capacity(max_tokens, max_tokens, continuous=continuous)
        max_draft = self.config.num_speculative_tokens if self.proposer is not None else 0
        for batch_size in sorted({self.padded_batch_size(size) for size in batch_sizes}):
            cache = self.target.cache(batch_size, capacity)
            for max_k in range(max_draft + 1):
                ones = torch.ones(batch_size, max_k + 1, dtype=torch.bool, device=self.device)
                zeros = torch.zeros(batch_size, max_k + 1, dtype=torch.long, device=self.device)
                self.target.forward(cache, zeros, ones)  # the sampled steps' graph
                staged = torch.zeros(3, batch_size, dtype=torch.long, device=self.device)
                self._replay_verify_greedy(cache, staged, zeros[:, 1:])  # the greedy steps' graph
                cache.reset()
            self.target.warm_up_prefill(batch_size, capacity)
            if isinstance(self.proposer, DraftModelProposer):
                self.proposer.warm_up(batch_size, capacity, max_draft)
        # the models, graphs and compiled code live as long as the process: keep them out of later
        # garbage collections, whose full passes over them would stall decoding steps
        gc.collect()
        gc.freeze()

    def _verify_step(
        self,
        batch: SequenceBatch,
        cache: KVCache,
        proposal: Proposal,
        clock: PhaseClock,
        before_read: Callable[[Proposal, torch.Tensor], None],
    ) -> tuple[list[list[int]], list[int]]:
        """Target forward over `[last, drafts]`, verification, cache trim. Returns tokens and accepted counts.

        Everything up to reading the decision is queued on the device without waiting; the read is
        the step's one synchronisation, and waits for the decision alone: `before_read(proposal,
        decision on the device)` may queue more work first. A greedy batch's target side is one
        computation (`_verify_greedy`), on a GPU one CUDA graph.
        """
        staged = host_staged(
            [list(map(int, batch.active)), proposal.num_draft_tokens, [t[-1] for t in batch.tokens]],
            torch.long,
            self.device,
        )  # [3, batch_size]: active, drafted, last token
        if batch.sampling.all_greedy:
            packed, start = self._replay_verify_greedy(cache, staged, proposal.draft_token_ids)
        else:
            packed, start = self._verify_sampled(batch, cache, proposal, staged)
        clock.mark()
        if self.proposer is not None:
            self.proposer.settle(proposal, packed[:, 0])
        decision = HostCopy(packed)
        before_read(proposal, packed)
        rows = decision.get().tolist()
        num_accepted = [row[0] for row in rows]
        used = 1 + max(n for n, a in zip(num_accepted, batch.active, strict=True) if a) if any(batch.active) else 0
        cache.trim(start, used)
        return [row[1:] for row in rows], num_accepted

    def _replay_verify_greedy(
        self, cache: KVCache, staged: torch.Tensor, draft_token_ids: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """`_verify_greedy` over new slots of `cache`: (packed decision, first slot)."""
        batch_size, max_k = draft_token_ids.shape
        start = self.target.reserve(cache, batch_size, max_k + 1)

        def compute(staged: torch.Tensor, draft_token_ids: torch.Tensor, start: torch.Tensor, kv_len: int | None):
            return _verify_greedy(self.target, cache, staged, draft_token_ids, start, kv_len)

        packed = self.target.replay(("verify", batch_size, max_k), cache, compute, [staged, draft_token_ids], start)
        return packed, start

    def _verify_sampled(
        self, batch: SequenceBatch, cache: KVCache, proposal: Proposal, staged: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """Verification of a batch with sampled sequences (greedy rows stay greedy): (packed, first slot)."""
        ids, valid, num_draft = _step_tokens(staged.to(self.device, non_blocking=True), proposal.draft_token_ids)
        logits = self.target.forward(cache, ids, valid)  # [batch_size, max_k + 1, vocab]
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
        start_tensor = to_device([start], torch.long, self.device)
        return _decided(cache, start_tensor, valid, result), start

    def _apply_stops(
        self, generated: list[int], new_ids: list[int], params: SamplingParams, budget: int, window: int
    ) -> tuple[list[int], FinishReason | None]:
        """Cut `new_ids` at the first stop: EOS, a stop string, or the token budget."""
        room = budget - len(generated)
        for index, token in enumerate(new_ids):
            if index >= room:
                return new_ids[:index], "length"
            if token in self.eos_token_ids and not params.ignore_eos:
                return new_ids[: index + 1], "stop"
            if params.stop:
                tail = [*generated[-window:], *new_ids[: index + 1]][-window:]
                text = self.tokenizer.decode(tail)
                if any(s in text for s in params.stop):
                    return new_ids[: index + 1], "stop"
        if len(new_ids) >= room:
            return new_ids, "length"
        return new_ids, None

    def _check_inputs(self, prompts: list[list[int]], params: list[SamplingParams]) -> None:
        if len(prompts) != len(params):
            raise errors.InvalidInput(f"{len(prompts)} prompts but {len(params)} sampling params")
        vocab = self.target.vocab_size
        for index, prompt in enumerate(prompts):
            if not prompt:
                raise errors.InvalidInput(f"prompt {index} is empty")
            if len(prompt) >= self.max_context:
                raise errors.InvalidInput(
                    f"prompt {index} has {len(prompt)} tokens; the context holds {self.max_context}"
                )
            if min(prompt) < 0 or max(prompt) >= vocab:
                raise errors.InvalidInput(f"prompt {index} has token ids outside the vocabulary (0..{vocab - 1})")

    def _cost_clock(self) -> float:
        """What a step costs, for the governor: wall time on an accelerator; on a CPU this process's
        CPU time, which other processes on a shared machine do not inflate."""
        return time.perf_counter() if self.device.type != "cpu" else time.process_time()


def _prefixes(batch_size: int, requests: list[tuple[int, list[int], SamplingParams]]) -> list[list[int]]:
    """What the target prefills per row for admitted `requests` (row, prompt, params): each prompt but
    its last token, which the row's first step feeds; nothing for other rows."""
    prefixes: list[list[int]] = [[] for _ in range(batch_size)]
    for row, prompt, _ in requests:
        prefixes[row] = prompt[:-1]
    return prefixes


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


def _verify_greedy(
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
    logits = target._forward(cache, ids, valid, start, kv_len=kv_len, float32=False)  # an argmax's needs
    packed, *window = target.kernel(_greedy_decision)(logits, draft_token_ids, num_draft, valid, cache.valid, start)
    cache.set_window(*window)
    return packed


def _stop_window(params: SamplingParams) -> int:
    """Tokens of recent output decoded to look for a stop string (the longest stop, plus 2)."""
    return max((len(s) for s in params.stop), default=0) + 2


def _captures(target: ModelRunner, proposer: object) -> int:
    """CUDA graphs captured so far; a step that captured one is not timed for the governor."""
    count = target.num_graphs
    if isinstance(proposer, DraftModelProposer):
        count += proposer.runner.num_graphs
    return count


def _eos_token_ids(model: torch.nn.Module, tokenizer: object) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else value)
    return frozenset(ids)


def _check_vocabularies(target: torch.nn.Module, draft: torch.nn.Module) -> None:
    target_vocab = target.get_output_embeddings().weight.shape[0]
    draft_vocab = draft.get_output_embeddings().weight.shape[0]
    if target_vocab != draft_vocab or target.config.vocab_size != draft.config.vocab_size:
        raise errors.InvalidInput(
            f"target and draft vocabularies differ ({target_vocab} vs {draft_vocab} tokens): "
            "a draft must share the target's tokenizer"
        )
