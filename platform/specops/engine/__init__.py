"""Speculative decoding on torch + transformers: propose, verify, accept, KV caches, adaptive k, statistics.

Imports nothing of SpecOps but `specops.errors`, so it runs where only torch and transformers exist.
"""

from specops.engine.config import DEFAULT_BATCH_SCHEDULE, SamplingParams, SpeculationConfig
from specops.engine.engine import GenerationResult, SpeculativeEngine
from specops.engine.proposers import PROPOSERS
from specops.engine.stats import RequestStats, StepStats

__all__ = [
    "DEFAULT_BATCH_SCHEDULE",
    "PROPOSERS",
    "GenerationResult",
    "RequestStats",
    "SamplingParams",
    "SpeculationConfig",
    "SpeculativeEngine",
    "StepStats",
]
