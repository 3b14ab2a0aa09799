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

import contextvars
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from specops.serving import openai_schema, openai_streaming
from specops.serving.served_pair import Completion, PreparedRequest, RequestError, ServedPair

log = logging.getLogger(__name__)

#: Paths whose failures are counted in ``specops_request_errors_total``.
COUNTED_PREFIXES = ("/openai/", "/v1/models", "/v2/models")


class _ErrorMark:
    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False


_ERROR_MARK: contextvars.ContextVar[_ErrorMark | None] = contextvars.ContextVar("specops_error_mark", default=None)


def count_error(served: ServedPair, reason: str) -> None:
    """Count a failed request once, and tell the middleware it is counted."""
    mark = _ERROR_MARK.get()
    if mark is not None:
        if mark.counted:
            return
        mark.counted = True
    served.count_error(reason)


def mark_counted() -> None:
    """Tell the middleware this request's error was already counted (by the served pair)."""
    mark = _ERROR_MARK.get()
    if mark is not None:
        mark.counted = True


class ErrorAccountingMiddleware:
    """Pure ASGI middleware: counts error responses on inference paths that no handler counted.

    It also answers KServe's 501 (a request for something KServe does not implement, such as a
    ``model_version`` on v2 routes) as 400: the request asked for what this server does not offer,
    which is the client's error, not the server's.
    """

    def __init__(self, app: Any, served: ServedPair) -> None:
        self.app = app
        self.served = served

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
                self.served.count_error("internal")
            raise
        finally:
            _ERROR_MARK.reset(token)
        if status >= 400 and not mark.counted:
            mark.counted = True
            self.served.count_error(_reason_for_status(status))


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


def _error_response(served: ServedPair, error: RequestError) -> JSONResponse:
    count_error(served, error.reason)
    return JSONResponse(
        status_code=error.status,
        content=openai_streaming.error_body(error),
    )


def _route_class(served: ServedPair) -> type[APIRoute]:
    class OpenAIRoute(APIRoute):
        """Turns body validation failures (bad JSON, wrong types) into OpenAI 400 errors."""

        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    message, param = _validation_message(error)
                    return _error_response(served, RequestError(message, param=param))
                except RequestError as error:
                    return _error_response(served, error)

            return guarded

    return OpenAIRoute


def router(served: ServedPair) -> APIRouter:
    """The ``/openai/v1`` routes for the ``served`` pair."""
    api = APIRouter(prefix="/openai/v1", route_class=_route_class(served), tags=["openai"])
    bad_request = {400: {"description": "Invalid request (OpenAI error object)"}, 404: {"description": "Unknown model"}}

    @api.get("/models")
    async def list_models() -> JSONResponse:
        """Models this server serves (the model name, and the deployment name as an alias)."""
        names = sorted(served.served_names, key=lambda n: (n != served.model_name, n))
        return JSONResponse(openai_schema.models_list(names, created=served.created))

    @api.post("/completions", responses=bad_request)
    async def completions(body: openai_schema.CompletionRequest, request: Request) -> Response:
        """Text completion; ``stream: true`` answers with server-sent events."""
        served.check_model(body.model)
        prompts = body.prompts()
        if len(prompts) * body.n > openai_schema.MAX_CHOICES:
            raise RequestError(f"prompts x n must be <= {openai_schema.MAX_CHOICES}", param="n")
        prepared = [
            served.prepare(prompt=prompt, max_tokens=body.max_tokens, **body.sampling(copy))
            for prompt in prompts
            for copy in range(body.n)
        ]
        ident = openai_schema.completion_id("cmpl")
        model = body.model or served.model_name
        return await _answer(
            served,
            prepared,
            body=body,
            request=request,
            kind="text_completion",
            chunks=openai_streaming.completion_chunks(prepared, ident=ident, model=model, echo=body.echo),
            ident=ident,
            model=model,
            choice=lambda p, r: {"text": (p.prompt_text if body.echo else "") + r.text},
        )

    @api.post("/chat/completions", responses=bad_request)
    async def chat_completions(body: openai_schema.ChatCompletionRequest, request: Request) -> Response:
        """Chat completion; ``stream: true`` answers with server-sent events."""
        served.check_model(body.model)
        prompt = openai_schema.render_chat(served.tokenizer, body.messages)
        prepared = [
            served.prepare(
                prompt=prompt, max_tokens=body.output_limit(), default_to_context=True, **body.sampling(copy)
            )
            for copy in range(body.n)
        ]
        ident = openai_schema.completion_id("chatcmpl")
        model = body.model or served.model_name
        return await _answer(
            served,
            prepared,
            body=body,
            request=request,
            kind="chat.completion",
            chunks=openai_streaming.chat_chunks(ident=ident, model=model),
            ident=ident,
            model=model,
            choice=lambda _, r: {"message": {"role": "assistant", "content": r.text}},
        )

    return api


async def _answer(
    served: ServedPair,
    prepared: list[PreparedRequest],
    *,
    body: openai_schema.CompletionRequest | openai_schema.ChatCompletionRequest,
    request: Request,
    kind: str,
    chunks: openai_streaming.ChunkFormat,
    ident: str,
    model: str,
    choice: Callable[[PreparedRequest, Completion], dict[str, Any]],
) -> Response:
    """Stream the requests' chunks as server-sent events, or answer once with every choice (``kind`` object)."""
    if body.stream:
        return openai_streaming.sse_response(
            served,
            prepared,
            chunks=chunks,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            disconnected=request.is_disconnected,
        )
    results = await _complete_all(served, prepared)
    choices = [
        {"index": index, **choice(p, r), "logprobs": None, "finish_reason": r.finish_reason}
        for index, (p, r) in enumerate(zip(prepared, results, strict=True))
    ]
    return JSONResponse(
        {
            "id": ident,
            "object": kind,
            "created": openai_schema.now(),
            "model": model,
            "choices": choices,
            "usage": _usage(results),
            "speculation": _speculation(results),
        }
    )


async def _complete_all(served: ServedPair, prepared: list[PreparedRequest]) -> list[Completion]:
    import asyncio

    try:
        if len(prepared) == 1:
            return [await served.complete(prepared[0])]
        return list(await asyncio.gather(*(served.complete(p) for p in prepared)))
    except RequestError:
        mark_counted()  # the served pair counted it
        raise


def _usage(results: list[Completion]) -> dict[str, int]:
    return openai_schema.usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results))


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


def install(app: FastAPI, served: ServedPair) -> None:
    """Add the OpenAI routes, the repository guard and error accounting to ``app`` (before it starts)."""
    app.include_router(router(served))
    app.include_router(repository_guard())
    app.add_middleware(ErrorAccountingMiddleware, served=served)
