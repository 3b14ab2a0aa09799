"""Dynamic batching: concurrent requests queue on the event loop and run together in the engine.

One batcher per server. Requests wait in a queue; the batcher takes the oldest, lets up to
``max_wait`` pass since its arrival, or since the engine became free if that is later, for others
to join, and runs up to ``max_batch`` of them in one ``engine.generate`` call on a
single worker thread (torch releases the GIL). Tokens stream back through ``on_tokens`` into each
job's asyncio queue via ``loop.call_soon_threadsafe``.

Continuous batching: the engine admits sequences mid-call (``admit`` / ``on_finish``, see
`specops.engine.SpeculativeEngine.generate`), a queued job takes the row of a sequence that
finished at the next engine step, and each job's result is sent as soon as its own sequence ends,
not when the batch ends. A job whose client went away is skipped if still queued, and its tokens
are ignored if already running. When every running job's client has gone and nothing waits (or the
server stops), ``on_tokens`` raises `BatchAborted`, which ends the engine call at that step.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from specops import errors
from specops.serving.engine_port import ServingEngine
from specops.telemetry import metrics as telemetry_metrics

if TYPE_CHECKING:
    from specops.engine import GenerationResult, SamplingParams, StepStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokensEvent:
    """Tokens a sequence gained in one engine step, and when (``time.perf_counter``)."""

    token_ids: list[int]
    at: float


@dataclass(frozen=True)
class DoneEvent:
    """The engine finished the sequence; ``result`` is its ``GenerationResult``."""

    result: GenerationResult
    at: float


@dataclass(frozen=True)
class ErrorEvent:
    """The engine failed on the batch holding this sequence."""

    error: BaseException


Event = TokensEvent | DoneEvent | ErrorEvent


class BatchAborted(Exception):
    """Raised from ``on_tokens`` to end an engine call early: every client left, or shutdown."""


@dataclass(eq=False)
class GenerationJob:
    """One sequence to generate: its prompt, sampling parameters and where its events go."""

    prompt_ids: list[int]
    params: SamplingParams
    arrival: float = field(default_factory=time.perf_counter)
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    started: bool = False


class DynamicBatcher:
    """Forms batches from queued jobs and runs them on one engine thread.

    engine: runs the batches (``generate`` with ``on_tokens``, ``on_step``, ``on_finish``, ``admit``).
    max_batch: most jobs per engine call. max_wait_s: longest the oldest queued job waits for company.
    max_sequence_tokens: most prompt + new tokens of a job (the context limit; sizes the engine's caches).
    """

    def __init__(
        self,
        *,
        engine: ServingEngine,
        max_batch: int,
        max_wait_s: float,
        metrics: telemetry_metrics.ServingMetrics,
        max_sequence_tokens: int,
    ) -> None:
        self._engine = engine
        self.max_sequence_tokens = max_sequence_tokens
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._metrics = metrics
        self._pending: collections.deque[GenerationJob] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="specops-engine")
        self._stopping = False
        self._free_since = 0.0
        self.num_running = 0
        self.num_batches = 0
        self.num_batched_jobs = 0
        self.largest_batch = 0
        self.num_aborted_batches = 0

    @property
    def num_waiting(self) -> int:
        # a snapshot: the engine thread reads the queue while the event loop appends to it
        return sum(1 for job in tuple(self._pending) if not job.cancelled)

    def submit(self, job: GenerationJob) -> None:
        """Queue ``job`` (call on the event loop); the batcher task starts on first use."""
        if self._stopping:
            job.events.put_nowait(ErrorEvent(RuntimeError("server shutting down")))
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._run(), name="specops-batcher")
        self._pending.append(job)
        assert self._arrived is not None
        self._arrived.set()
        self._report()

    def stop(self) -> None:
        """End the running engine call at its next step and refuse further batches (shutdown)."""
        self._stopping = True

    def cancel(self, job: GenerationJob) -> None:
        """Forget ``job``: skipped if still queued, its tokens ignored if running."""
        job.cancelled = True
        self._report()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _report(self) -> None:
        self._metrics.queue(running=self.num_running, waiting=self.num_waiting)

    async def _next_batch(self) -> list[GenerationJob]:
        assert self._arrived is not None
        while True:
            while self._pending and self._pending[0].cancelled:
                self._pending.popleft()
            if self._pending:
                break
            self._arrived.clear()
            await self._arrived.wait()
        # Wait from the later of the oldest arrival and the moment the engine became free: the
        # clients of the batch that just finished resubmit a few ms later, and without this grace
        # they would be split off into a batch of their own and stay split (static batches).
        deadline = max(self._pending[0].arrival, self._free_since) + self.max_wait_s
        while self.num_waiting < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch: list[GenerationJob] = []
        while self._pending and len(batch) < self.max_batch:
            job = self._pending.popleft()
            if not job.cancelled:
                job.started = True
                batch.append(job)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            batch = await self._next_batch()
            if not batch or self._stopping:
                continue
            self.num_running = len(batch)
            self.num_batches += 1
            self.num_batched_jobs += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            self._report()
            try:
                await loop.run_in_executor(self._executor, self._run_batch, loop, batch)
            except asyncio.CancelledError:
                for job in batch:
                    job.events.put_nowait(ErrorEvent(RuntimeError("server shutting down")))
                raise
            except Exception as error:  # pragma: no cover - _run_batch reports its own errors
                log.exception("batch failed")
                for job in batch:
                    job.events.put_nowait(ErrorEvent(error))
            finally:
                self.num_running = 0
                self._free_since = time.perf_counter()
                self._report()

    # -- engine thread ---------------------------------------------------------------------------------

    def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[GenerationJob]) -> None:
        """One engine call that admits queued jobs into freed rows until nothing runs or waits."""
        in_row: dict[int, GenerationJob] = dict(enumerate(batch))

        def admit(free_rows: list[int]) -> list[tuple[list[int], SamplingParams]]:
            taken: list[tuple[list[int], SamplingParams]] = []
            while len(taken) < len(free_rows) and self._pending and not self._stopping:
                job = self._pending.popleft()
                if job.cancelled:
                    continue
                if len(job.prompt_ids) + job.params.max_new_tokens > self.max_sequence_tokens:
                    self._pending.appendleft(job)  # too long to share this call: it waits for a batch of its own
                    break
                job.started = True
                in_row[free_rows[len(taken)]] = job
                taken.append((job.prompt_ids, job.params))
            if taken:
                self.num_batched_jobs += len(taken)
                self._set_running(len(in_row))
            return taken

        def on_finish(row: int, result: GenerationResult) -> None:
            job = in_row.pop(row)
            if not job.cancelled:
                _post(loop, job, DoneEvent(result, time.perf_counter()))
            self._set_running(len(in_row))

        def on_tokens(row: int, new_ids: list[int]) -> None:
            if self._stopping:
                raise BatchAborted
            job = in_row[row]
            if not job.cancelled:
                if new_ids:
                    _post(loop, job, TokensEvent(list(new_ids), time.perf_counter()))
            elif all(other.cancelled for other in in_row.values()) and not self.num_waiting:
                raise BatchAborted  # nobody is listening and nobody waits: free the engine

        try:
            self._engine.generate(
                [job.prompt_ids for job in batch],
                [job.params for job in batch],
                on_tokens=on_tokens,
                on_step=self._count_step,
                on_finish=on_finish,
                admit=admit,
                max_tokens=self.max_sequence_tokens,
            )
        except BatchAborted:
            self.num_aborted_batches += 1
            for job in in_row.values():
                if not job.cancelled:
                    _post(loop, job, ErrorEvent(RuntimeError("server shutting down")))
            log.info("engine call ended early (%s)", "shutdown" if self._stopping else "every client left")
        except errors.InvalidInput as error:
            if len(in_row) == 1 and len(batch) == 1:
                _post(loop, next(iter(in_row.values())), ErrorEvent(error))
                return
            # one bad sequence must not fail its neighbours: run the unfinished ones one by one
            log.warning("engine call of %d sequences refused (%s); running them alone", len(in_row), error)
            for job in list(in_row.values()):
                self._run_batch(loop, [job])
        except Exception as error:
            log.exception("engine failed on a call of %d sequences", len(in_row))
            for job in in_row.values():
                _post(loop, job, ErrorEvent(error))

    def _set_running(self, count: int) -> None:
        self.num_running = count
        self.largest_batch = max(self.largest_batch, count)
        self._report()

    def _count_step(self, step: StepStats) -> None:
        self._metrics.step(
            num_draft_tokens=step.num_draft_tokens,
            num_accepted_tokens=step.num_accepted_tokens,
            num_emitted_tokens=step.num_emitted_tokens,
            running=step.running,
        )


def _post(loop: asyncio.AbstractEventLoop, job: GenerationJob, event: Event) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody is listening any more
        loop.call_soon_threadsafe(job.events.put_nowait, event)
