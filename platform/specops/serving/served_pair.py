"""`ServedPair`: one pair version served: validates requests, feeds the batcher, streams text, counts and records.

Protocol front-ends (OpenAI routes, KServe v1/v2 predict) turn their request bodies into
`PreparedRequest`s with :meth:`ServedPair.prepare` (which raises `RequestError`, a 4xx, for
anything the client got wrong) and consume :meth:`ServedPair.generate`, an async stream of
`TextDelta`s. Request-level metrics and the request record are taken here, once per request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specops import errors
from specops.serving import batcher as batching
from specops.serving.config import ResolvedPair, ServingConfig
from specops.serving.detokenizer import IncrementalDetokenizer
from specops.serving.engine_port import ServingEngine
from specops.telemetry import metrics as telemetry_metrics
from specops.telemetry import records as telemetry_records

if TYPE_CHECKING:
    from specops.engine import GenerationResult, RequestStats, SamplingParams

log = logging.getLogger(__name__)

#: Temperatures below this sample greedily (vLLM's _SAMPLING_EPS): 1/T would overflow the logits.
GREEDY_EPSILON = 1e-5
#: Seeds are folded into a non-negative 63-bit range (torch generators take uint64).
SEED_MASK = (1 << 63) - 1


class RequestError(Exception):
    """A request that cannot be served, mapped to an HTTP status and a metrics reason.

    status: HTTP status (4xx for the client's mistakes, 500 only for the server's own failures).
    reason: ``specops_request_errors_total`` reason (invalid_request, context_length, not_found,
        client_disconnect, internal).
    param: the request field at fault, when one is.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        reason: str = "invalid_request",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.param = param
        self.code = code

    @property
    def error_type(self) -> str:
        if self.status == 404:
            return "not_found_error"
        if self.status >= 500:
            return "internal_error"
        return "invalid_request_error"


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request: token ids, sampling parameters and the text kept for the record."""

    prompt_ids: list[int]
    params: SamplingParams
    prompt_text: str
    stop: tuple[str, ...] = ()


@dataclass
class TextDelta:
    """New text of one streamed step; the last delta carries ``finish_reason`` and the totals."""

    text: str
    num_tokens: int
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stats: RequestStats | None = None  # on the last delta


@dataclass
class _Timing:
    arrival: float
    first: float | None = None
    last: float | None = None
    num_tokens: int = 0


@dataclass
class Completion:
    """A whole (non-streamed) generation."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    stats: RequestStats | None = None


