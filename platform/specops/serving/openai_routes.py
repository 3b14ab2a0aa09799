"""OpenAI-compatible routes on the KServe server's FastAPI app, and error accounting for every route.

kserve 0.21 registers its own OpenAI routes only when vLLM is importable (``kserve[llm]`` pins a
torch that conflicts with ours), so SpecOps adds ``/openai/v1/completions``,
``/openai/v1/chat/completions`` and ``/openai/v1/models`` itself, on the same app and port as
KServe's v1/v2 routes, before ``ModelServer.start``.

Every failed request is counted exactly once in ``specops_request_errors_total``: handlers count
the errors they understand (and mark the request as counted); `ErrorAccountingMiddleware` counts the
rest by status (404 → not_found, other 4xx → invalid_request, 5xx → internal) for the inference paths.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from specops.serving import protocol
from specops.serving.runtime import Completion, PreparedRequest, RequestError, ServingRuntime, TextDelta

log = logging.getLogger(__name__)

#: Paths whose failures are counted in ``specops_request_errors_total``.
COUNTED_PREFIXES = ("/openai/", "/v1/models", "/v2/models")

try:  # orjson ships with kserve; fall back to json
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # pragma: no cover

    def _dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _ErrorMark:
    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False


_ERROR_MARK: contextvars.ContextVar[_ErrorMark | None] = contextvars.ContextVar("specops_error_mark", default=None)


def count_error(runtime: ServingRuntime, reason: str) -> None:
    """Count a failed request once, and tell the middleware it is counted."""
    mark = _ERROR_MARK.get()
    if mark is not None:
        if mark.counted:
            return
        mark.counted = True
    runtime.count_error(reason)


def mark_counted() -> None:
    """Tell the middleware this request's error was already counted (by the runtime)."""
    mark = _ERROR_MARK.get()
    if mark is not None:
        mark.counted = True


class ErrorAccountingMiddleware:
    """Pure ASGI middleware: counts error responses on inference paths that no handler counted.

    It also answers KServe's 501 (a request for something KServe does not implement, such as a
    ``model_version`` on v2 routes) as 400: the request asked for what this server does not offer,
    which is the client's error, not the server's.
    """

    def __init__(self, app: Any, runtime: ServingRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(COUNTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        mark = _ErrorMark()
        token = _ERROR_MARK.set(mark)
        status = 0

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status == 501:
                    status = 400
                    message = {**message, "status": 400}
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            if not mark.counted:
                mark.counted = True
                self.runtime.count_error("internal")
            raise
        finally:
            _ERROR_MARK.reset(token)
        if status >= 400 and not mark.counted:
            mark.counted = True
            self.runtime.count_error(_reason_for_status(status))


def _reason_for_status(status: int) -> str:
    if status == 404:
        return "not_found"
    if status >= 500:
        return "internal"
    return "invalid_request"


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    problems = error.errors()
    if not problems:
        return "invalid request body", None
    first = problems[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('msg', '')}".rstrip(": "), None
    field = ".".join(loc) if loc else None
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return (f"{field}: {message}{more}" if field else f"{message}{more}"), (loc[0] if loc else None)


def _error_response(runtime: ServingRuntime, error: RequestError) -> JSONResponse:
    count_error(runtime, error.reason)
    return JSONResponse(
        status_code=error.status,
        content=protocol.error_body(error.message, error_type=error.error_type, param=error.param, code=error.code),
    )


def _route_class(runtime: ServingRuntime) -> type[APIRoute]:
    class OpenAIRoute(APIRoute):
        """Turns body validation failures (bad JSON, wrong types) into OpenAI 400 errors."""

        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    message, param = _validation_message(error)
                    return _error_response(runtime, RequestError(message, param=param))
                except RequestError as error:
                    return _error_response(runtime, error)

            return guarded

    return OpenAIRoute


def router(runtime: ServingRuntime) -> APIRouter:
    """The ``/openai/v1`` routes for ``runtime``."""
    api = APIRouter(prefix="/openai/v1", route_class=_route_class(runtime), tags=["openai"])
    bad_request = {400: {"description": "Invalid request (OpenAI error object)"}, 404: {"description": "Unknown model"}}

    @api.get("/models")
    async def list_models() -> JSONResponse:
        """Models this server serves (the model name, and the deployment name as an alias)."""
        names = sorted(runtime.served_names, key=lambda n: (n != runtime.model_name, n))
        return JSONResponse(protocol.models_list(names, created=runtime.created))

    @api.post("/completions", responses=bad_request)
    async def completions(body: protocol.CompletionRequest, request: Request) -> Response:
        """Text completion; ``stream: true`` answers with server-sent events."""
        runtime.check_model(body.model)
        prompts = body.prompts()
        if len(prompts) * body.n > protocol.MAX_CHOICES:
            raise RequestError(f"prompts x n must be <= {protocol.MAX_CHOICES}", param="n")
        prepared = [
            runtime.prepare(prompt=prompt, max_tokens=body.max_tokens, **body.sampling(copy))
            for prompt in prompts
            for copy in range(body.n)
        ]
        ident = protocol.completion_id("cmpl")
        model = body.model or runtime.model_name
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(
                _completion_stream(
                    runtime,
                    prepared,
                    ident=ident,
                    model=model,
                    echo=body.echo,
                    include_usage=include_usage,
                    disconnected=request.is_disconnected,
                )
            )
        results = await _complete_all(runtime, prepared)
        choices = [
            {
                "index": index,
                "text": (p.prompt_text if body.echo else "") + r.text,
                "logprobs": None,
                "finish_reason": r.finish_reason,
            }
            for index, (p, r) in enumerate(zip(prepared, results, strict=True))
        ]
        return JSONResponse(
            {
                "id": ident,
                "object": "text_completion",
                "created": protocol.now(),
                "model": model,
                "choices": choices,
                "usage": _usage(results),
                "speculation": _speculation(results),
            }
        )

    @api.post("/chat/completions", responses=bad_request)
    async def chat_completions(body: protocol.ChatCompletionRequest, request: Request) -> Response:
        """Chat completion; ``stream: true`` answers with server-sent events."""
        runtime.check_model(body.model)
        prompt = protocol.render_chat(runtime.tokenizer, body.messages)
        prepared = [
            runtime.prepare(
                prompt=prompt, max_tokens=body.output_limit(), default_to_context=True, **body.sampling(copy)
            )
            for copy in range(body.n)
        ]
        ident = protocol.completion_id("chatcmpl")
        model = body.model or runtime.model_name
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(
                _chat_stream(
                    runtime,
                    prepared,
                    ident=ident,
                    model=model,
                    include_usage=include_usage,
                    disconnected=request.is_disconnected,
                )
            )
        results = await _complete_all(runtime, prepared)
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": r.text},
                "logprobs": None,
                "finish_reason": r.finish_reason,
            }
            for index, r in enumerate(results)
        ]
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": protocol.now(),
                "model": model,
                "choices": choices,
                "usage": _usage(results),
                "speculation": _speculation(results),
            }
        )

    return api


