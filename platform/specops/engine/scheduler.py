"""The rows of one `generate` call: admission into free rows, token budgets, stops, results.

A call runs a fixed number of rows (so tensor shapes, and captured CUDA graphs, stay put). A row holds
one sequence at a time; a finished row stays in the batch, inactive, until continuous batching admits
a new sequence into it. Admission happens before a step (while nothing runs, when more rows are free
than are prefilled alone, and for requests that did not fit before the last step's window) or, by
default, while a step is on the device: then its host work and prefill overlap the step, and the new
sequence runs from the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from specops import errors
from specops.engine import phases
from specops.engine.adaptive import DraftLengthController, PairAcceptance
from specops.engine.batch import SequenceBatch
from specops.engine.config import SamplingParams
from specops.engine.kv_cache import KVCache
from specops.engine.proposers import Proposer
from specops.engine.runner import ModelRunner, prefilled_alone
from specops.engine.sampling import RowRandom, SamplingTensors
from specops.engine.stats import RequestStats

FinishReason = Literal["stop", "length"]

#: `admit(free_rows)`: new (prompt, params) pairs for some of the free rows, first rows first.
AdmitRequests = Callable[[list[int]], Sequence[tuple[Sequence[int], SamplingParams]]]

#: A request taken for admission: (row, prompt token ids, params).
Request = tuple[int, list[int], SamplingParams]


@dataclass
class GenerationResult:
    """One sequence's output: generated token ids (EOS / stop-completing token included)."""

    token_ids: list[int]
    finish_reason: FinishReason
    stats: RequestStats = field(default_factory=RequestStats)


@dataclass(frozen=True)
class Limits:
    """What a model takes: token ids below `vocab_size`, sequences shorter than `max_context`."""

    vocab_size: int
    max_context: int

    def check(self, prompts: list[list[int]], params: list[SamplingParams]) -> None:
        """Raise InvalidInput for prompts the model cannot take."""
        if len(prompts) != len(params):
            raise errors.InvalidInput(f"{len(prompts)} prompts but {len(params)} sampling params")
        for index, prompt in enumerate(prompts):
            if not prompt:
                raise errors.InvalidInput(f"prompt {index} is empty")
            if len(prompt) >= self.max_context:
                raise errors.InvalidInput(
                    f"prompt {index} has {len(prompt)} tokens; the context holds {self.max_context}"
                )
            if min(prompt) < 0 or max(prompt) >= self.vocab_size:
                raise errors.InvalidInput(
                    f"prompt {index} has token ids outside the vocabulary (0..{self.vocab_size - 1})"
                )

    def budget(self, prompt: list[int], params: SamplingParams) -> int:
        """New tokens a sequence may have: its max_new_tokens, within the context."""
        return min(params.max_new_tokens, self.max_context - len(prompt))


@dataclass(frozen=True)
class Stops:
    """Where a sequence stops: at an EOS token, at a stop string, or at its token budget."""

    eos_token_ids: frozenset[int]
    decode: Callable[[list[int]], str]

    def cut(
        self, generated: list[int], new_ids: list[int], *, params: SamplingParams, budget: int
    ) -> tuple[list[int], FinishReason | None]:
        """`new_ids` cut at the first stop, and why it stopped (None: it runs on)."""
        room = budget - len(generated)
        window = stop_window(params)
        for index, token in enumerate(new_ids):
            if index >= room:
                return new_ids[:index], "length"
            if token in self.eos_token_ids and not params.ignore_eos:
                return new_ids[: index + 1], "stop"
            if params.stop:
                tail = [*generated[-window:], *new_ids[: index + 1]][-window:]
                text = self.decode(tail)
                if any(s in text for s in params.stop):
                    return new_ids[: index + 1], "stop"
        if len(new_ids) >= room:
            return new_ids, "length"
        return new_ids, None


def stop_window(params: SamplingParams) -> int:
    """Tokens of recent output decoded to look for a stop string (the longest stop, plus 2)."""
    return max((len(s) for s in params.stop), default=0) + 2


