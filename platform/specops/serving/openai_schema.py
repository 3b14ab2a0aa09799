"""OpenAI-compatible request bodies (strictly validated) and response payloads.

Requests are pydantic models so that the server's OpenAPI description states them (the schemathesis
fuzz test reads it). Validation is strict: a string where a number belongs is a 400, not a coercion.
Fields SpecOps does not implement are accepted only at their no-op values (``n`` up to the batch,
``logprobs`` null, penalties 0, ...), so a client is told rather than silently served something else.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from specops.serving.engine_port import ServingTokenizer

#: Most prompts x n choices in one request.
MAX_CHOICES = 16
#: Most stop strings (OpenAI's limit).
MAX_STOP = 4

#: Strict (no coercion), unknown fields ignored, no NaN or infinity.
STRICT_CONFIG = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

Seed = Annotated[int, Field(ge=-(2**63), lt=2**64)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


def _utf8(value: Any, field_name: str) -> Any:
    """Refuse ``value`` when a text in it (the string itself, the strings of a list, the text of its
    parts) is not valid UTF-8; token ids and other items pass."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        text = item.text if isinstance(item, TextPart) else item
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{field_name} is not valid UTF-8 text") from error
    return value


class StreamOptions(BaseModel):
    model_config = STRICT_CONFIG
    include_usage: bool = False


class _SamplingFields(BaseModel):
    model_config = STRICT_CONFIG

    model: str | None = Field(default=None, description="Served model name (or deployment name).")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1, description="vLLM extension; 0 or -1: no top-k truncation.")
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    seed: Seed | None = None
    ignore_eos: bool = Field(default=False, description="vLLM extension: generate exactly max_tokens.")
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_utf8(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _utf8(value, "stop")

    @model_validator(mode="after")
    def _unsupported(self) -> _SamplingFields:
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported (use 0)")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        return self

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def sampling(self, copy: int) -> dict[str, Any]:
        """Sampling settings of choice `copy` (of `n`): a seeded request's choices use seed + copy."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": None if self.seed is None else self.seed + copy,
            "stop": self.stop_list(),
            "ignore_eos": self.ignore_eos,
        }


class CompletionRequest(_SamplingFields):
    """POST /openai/v1/completions."""

    prompt: (
        Annotated[str, Field(min_length=1)]
        | TokenIds
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_CHOICES)]
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_CHOICES)]
    )
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=0, description="Not supported: null or 0.")
    best_of: int | None = Field(default=None, ge=1, le=1)
    suffix: str | None = Field(default=None, max_length=0, description="Not supported.")

    @field_validator("prompt")
    @classmethod
    def _prompt_utf8(cls, value: Any) -> Any:
        return _utf8(value, "prompt")

    def prompts(self) -> list[str | list[int]]:
        """The prompts as a list (a single string or token list becomes one item)."""
        value = self.prompt
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [list(value)]  # type: ignore[arg-type]
        return list(value)  # type: ignore[arg-type]


class TextPart(BaseModel):
    model_config = STRICT_CONFIG
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = STRICT_CONFIG
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _content_utf8(cls, value: Any) -> Any:
        return _utf8(value, "content")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_SamplingFields):
    """POST /openai/v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = Field(default=None, description="Not supported: null or false.")
    top_logprobs: int | None = Field(default=None, ge=0, le=0)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=0, description="Not supported.")

    @model_validator(mode="after")
    def _no_logprobs(self) -> ChatCompletionRequest:
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        return self

    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def render_chat(tokenizer: ServingTokenizer, messages: list[ChatMessage]) -> str:
    """The prompt text for ``messages``: the tokenizer's chat template, or a plain role-prefixed one."""
    turns = [{"role": m.role, "content": m.text()} for m in messages]
    if tokenizer.chat_template:
        try:
            return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that refuses these roles: fall back to the plain form
            pass
    return "".join(f"{turn['role']}: {turn['content']}\n" for turn in turns) + "assistant:"


# -- responses ---------------------------------------------------------------------------------------------


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(
    message: str, *, error_type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def models_list(names: list[str], *, created: int, owner: str = "specops") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": owner} for name in names],
    }


def now() -> int:
    return int(time.time())
