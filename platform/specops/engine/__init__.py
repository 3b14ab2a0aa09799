"""Speculative decoding on torch + transformers: propose, verify, accept, KV caches, adaptive k, statistics.

Imports nothing of SpecOps but `specops.errors`, so it runs where only torch and transformers exist.
The names below are the engine's public surface; its modules are:

- `engine` — `SpeculativeEngine`: load a pair, `generate`, the step loop;
- `scheduler` — the rows of a call: admission, budgets, stops, results;
- `config` — `SamplingParams`, `SpeculationConfig` and its grouped settings;
- `proposers` — one proposer per file, built by name through `PROPOSERS`;
- `verify`, `verify_step` — the verifier's rule, and the target's side of a step;
- `adaptive` — the draft length from measured step times and per-sequence acceptance;
- `runner`, `forward`, `fused_layer`, `kernels`, `graphs`, `kv_cache` — a model over the engine's own
  KV cache: the runner, the Llama forward, the GPU's fused layer, the (compiled) pure kernels, CUDA
  graph capture, the cache;
- `batch`, `sampling`, `transfer`, `timing`, `stats`, `phases` — what those share.
"""

from specops.engine.config import (
    DEFAULT_BATCH_SCHEDULE,
    AdaptationSettings,
    ExecutionSettings,
    PromptLookupSettings,
    SamplingParams,
    SpeculationConfig,
)
from specops.engine.engine import SpeculativeEngine
from specops.engine.phases import PHASES
from specops.engine.proposers import PROPOSERS
from specops.engine.scheduler import GenerationResult
from specops.engine.stats import RequestStats, StepStats

__all__ = [
    "DEFAULT_BATCH_SCHEDULE",
    "PHASES",
    "PROPOSERS",
    "AdaptationSettings",
    "ExecutionSettings",
    "GenerationResult",
    "PromptLookupSettings",
    "RequestStats",
    "SamplingParams",
    "SpeculationConfig",
    "SpeculativeEngine",
    "StepStats",
]