class Scheduler:
    """The rows of one `generate` call and the sequences in them (see the module docstring)."""

    def __init__(
        self,
        prompts: list[list[int]],
        params: list[SamplingParams],
        *,
        batch_size: int,
        limits: Limits,
        stops: Stops,
        pair_acceptance: PairAcceptance,
        controller: DraftLengthController,
        admit: AdmitRequests | None,
        admit_in_step: bool,
        on_tokens: Callable[[int, list[int]], None] | None,
        on_finish: Callable[[int, GenerationResult], None] | None,
    ) -> None:
        requested = len(prompts)
        # padding rows: finished from the start (free for admission, else they only fill the shape)
        self.prompts = prompts + [[0]] * (batch_size - requested)
        self.params = params + [SamplingParams(max_new_tokens=1)] * (batch_size - requested)
        self.budgets = [limits.budget(t, p) for t, p in zip(self.prompts, self.params, strict=True)]
        self.results = [GenerationResult(token_ids=[], finish_reason="length") for _ in self.prompts]
        self.initial = self.results[:requested]
        self.requested = requested
        self.limits, self.stops, self.pair_acceptance, self.controller = limits, stops, pair_acceptance, controller
        self.admit_requests, self.admit_in_step = admit, admit_in_step
        self.on_tokens, self.on_finish = on_tokens, on_finish
        self.joining: list[int] = []  # rows admitted during the step (they run from the next one)
        self.held: list[Request] = []  # requests that did not fit before the step's window
        self.batch: SequenceBatch  # set by `start`

    @property
    def longest(self) -> int:
        """Tokens of the longest sequence among the initial prompts (prompt and budget)."""
        return max(len(p) + b for p, b in zip(self.prompts, self.budgets, strict=True))

    def start(self, *, target: ModelRunner, cache: KVCache, proposer: Proposer | None, capacity: int) -> None:
        """Prefill the initial prompts (but their last tokens) into `cache`; the proposer takes them in."""
        self.target, self.cache, self.proposer = target, cache, proposer
        self.batch = SequenceBatch(
            tokens=[list(p) for p in self.prompts],
            active=[row < self.requested for row in range(len(self.prompts))],
            sampling=SamplingTensors.from_params(self.params, target.device),
            rng=RowRandom([p.seed for p in self.params], target.device),
            device=target.device,
            capacity=capacity,
        )
        target.append(cache, [t[:-1] for t in self.batch.tokens], fresh=True)
        if proposer is not None:
            proposer.start(self.batch)

    def begin_step(self) -> bool:
        """Rows admitted during the last step join; admission before the step, where due. Whether any
        row runs (the call ends when none does)."""
        batch = self.batch
        for row in self.joining:
            batch.active[row] = True
        self.joining = []
        # (nothing running is the case of every row free)
        alone = prefilled_alone(batch.batch_size, batch.active.count(False))
        before_step = self.held or not alone or not self.admit_in_step
        if self.admit_requests is not None and before_step:
            requests, self.held = self.held or self._take(), []
            if requests:
                self.admit(requests)
        return any(batch.active)

    def draft_lengths(self, step_k: int, *, max_context: int) -> list[int]:
        """Tokens each row drafts in a step of cap `step_k` (0 for a finished row)."""
        draft_k = self.controller.batch_length(self.batch.active, step_k)
        return [
            # drafts stay inside the context; past the budget they are merely cut
            min(draft_k, max_context - len(self.batch.tokens[row])) if active else 0
            for row, active in enumerate(self.batch.active)
        ]

    def admit_during_step(self, *, window: int) -> None:
        """Admit requests into rows the last step freed while this step (its `window` newest slots of
        the cache) is on the device; they run from the next step. Requests whose prompts do not fit
        before the window wait for the next step's admission."""
        requests = self._take()
        if not requests:
            return
        end = self.cache.length - window  # the step's window starts there
        if not self.target.fits_before(self.cache, _prefixes(self.batch.batch_size, requests), end):
            self.held = requests
            return
        self.admit(requests, end=end)
        self.joining = [row for row, _, _ in requests]

    def _take(self) -> list[Request]:
        free = [row for row, active in enumerate(self.batch.active) if not active]
        admitted = list(self.admit_requests(free)) if self.admit_requests is not None and free else []
        return [(row, [int(t) for t in prompt], p) for row, (prompt, p) in zip(free, admitted, strict=False)]

    @phases.named("admit")
    def admit(self, requests: list[Request], *, end: int | None = None) -> None:
        """Put new sequences into free rows and prefill their prompts.

        `end`: while a step whose window starts at that slot is on the device; the prompts go into
        slots before it, and the rows run from the next step (inactive until then).
        """
        batch = self.batch
        self.limits.check([prompt for _, prompt, _ in requests], [p for _, _, p in requests])
        for row, prompt, row_params in requests:
            budget = self.limits.budget(prompt, row_params)
            if len(prompt) + budget > batch.capacity // 2:
                raise errors.InvalidInput(
                    f"an admitted sequence of {len(prompt)} + {budget} tokens exceeds the call's max_tokens"
                )
            self.params[row], self.budgets[row] = row_params, budget
            self.results[row] = GenerationResult(token_ids=[], finish_reason="length")
            batch.tokens[row], batch.active[row] = list(prompt), end is None
            batch.rng.reseed(row, row_params.seed)
            self.controller.reset(row, self.pair_acceptance.alpha)
            self.cache.clear_row(row)
            if self.proposer is not None:
                self.proposer.admit(batch, row)
        batch.sampling = SamplingTensors.from_params(self.params, batch.device)
        self.target.append(self.cache, _prefixes(batch.batch_size, requests), fresh=True, end=end)

    def commit(
        self,
        output_ids: list[list[int]],
        num_accepted: list[int],
        *,
        num_drafted: list[int],
        seconds: tuple[float, float],
    ) -> list[int]:
        """Commit every running row's verified tokens; returns the tokens each row kept."""
        emitted = [0] * self.batch.batch_size
        for row in range(self.batch.batch_size):
            if self.batch.active[row]:
                emitted[row] = self.emit(
                    row,
                    output_ids[row][: num_accepted[row] + 1],
                    num_drafted=num_drafted[row],
                    num_accepted=num_accepted[row],
                    seconds=seconds,
                )
        return emitted

    @phases.named("emit")
    def emit(
        self, row: int, new_ids: list[int], *, num_drafted: int, num_accepted: int, seconds: tuple[float, float]
    ) -> int:
        """Commit one sequence's verified tokens (cut at its stops), count them; returns how many it kept."""
        result = self.results[row]
        new_ids, reason = self.stops.cut(result.token_ids, new_ids, params=self.params[row], budget=self.budgets[row])
        result.token_ids.extend(new_ids)
        self.batch.tokens[row].extend(new_ids)
        result.stats.record(num_draft_tokens=num_drafted, num_accepted=num_accepted)
        result.stats.draft_seconds += seconds[0]
        result.stats.target_seconds += seconds[1]
        self.controller.update(row, num_drafted, num_accepted)
        if reason is not None:
            result.finish_reason = reason
            self.batch.active[row] = False
        if self.on_tokens is not None and new_ids:
            self.on_tokens(row, new_ids)
        if reason is not None and self.on_finish is not None:
            self.on_finish(row, result)
        return len(new_ids)


def _prefixes(batch_size: int, requests: list[Request]) -> list[list[int]]:
    """What the target prefills per row for admitted `requests`: each prompt but its last token, which
    the row's first step feeds; nothing for other rows."""
    prefixes: list[list[int]] = [[] for _ in range(batch_size)]
    for row, prompt, _ in requests:
        prefixes[row] = prompt[:-1]
    return prefixes