async def _complete_all(runtime: ServingRuntime, prepared: list[PreparedRequest]) -> list[Completion]:
    import asyncio

    try:
        if len(prepared) == 1:
            return [await runtime.complete(prepared[0])]
        return list(await asyncio.gather(*(runtime.complete(p) for p in prepared)))
    except RequestError:
        mark_counted()  # the runtime counted it
        raise


def _usage(results: list[Completion]) -> dict[str, int]:
    return protocol.usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results))


def _speculation(results: list[Completion]) -> dict[str, Any]:
    """SpecOps extension: what speculation did for this response (totals over its choices)."""
    drafts = draft_tokens = accepted = 0
    for r in results:
        if r.stats is not None:
            drafts += r.stats.num_drafts
            draft_tokens += r.stats.num_draft_tokens
            accepted += r.stats.num_accepted_tokens
    return {
        "num_drafts": drafts,
        "num_draft_tokens": draft_tokens,
        "num_accepted_tokens": accepted,
        "acceptance_rate": accepted / draft_tokens if draft_tokens else 0.0,
        "mean_accepted_length": 1.0 + accepted / drafts if drafts else 1.0,
    }


# -- streaming -----------------------------------------------------------------------------------------------


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )


async def _merged(runtime: ServingRuntime, prepared: list[PreparedRequest]) -> AsyncIterator[tuple[int, TextDelta]]:
    """Deltas of several generations as they come, tagged with their choice index."""
    if len(prepared) == 1:
        async with contextlib.aclosing(runtime.generate(prepared[0])) as deltas:
            async for delta in deltas:
                yield 0, delta
        return
    import asyncio

    queue: asyncio.Queue[tuple[int, TextDelta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, request: PreparedRequest) -> None:
        try:
            async with contextlib.aclosing(runtime.generate(request)) as deltas:
                async for delta in deltas:
                    queue.put_nowait((index, delta))
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            queue.put_nowait((index, error))
        finally:
            queue.put_nowait((index, None))

    tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(prepared)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


async def _stream_events(
    runtime: ServingRuntime,
    prepared: list[PreparedRequest],
    *,
    envelope: Callable[[list[dict[str, Any]]], dict[str, Any]],
    chunk: Callable[[int, TextDelta | None, str | None], dict[str, Any]],
    first: Callable[[int], dict[str, Any] | None],
    include_usage: bool,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """SSE lines for ``prepared``; an engine failure ends the stream with an error event.

    ``envelope(choices)`` wraps choices in a chunk object; with ``include_usage`` a last chunk without
    choices carries the usage.

    A step that adds no text sends nothing, so the client's departure would go unseen until text
    flows again: such steps ask ``disconnected()`` instead, and a departed client ends the stream
    (counted as ``client_disconnect``).
    """
    prompt_tokens = completion_tokens = 0
    try:
        for index in range(len(prepared)):
            opening = first(index)
            if opening is not None:
                yield f"data: {_dumps(opening)}\n\n"
        async with contextlib.aclosing(_merged(runtime, prepared)) as deltas:
            async for index, delta in deltas:
                if delta.finish_reason is not None:
                    prompt_tokens += delta.prompt_tokens
                    completion_tokens += delta.completion_tokens
                if delta.text or delta.finish_reason is not None:
                    yield f"data: {_dumps(chunk(index, delta, delta.finish_reason))}\n\n"
                elif await disconnected():
                    return
        if include_usage:
            usage = protocol.usage(prompt_tokens, completion_tokens)
            yield f"data: {_dumps({**envelope([]), 'usage': usage})}\n\n"
    except RequestError as error:
        body = protocol.error_body(error.message, error_type=error.error_type, param=error.param, code=error.code)
        yield f"data: {_dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _completion_stream(
    runtime: ServingRuntime,
    prepared: list[PreparedRequest],
    *,
    ident: str,
    model: str,
    echo: bool,
    include_usage: bool,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    created = protocol.now()

    def envelope(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": choices}

    def chunk(index: int, delta: TextDelta | None, finish: str | None) -> dict[str, Any]:
        return envelope(
            [{"index": index, "text": delta.text if delta else "", "logprobs": None, "finish_reason": finish}]
        )

    def first(index: int) -> dict[str, Any] | None:
        if not echo:
            return None
        return envelope(
            [{"index": index, "text": prepared[index].prompt_text, "logprobs": None, "finish_reason": None}]
        )

    return _stream_events(
        runtime,
        prepared,
        envelope=envelope,
        chunk=chunk,
        first=first,
        include_usage=include_usage,
        disconnected=disconnected,
    )


def _chat_stream(
    runtime: ServingRuntime,
    prepared: list[PreparedRequest],
    *,
    ident: str,
    model: str,
    include_usage: bool,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    created = protocol.now()

    def envelope(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}

    def chunk(index: int, delta: TextDelta | None, finish: str | None) -> dict[str, Any]:
        content = {"content": delta.text} if delta and delta.text else {}
        return envelope([{"index": index, "delta": content, "logprobs": None, "finish_reason": finish}])

    def first(index: int) -> dict[str, Any]:
        return envelope(
            [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    return _stream_events(
        runtime,
        prepared,
        envelope=envelope,
        chunk=chunk,
        first=first,
        include_usage=include_usage,
        disconnected=disconnected,
    )


def repository_guard() -> APIRouter:
    """Refuse KServe's model-repository load/unload (registered ahead of KServe's own routes).

    This server serves exactly one pair version; unloading it through an unauthenticated POST would
    take the deployment down, and loading another is the rollout's job (a new server), so both
    answer 403.
    """
    guard = APIRouter(prefix="/v2/repository/models", include_in_schema=False)

    async def refuse(model_name: str) -> JSONResponse:
        return JSONResponse(
            status_code=403,
            content={"error": "this server serves one pair version; load and unload are done by rolling out"},
        )

    guard.add_api_route("/{model_name}/load", refuse, methods=["POST"])
    guard.add_api_route("/{model_name}/unload", refuse, methods=["POST"])
    return guard


def install(app: FastAPI, runtime: ServingRuntime) -> None:
    """Add the OpenAI routes, the repository guard and error accounting to ``app`` (before it starts)."""
    app.include_router(router(runtime))
    app.include_router(repository_guard())
    app.add_middleware(ErrorAccountingMiddleware, runtime=runtime)
