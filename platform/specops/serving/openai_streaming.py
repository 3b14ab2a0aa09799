"""Server-sent events of the OpenAI routes: completion and chat chunks as the served pair streams them.

A step that adds no text sends nothing; several choices of one request are merged as they come, each
chunk tagged with its choice index. An engine failure ends the stream with OpenAI's error object.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse

from specops.serving import openai_schema
from specops.serving.served_pair import PreparedRequest, RequestError, ServedPair, TextDelta

try:  # orjson ships with kserve; fall back to json
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # pragma: no cover

    def _dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error_body(error: RequestError) -> dict[str, Any]:
    """OpenAI's error object for ``error`` (the JSON body of a 4xx, or the last event of a stream)."""
    return openai_schema.error_body(error.message, error_type=error.error_type, param=error.param, code=error.code)


async def _merged(served: ServedPair, prepared: list[PreparedRequest]) -> AsyncIterator[tuple[int, TextDelta]]:
    """Deltas of several generations as they come, tagged with their choice index."""
    if len(prepared) == 1:
        async with contextlib.aclosing(served.generate(prepared[0])) as deltas:
            async for delta in deltas:
                yield 0, delta
        return
    import asyncio

    queue: asyncio.Queue[tuple[int, TextDelta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, request: PreparedRequest) -> None:
        try:
            async with contextlib.aclosing(served.generate(request)) as deltas:
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


@dataclass(frozen=True)
class ChunkFormat:
    """What one endpoint's stream chunks look like (text completion or chat)."""

    envelope: Callable[[list[dict[str, Any]]], dict[str, Any]]  # wraps choices in a chunk object
    chunk: Callable[[int, TextDelta | None, str | None], dict[str, Any]]  # a choice's text and finish reason
    first: Callable[[int], dict[str, Any] | None]  # the chunk that opens a choice, if any


def sse_response(
    served: ServedPair,
    prepared: list[PreparedRequest],
    *,
    chunks: ChunkFormat,
    include_usage: bool,
    disconnected: Callable[[], Awaitable[bool]],
) -> StreamingResponse:
    """A server-sent-events response streaming ``prepared`` (never cached, never buffered by a proxy)."""
    events = _stream_events(served, prepared, chunks=chunks, include_usage=include_usage, disconnected=disconnected)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )


async def _stream_events(
    served: ServedPair,
    prepared: list[PreparedRequest],
    *,
    chunks: ChunkFormat,
    include_usage: bool,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """SSE lines for ``prepared``; an engine failure ends the stream with an error event.

    With ``include_usage`` a last chunk without choices carries the usage.

    A step that adds no text sends nothing, so the client's departure would go unseen until text
    flows again: such steps ask ``disconnected()`` instead, and a departed client ends the stream
    (counted as ``client_disconnect``).
    """
    prompt_tokens = completion_tokens = 0
    try:
        for index in range(len(prepared)):
            opening = chunks.first(index)
            if opening is not None:
                yield f"data: {_dumps(opening)}\n\n"
        async with contextlib.aclosing(_merged(served, prepared)) as deltas:
            async for index, delta in deltas:
                if delta.finish_reason is not None:
                    prompt_tokens += delta.prompt_tokens
                    completion_tokens += delta.completion_tokens
                if delta.text or delta.finish_reason is not None:
                    yield f"data: {_dumps(chunks.chunk(index, delta, delta.finish_reason))}\n\n"
                elif await disconnected():
                    return
        if include_usage:
            usage = openai_schema.usage(prompt_tokens, completion_tokens)
            yield f"data: {_dumps({**chunks.envelope([]), 'usage': usage})}\n\n"
    except RequestError as error:
        yield f"data: {_dumps(error_body(error))}\n\n"
    yield "data: [DONE]\n\n"


def completion_chunks(prepared: list[PreparedRequest], *, ident: str, model: str, echo: bool) -> ChunkFormat:
    """Chunks of ``/completions`` (``text_completion``); with ``echo`` each choice opens with its prompt."""
    created = openai_schema.now()

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

    return ChunkFormat(envelope=envelope, chunk=chunk, first=first)


def chat_chunks(*, ident: str, model: str) -> ChunkFormat:
    """Chunks of ``/chat/completions`` (``chat.completion.chunk``); each choice opens with the role."""
    created = openai_schema.now()

    def envelope(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}

    def chunk(index: int, delta: TextDelta | None, finish: str | None) -> dict[str, Any]:
        content = {"content": delta.text} if delta and delta.text else {}
        return envelope([{"index": index, "delta": content, "logprobs": None, "finish_reason": finish}])

    def first(index: int) -> dict[str, Any]:
        return envelope(
            [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    return ChunkFormat(envelope=envelope, chunk=chunk, first=first)
