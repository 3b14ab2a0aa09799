"""`SpeculativeEngine`: load a target (+ draft) pair and generate with speculative decoding.

One step for a batch:
  1. choose k per sequence (adaptive controller, batch-size cap, measured fallback);
  2. the proposer drafts up to k tokens per sequence;
  3. the target scores `[last, d_1..d_k]` for every sequence in one forward over its KV cache;
  4. the verifier keeps the accepted prefix plus one recovered or bonus token (verify.py);
  5. stop conditions cut the new tokens; caches drop the rejected slots.

On a GPU the host waits for the device once per step, for the verifier's decision. A greedy batch's
steps 3-4 and the cache's drop are one CUDA graph (verify_step.py); the next step's k is chosen, and
its drafts started (`Proposer.prefetch`), before that wait, so the device drafts while the host
commits. The call's rows, admission and stops live in `scheduler.Scheduler`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from specops import errors
from specops.engine import phases, verify_step
from specops.engine.adaptive import DraftLengthController, PairAcceptance, SpeculationGovernor
from specops.engine.batch import SequenceBatch
from specops.engine.config import SamplingParams, SpeculationConfig
from specops.engine.proposers import PROPOSERS, Proposal, Proposer
from specops.engine.runner import ModelRunner
from specops.engine.scheduler import AdmitRequests, GenerationResult, Limits, Scheduler, Stops
from specops.engine.stats import StepStats
from specops.engine.timing import PhaseClock
from specops.engine.transfer import HostCopy

GRAPH_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Batch shapes the engine runs with CUDA graphs; a call is padded up to the next (none beyond 256)."""


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
        self.target = ModelRunner.for_settings(target, self.config.execution)
        self.max_context: int = self.target.max_context
        self.device = self.target.device
        self.eos_token_ids = _eos_token_ids(target, tokenizer)
        self.proposer: Proposer | None = None
        if self.config.proposer != "none":
            build = PROPOSERS[self.config.proposer]
            self.proposer = build(self.config, target=self.target, draft=draft)
        self.governor = SpeculationGovernor(self.config)
        self.pair_acceptance = PairAcceptance()  # where new sequences' acceptance estimates start
        self.limits = Limits(vocab_size=self.target.vocab_size, max_context=self.max_context)

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
        admit: AdmitRequests | None = None,
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
        self.limits.check(prompts, params)
        if not prompts and admit is None:
            return []
        batch_size = self.padded_batch_size(max(len(prompts), rows, 1))
        scheduler = Scheduler(
            prompts,
            params,
            batch_size=batch_size,
            limits=self.limits,
            stops=Stops(eos_token_ids=self.eos_token_ids, decode=self.tokenizer.decode),
            pair_acceptance=self.pair_acceptance,
            controller=DraftLengthController(self.config, batch_size, prior_alpha=self.pair_acceptance.alpha),
            admit=admit,
            admit_in_step=self.config.execution.admit_in_step,
            on_tokens=on_tokens,
            on_finish=on_finish,
        )
        capacity = self._call_capacity(scheduler.longest, max_tokens, continuous=admit is not None)
        cache = self.target.cache(batch_size, capacity)
        scheduler.start(target=self.target, cache=cache, proposer=self.proposer, capacity=capacity)
        clock = PhaseClock(self.device)
        # the cost of a step follows the rows computed (finished ones included), its gain the running ones
        cap = self.config.max_draft_length(batch_size) if self.proposer is not None else 0
        # each step's K is chosen during the step before, so that the proposer can start drafting it
        # while the host reads that step's decision (`Proposer.prefetch`)
        planned_k: int | None = None
        step = 0
        while scheduler.begin_step():
            step_k = planned_k if planned_k is not None else self._choose_k(scheduler, cap)
            stats, planned_k = self._step(scheduler, clock, step=step, step_k=step_k, cap=cap)
            if on_step is not None:
                on_step(stats)
            step += 1
        return scheduler.initial

    def _step(
        self, scheduler: Scheduler, clock: PhaseClock, *, step: int, step_k: int, cap: int
    ) -> tuple[StepStats, int]:
        """One step with cap `step_k`: propose, verify, commit. Returns its figures and the next step's K."""
        batch = scheduler.batch
        num_running = sum(batch.active)
        num_tokens = scheduler.draft_lengths(step_k, max_context=self.max_context)
        captures_before = self._num_graphs()
        cost_started = self._cost_clock()
        clock.mark()
        proposal = self._propose(batch, num_tokens)
        clock.mark()
        num_drafted = proposal.num_draft_tokens
        output_ids, num_accepted, planned_k = self._verify_step(scheduler, proposal, clock, cap=cap)
        draft_seconds, target_seconds = clock.seconds()
        if proposal.draft_clock is not None:  # drafted during the step before
            draft_seconds = proposal.draft_clock.seconds()[0]
        ran = list(batch.active)
        emitted = scheduler.commit(
            output_ids, num_accepted, num_drafted=num_drafted, seconds=(draft_seconds, target_seconds)
        )
        drafted = [(d, a) for d, a in zip(num_drafted, num_accepted, strict=True) if d]
        self.pair_acceptance.update(sum(a for _, a in drafted), sum(a < d for d, a in drafted))
        if self.proposer is not None:
            self.proposer.commit(batch, proposal, num_accepted)
        self.target.tidy(scheduler.cache)
        timed = not (proposal.catch_up_tokens or scheduler.joining)  # a step's own work, nothing more
        if self._num_graphs() == captures_before and timed:
            cost = self._cost_clock() - cost_started
            self.governor.record(batch_size=batch.batch_size, k=step_k, seconds=cost)
        stats = StepStats(
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
        return stats, planned_k

    def _propose(self, batch: SequenceBatch, num_tokens: list[int]) -> Proposal:
        """The proposer's drafts, or none for a plain step."""
        if max(num_tokens) > 0 or (self.proposer is not None and self.proposer.drafted_ahead):
            return self.proposer.propose(batch, num_tokens)
        return Proposal(
            draft_token_ids=torch.zeros(batch.batch_size, 0, dtype=torch.long, device=self.device),
            num_draft_tokens=[0] * batch.batch_size,
            draft_probs=None,
        )

    @phases.named("verify_step")
    def _verify_step(
        self, scheduler: Scheduler, proposal: Proposal, clock: PhaseClock, *, cap: int
    ) -> tuple[list[list[int]], list[int], int]:
        """Target forward over `[last, drafts]`, verification, cache trim (verify_step.py). Returns the
        tokens, the accepted counts and the next step's K.

        Everything up to reading the decision is queued on the device without waiting; before the
        read, the next step is planned (`_plan_next`), so that its work queues behind this step's.
        """
        packed, start = verify_step.queue(self.target, batch=scheduler.batch, cache=scheduler.cache, proposal=proposal)
        clock.mark()
        if self.proposer is not None:
            self.proposer.settle(proposal, packed[:, 0])
        decision = HostCopy(packed)
        planned_k = self._plan_next(scheduler, proposal, packed, cap=cap)
        output_ids, num_accepted = verify_step.read(decision, batch=scheduler.batch, cache=scheduler.cache, start=start)
        return output_ids, num_accepted, planned_k

    def _plan_next(self, scheduler: Scheduler, proposal: Proposal, decided: torch.Tensor, *, cap: int) -> int:
        """Choose the next step's K and start its drafts (`Proposer.prefetch`) from this step's
        decision still on the device; admit into free rows while this step runs. Returns that K."""
        planned_k = self._choose_k(scheduler, cap)
        if self.proposer is not None and planned_k > 0 and self.config.execution.draft_ahead:
            self.proposer.prefetch(scheduler.batch, proposal, decided, planned_k)
        if scheduler.admit_requests is not None and self.config.execution.admit_in_step:
            scheduler.admit_during_step(window=proposal.max_k + 1)
        return planned_k

    def _choose_k(self, scheduler: Scheduler, cap: int) -> int:
        batch, controller = scheduler.batch, scheduler.controller
        return self.governor.choose(batch.batch_size, cap, lambda k: controller.gain(batch.active, k))

    def padded_batch_size(self, batch_size: int) -> int:
        """Rows a call of `batch_size` sequences runs with: with CUDA graphs the next of
        `GRAPH_BATCH_SIZES` (graphs are captured per batch size, so a server meets a handful of shapes,
        not one per batch it forms); otherwise `batch_size` itself."""
        if not self.config.execution.pad_batches and not self.target.use_graphs:
            return batch_size
        return next((size for size in GRAPH_BATCH_SIZES if size >= batch_size), batch_size)

    def _call_capacity(self, longest: int, max_tokens: int, *, continuous: bool) -> int:
        """KV slots of a call whose longest sequence has `longest` tokens; with continuous batching an
        admitted sequence's slots start after the longest running one's (see kv_cache.py): room for both."""
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
                verify_step.replay_greedy(
                    self.target, cache, staged=staged, draft_token_ids=zeros[:, 1:]
                )  # the greedy steps' graph
                cache.reset()
            self.target.warm_up_prefill(batch_size, capacity)
            if self.proposer is not None:
                self.proposer.warm_up(batch_size, capacity, max_draft)
        # the models, graphs and compiled code live as long as the process: keep them out of later
        # garbage collections, whose full passes over them would stall decoding steps
        gc.collect()
        gc.freeze()

    def _num_graphs(self) -> int:
        """CUDA graphs captured so far; a step that captured one is not timed for the governor."""
        return self.target.num_graphs + (self.proposer.num_graphs if self.proposer is not None else 0)

    def _cost_clock(self) -> float:
        """What a step costs, for the governor: wall time on an accelerator; on a CPU this process's
        CPU time, which other processes on a shared machine do not inflate."""
        return time.perf_counter() if self.device.type != "cpu" else time.process_time()


def _eos_token_ids(model: torch.nn.Module, tokenizer: object) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update([value] if isinstance(value, int) else value)
    return frozenset(ids)