class ServedPair:
    """One pair version behind one model name: engine, batcher, metrics and request records."""

    def __init__(
        self,
        *,
        engine: ServingEngine,
        config: ServingConfig,
        pair: ResolvedPair,
        metrics: telemetry_metrics.ServingMetrics,
        records: telemetry_records.RequestRecordWriter | None,
    ) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.config = config
        self.pair = pair
        self.metrics = metrics
        self.records = records
        self.model_name = config.model_name or pair.name
        self.pair_version = config.pair_version or pair.version
        self.deployment = config.deployment or self.model_name
        self.role = config.role
        self.served_names = frozenset({self.model_name, self.deployment})
        self.context_limit = min(config.context_limit or engine.max_context, engine.max_context)
        self.max_tokens = config.max_tokens
        self.vocab_size = engine.target.vocab_size
        self.created = int(time.time())
        # capture the CUDA graphs of every batch shape the batcher can form now, not on the request
        # path (a no-op without graphs); the batcher batches continuously
        engine.warm_up(range(1, config.max_batch + 1), max_tokens=self.context_limit, continuous=True)
        self.batcher = batching.DynamicBatcher(
            engine=engine,
            max_batch=config.max_batch,
            max_wait_s=config.max_wait_ms / 1000.0,
            metrics=metrics,
            max_sequence_tokens=self.context_limit,
        )
        self._sampling_params = _sampling_params_class()
        self._sampling_fields = frozenset(f.name for f in dataclasses.fields(self._sampling_params))

    # -- loading ---------------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: ServingConfig, pair: ResolvedPair | None = None) -> ServedPair:
        """Load the engine for ``config.pair`` and start the request-record writer."""
        from specops.serving.config import resolve_pair

        pair = pair or resolve_pair(config.pair)
        from specops import engine as spec_engine

        draft_dir = pair.draft_dir
        from_pair = pair.speculation
        proposer = config.proposer or str(from_pair.get("proposer") or "draft")
        if proposer == "draft" and draft_dir is None:
            proposer = "prompt_lookup"
        k = config.num_speculative_tokens
        adaptive = config.adaptive
        speculation = spec_engine.SpeculationConfig(
            proposer=proposer,
            num_speculative_tokens=int(k if k is not None else from_pair.get("num_speculative_tokens", 4)),
            adaptive=bool(adaptive if adaptive is not None else from_pair.get("adaptive", True)),
        )
        from specops.serving.config import torch_dtype

        engine = spec_engine.SpeculativeEngine.load(
            pair.target_dir,
            draft_dir=draft_dir if proposer == "draft" else None,
            config=speculation,
            device=config.device,
            dtype=torch_dtype(config),
        )
        metrics = telemetry_metrics.ServingMetrics(
            model_name=config.model_name or pair.name,
            pair_version=config.pair_version or pair.version,
            role=config.role,
            enabled=config.telemetry,
        )
        metrics.set_draft_length(float(speculation.max_draft_length(1)))
        return cls(engine=engine, config=config, pair=pair, metrics=metrics, records=record_writer(config, metrics))

    async def close(self) -> None:
        await self.batcher.close()
        if self.records is not None:
            await asyncio.to_thread(self.records.close)

    # -- validation --------------------------------------------------------------------------------------

    def check_model(self, name: str | None) -> None:
        if name is not None and name not in self.served_names:
            raise RequestError(
                f"The model `{name}` does not exist; this server serves `{self.model_name}`.",
                status=404,
                reason="not_found",
                param="model",
                code="model_not_found",
            )

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=True))

    def prepare(
        self,
        *,
        prompt: str | Sequence[int],
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        default_to_context: bool = False,
        ignore_eos: bool = False,
    ) -> PreparedRequest:
        """Validate one prompt and its sampling fields; raises `RequestError` (4xx) when wrong.

        ``max_tokens`` None means "as many as fit" (chat) when ``default_to_context`` else 16.
        """
        if isinstance(prompt, str):
            try:
                prompt.encode("utf-8")
            except UnicodeEncodeError as error:
                raise RequestError("prompt is not valid UTF-8 text", param="prompt") from error
            prompt_ids = self.tokenize(prompt)
            prompt_text = prompt
        else:
            prompt_ids = [int(t) for t in prompt]
            bad = [t for t in prompt_ids if not 0 <= t < self.vocab_size]
            if bad:
                raise RequestError(
                    f"prompt token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})", param="prompt"
                )
            prompt_text = self.tokenizer.decode(prompt_ids)
        if not prompt_ids:
            raise RequestError("prompt is empty", param="prompt")
        if len(prompt_ids) >= self.context_limit:
            self._context_error(len(prompt_ids), max_tokens or 1)
        if max_tokens is None:
            max_tokens = min(self.max_tokens, self.context_limit - len(prompt_ids)) if default_to_context else 16
            max_tokens = min(max_tokens, self.max_tokens)
        if max_tokens < 1:
            raise RequestError(f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens")
        if max_tokens > self.max_tokens:
            raise RequestError(
                f"max_tokens must be <= {self.max_tokens} on this server, got {max_tokens}", param="max_tokens"
            )
        if len(prompt_ids) + max_tokens > self.context_limit:
            self._context_error(len(prompt_ids), max_tokens)
        if not (temperature >= 0.0):
            raise RequestError(f"temperature must be >= 0, got {temperature}", param="temperature")
        if not (0.0 < top_p <= 1.0):
            raise RequestError(f"top_p must be in (0, 1], got {top_p}", param="top_p")
        if top_k < 0 or top_k >= self.vocab_size:
            top_k = 0  # -1 (vLLM's "off") or a k beyond the vocabulary: no truncation
        stops = tuple(s for s in stop if s)
        for text in stops:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise RequestError("stop is not valid UTF-8 text", param="stop") from error
        fields: dict[str, Any] = {
            "max_new_tokens": int(max_tokens),
            "temperature": 0.0 if temperature < GREEDY_EPSILON else float(temperature),
            "top_p": float(top_p),
            "top_k": int(top_k),
            "seed": None if seed is None else int(seed) & SEED_MASK,
            "stop": stops,
        }
        if ignore_eos:
            if "ignore_eos" not in self._sampling_fields:
                raise RequestError("ignore_eos is not supported by this engine", param="ignore_eos")
            fields["ignore_eos"] = True
        try:
            params = self._sampling_params(**fields)
        except errors.InvalidInput as error:
            raise RequestError(str(error)) from error
        return PreparedRequest(prompt_ids=prompt_ids, params=params, prompt_text=prompt_text, stop=stops)

    def _context_error(self, num_prompt: int, num_output: int) -> None:
        raise RequestError(
            f"This model's maximum context length is {self.context_limit} tokens. However, you requested "
            f"{num_prompt + num_output} tokens ({num_prompt} in the prompt, {num_output} for the completion).",
            reason="context_length",
            param="prompt",
            code="context_length_exceeded",
        )

    def count_error(self, reason: str) -> None:
        self.metrics.error(reason)

    # -- generation ------------------------------------------------------------------------------------------

    async def generate(self, request: PreparedRequest) -> AsyncIterator[TextDelta]:
        """Stream the completion of ``request``, one delta per engine step (its text may be empty:
        held back until whole); the last delta has ``finish_reason`` set.

        Raises `RequestError` when the engine fails (500, counted as ``internal``, or 400 when the
        engine refuses the input). Closing the stream early (client gone) counts
        ``client_disconnect`` and an ``abort`` finish.
        """
        job = batching.GenerationJob(prompt_ids=request.prompt_ids, params=request.params)
        timing = _Timing(arrival=job.arrival)
        detok = IncrementalDetokenizer(self.tokenizer, request.stop)
        self.metrics.admitted(prompt_tokens=len(request.prompt_ids))
        self.batcher.submit(job)
        finished = False
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, batching.TokensEvent):
                    self._observe_tokens(timing, event)
                    # Yielded even when empty (text held back): the consumer can check its client.
                    yield TextDelta(text=detok.push(event.token_ids), num_tokens=len(event.token_ids))
                elif isinstance(event, batching.DoneEvent):
                    result = event.result
                    if timing.first is None and result.token_ids:  # engine streamed nothing
                        self._observe_tokens(timing, batching.TokensEvent(list(result.token_ids), event.at))
                        detok.push(list(result.token_ids))
                    text = detok.finish(list(result.token_ids))
                    finished = True
                    e2e = (timing.last or event.at) - timing.arrival
                    self._finished(request, result, timing, e2e)
                    yield TextDelta(
                        text=text,
                        num_tokens=0,
                        finish_reason=result.finish_reason,
                        prompt_tokens=len(request.prompt_ids),
                        completion_tokens=len(result.token_ids),
                        stats=result.stats,
                    )
                    return
                else:
                    finished = True
                    raise self._engine_error(event.error)
        finally:
            if not finished:
                self.batcher.cancel(job)
                self.metrics.error("client_disconnect")
                self.metrics.finished(
                    finish_reason="abort",
                    e2e_seconds=time.perf_counter() - timing.arrival,
                    num_drafts=0,
                    acceptance_rate=0.0,
                    mean_accepted_length=1.0,
                )

    async def complete(self, request: PreparedRequest) -> Completion:
        """Generate ``request`` to its end (non-streaming)."""
        parts: list[str] = []
        last: TextDelta | None = None
        async for delta in self.generate(request):
            parts.append(delta.text)
            last = delta
        assert last is not None and last.finish_reason is not None
        return Completion(
            text="".join(parts),
            finish_reason=last.finish_reason,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            stats=last.stats,
        )

    def _engine_error(self, error: BaseException) -> RequestError:
        if isinstance(error, errors.InvalidInput):
            message = str(error)
            reason = "context_length" if "context" in message.lower() else "invalid_request"
            self.metrics.error(reason)
            return RequestError(message, reason=reason)
        log.debug("request failed by engine error: %r", error)  # the batcher logged the traceback once
        self.metrics.error("internal")
        return RequestError("internal error while generating", status=500, reason="internal")

    def _observe_tokens(self, timing: _Timing, event: batching.TokensEvent) -> None:
        count = len(event.token_ids)
        if timing.first is None:
            timing.first = event.at
            self.metrics.first_token(event.at - timing.arrival)
            if count > 1:
                self.metrics.inter_token(0.0, num_tokens=count - 1)
        else:
            self.metrics.inter_token(event.at - (timing.last or event.at), num_tokens=count)
        timing.last = event.at
        timing.num_tokens += count

    def _finished(self, request: PreparedRequest, result: GenerationResult, timing: _Timing, e2e: float) -> None:
        stats = result.stats
        num_drafts = stats.num_drafts
        acceptance = stats.acceptance_rate
        accepted_length = stats.mean_accepted_length
        tokens_per_step = stats.tokens_per_step if stats.num_steps else None
        num_out = len(result.token_ids)
        itl_mean = ((timing.last or 0.0) - (timing.first or 0.0)) / (num_out - 1) if num_out > 1 else None
        self.metrics.finished(
            finish_reason=result.finish_reason,
            e2e_seconds=e2e,
            num_drafts=num_drafts,
            acceptance_rate=acceptance,
            mean_accepted_length=accepted_length,
            mean_itl_seconds=itl_mean,
            tokens_per_step=tokens_per_step,
        )
        records = self.records
        if records is None or not records.sampled():
            return
        ttft = (timing.first - timing.arrival) if timing.first is not None else e2e
        records.offer(
            telemetry_records.RequestRecordData(
                created_at=telemetry_records.now(),
                deployment=self.deployment,
                pair_name=self.pair.name,
                pair_version=self.pair_version,
                role=self.role,
                prompt_tokens=len(request.prompt_ids),
                output_tokens=num_out,
                acceptance_rate=acceptance,
                mean_accepted_length=accepted_length,
                ttft_s=ttft,
                e2e_s=e2e,
                itl_mean_s=itl_mean or 0.0,
                finish_reason=result.finish_reason,
                prompt=request.prompt_text,
            )
        )


def record_writer(
    config: ServingConfig, metrics: telemetry_metrics.ServingMetrics
) -> telemetry_records.RequestRecordWriter | None:
    """The request-record writer ``config`` asks for (None without a database URL or telemetry)."""
    if not config.database_url or not config.telemetry or config.record_sample_rate <= 0:
        return None
    writer = telemetry_records.RequestRecordWriter(
        config.database_url,
        sample_rate=config.record_sample_rate,
        redaction=telemetry_records.PromptRedaction.parse(config.record_prompt),
        on_written=metrics.records_written,
        on_dropped=metrics.records_dropped,
    )
    writer.start()
    return writer


def _sampling_params_class() -> type[SamplingParams]:
    from specops import engine as spec_engine

    return spec_engine.SamplingParams
