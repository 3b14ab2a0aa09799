"""The pair as a `kserve.Model`: KServe v1 ``:predict`` and v2 ``/infer`` over the same `ServedPair`.

v1: ``POST /v1/models/NAME:predict`` with ``{"instances": [PROMPT | {"prompt": ..., "max_tokens": ...}],
"parameters": {...defaults}}`` → ``{"predictions": [{"text", "finish_reason", "prompt_tokens",
"completion_tokens", "acceptance_rate", "mean_accepted_length"}]}``.

v2: ``POST /v2/models/NAME/infer`` with a BYTES input ``text_input`` (shape ``[n]``) and sampling
fields in ``parameters`` → BYTES output ``text_output`` plus ``finish_reason`` (BYTES) and
``completion_tokens`` (INT64). This is the text-generation convention of Triton's LLM backends.

Bad input raises ``kserve.errors.InvalidInput`` (KServe answers 400) after counting it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from pydantic import BaseModel, Field, ValidationError

from specops.serving import openai_routes, openai_schema
from specops.serving.served_pair import Completion, RequestError, ServedPair

#: Most prompts in one v1/v2 request.
MAX_INSTANCES = openai_schema.MAX_CHOICES


class PredictParameters(BaseModel):
    """Sampling fields of a v1 instance or v2 ``parameters`` (strict, like the OpenAI bodies)."""

    model_config = openai_schema.STRICT_CONFIG
    max_tokens: int | None = Field(default=16, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)
    seed: openai_schema.Seed | None = None
    stop: str | list[str] | None = Field(default=None)
    ignore_eos: bool = False


class PredictInstance(PredictParameters):
    prompt: str = Field(min_length=1)


class SpeculativeModel(kserve.Model):
    """A KServe model whose predict runs the served pair (already loaded: ready at once)."""

    def __init__(self, served: ServedPair) -> None:
        super().__init__(served.model_name)
        self.served = served
        self.ready = True

    def load(self) -> bool:
        self.ready = True
        return True

    def stop(self) -> None:
        """KServe unloads models at shutdown: end the running engine call at its next step."""
        self.served.batcher.stop()

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> Any:
        try:
            if isinstance(payload, InferRequest):
                return await self._predict_v2(payload)
            if isinstance(payload, dict):
                return await self._predict_v1(payload)
            raise RequestError("request body must be a JSON object")
        except RequestError as error:
            openai_routes.count_error(self.served, error.reason)
            if error.status >= 500:
                raise
            raise InvalidInput(error.message) from error

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        openai_routes.count_error(self.served, "invalid_request")
        raise InvalidInput("explain is not supported by this model")

    # -- v1 -------------------------------------------------------------------------------------------------

    async def _predict_v1(self, payload: dict[str, Any]) -> dict[str, Any]:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise RequestError('"instances" must be a non-empty list of prompts')
        if len(instances) > MAX_INSTANCES:
            raise RequestError(f'"instances" holds at most {MAX_INSTANCES} prompts')
        defaults = payload.get("parameters") or {}
        if not isinstance(defaults, dict):
            raise RequestError('"parameters" must be an object')
        parsed = []
        for index, instance in enumerate(instances):
            fields = {**defaults, **(instance if isinstance(instance, dict) else {"prompt": instance})}
            parsed.append(_validated(PredictInstance, fields, where=f"instances[{index}]"))
        results = await self._complete([(item.prompt, item) for item in parsed])
        return {"predictions": [_prediction(result) for result in results]}

    # -- v2 -------------------------------------------------------------------------------------------------

    async def _predict_v2(self, request: InferRequest) -> InferResponse:
        inputs = request.inputs or []
        chosen = next((i for i in inputs if i.name == "text_input"), inputs[0] if len(inputs) == 1 else None)
        if chosen is None:
            raise RequestError('expected a BYTES input named "text_input"')
        if chosen.datatype != "BYTES":
            raise RequestError(f'input "{chosen.name}" must be BYTES, got {chosen.datatype}')
        prompts = [_text(item) for item in _flatten(chosen.data)]
        if not prompts:
            raise RequestError(f'input "{chosen.name}" is empty')
        if len(prompts) > MAX_INSTANCES:
            raise RequestError(f'input "{chosen.name}" holds at most {MAX_INSTANCES} prompts')
        params = _validated(PredictParameters, dict(request.parameters or {}), where="parameters")
        results = await self._complete([(prompt, params) for prompt in prompts])
        outputs = [
            InferOutput(name="text_output", shape=[len(results)], datatype="BYTES", data=[r.text for r in results]),
            InferOutput(
                name="finish_reason", shape=[len(results)], datatype="BYTES", data=[r.finish_reason for r in results]
            ),
            InferOutput(
                name="completion_tokens",
                shape=[len(results)],
                datatype="INT64",
                data=[r.completion_tokens for r in results],
            ),
        ]
        return InferResponse(response_id=request.id or uuid.uuid4().hex, model_name=self.name, infer_outputs=outputs)

    # -- shared ---------------------------------------------------------------------------------------------

    async def _complete(self, items: list[tuple[str, PredictParameters]]) -> list[Completion]:
        served = self.served
        prepared = []
        for prompt, params in items:
            stop = (
                () if params.stop is None else ((params.stop,) if isinstance(params.stop, str) else tuple(params.stop))
            )
            prepared.append(
                served.prepare(
                    prompt=prompt,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=params.top_k,
                    seed=params.seed,
                    stop=stop,
                    ignore_eos=params.ignore_eos,
                )
            )
        try:
            return list(await asyncio.gather(*(served.complete(p) for p in prepared)))
        except RequestError:
            openai_routes.mark_counted()
            raise


def _validated(model: type[BaseModel], fields: dict[str, Any], *, where: str) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise RequestError(
            f"{where}.{loc}: {first.get('msg', 'invalid value')}"
            if loc
            else f"{where}: {first.get('msg', 'invalid value')}"
        ) from error


def _flatten(data: Any) -> list[Any]:
    if data is None:
        return []
    if isinstance(data, (str, bytes)):
        return [data]
    if hasattr(data, "tolist"):
        data = data.tolist()
    if not isinstance(data, (list, tuple)):
        raise RequestError("text_input data must be a list of strings")
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return flat


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        try:
            item = item.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError("text_input is not UTF-8") from error
    if not isinstance(item, str):
        raise RequestError(f"text_input items must be strings, got {type(item).__name__}")
    if not item:
        raise RequestError("text_input items must not be empty")
    return item


def _prediction(result: Completion) -> dict[str, Any]:
    stats = result.stats
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "acceptance_rate": stats.acceptance_rate if stats is not None else 0.0,
        "mean_accepted_length": stats.mean_accepted_length if stats is not None else 1.0,
    }
