"""The MLflow pyfunc flavour of a pair version: ``mlflow.pyfunc.load_model("models:/NAME/3")``
returns a model whose ``predict(["prompt", ...])`` generates with speculative decoding.

Imports mlflow at module level: import this module only where mlflow is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc

ARTIFACT_TARGET = "target"
ARTIFACT_DRAFT = "draft"
ARTIFACT_SPEC = "pair_spec"
ARTIFACT_QUALIFICATION = "qualification"


class SpeculativePairModel(mlflow.pyfunc.PythonModel):
    """A target + draft pair served by :class:`specops.engine.SpeculativeEngine`.

    ``predict`` takes a list of prompt strings (or a DataFrame with a ``prompt`` column) and returns
    the completions, generated with the pair's speculation settings and default sampling;
    ``model.unwrap_python_model().generate(prompts, max_new_tokens=...)`` takes sampling overrides.
    """

    def __init__(self) -> None:
        self.engine: Any = None
        self.spec: dict[str, Any] = {}
        self.pair_dir: Path | None = None

    def load_context(self, context: Any) -> None:
        """Load the engine from the version's artifacts."""
        self.load_from(
            target=Path(context.artifacts[ARTIFACT_TARGET]),
            draft=Path(context.artifacts[ARTIFACT_DRAFT]) if ARTIFACT_DRAFT in context.artifacts else None,
            spec_path=Path(context.artifacts[ARTIFACT_SPEC]),
        )

    def load_from(self, *, target: Path, draft: Path | None, spec_path: Path, device: str = "cpu") -> None:
        """Load the engine from plain folders (what ``load_context`` does with the artifacts)."""
        from specops.engine import SpeculationConfig, SpeculativeEngine

        self.spec = json.loads(spec_path.read_text())
        self.pair_dir = target.parent
        speculation = self.spec.get("speculation", {})
        proposer = speculation.get("proposer", "draft") if draft is not None else "none"
        config = SpeculationConfig(
            proposer=proposer,
            num_speculative_tokens=int(speculation.get("num_speculative_tokens", 4)),
            adaptive=bool(speculation.get("adaptive", True)),
        )
        self.engine = SpeculativeEngine.load(
            target, draft if proposer == "draft" else None, config=config, device=device
        )

    def predict(self, context: Any, model_input: list[str], params: dict[str, Any] | None = None) -> list[str]:
        """Completions of ``model_input`` (list of prompts, a DataFrame with ``prompt``, or one string)."""
        return self.generate(model_input, **(params or {}))

    def generate(self, prompts: Any, **overrides: Any) -> list[str]:
        """Completions of ``prompts``; ``overrides`` replace the spec's sampling defaults."""
        from specops.engine import SamplingParams

        if self.engine is None:
            raise RuntimeError("the pair model is not loaded")
        prompts = _as_prompts(prompts)
        speculation = self.spec.get("speculation", {})
        params = SamplingParams(
            max_new_tokens=int(overrides.get("max_new_tokens", speculation.get("max_new_tokens", 64))),
            temperature=float(overrides.get("temperature", speculation.get("temperature", 0.0))),
            top_p=float(overrides.get("top_p", speculation.get("top_p", 1.0))),
            top_k=int(overrides.get("top_k", speculation.get("top_k", 0))),
        )
        tokenizer = self.engine.tokenizer
        encoded = [list(tokenizer(prompt)["input_ids"]) for prompt in prompts]
        results = self.engine.generate(encoded, [params] * len(encoded))
        return [tokenizer.decode(result.token_ids, skip_special_tokens=True) for result in results]


def _as_prompts(model_input: Any) -> list[str]:
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # pandas DataFrame
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return [str(value) for value in model_input[column].tolist()]
    if isinstance(model_input, dict):
        value = model_input.get("prompt", model_input.get("prompts"))
        return _as_prompts(value)
    return [str(value) for value in model_input]
