"""Serving runtime on KServe: OpenAI-compatible completions (+ streaming), KServe v1/v2, batching.

Modules: `config` (what a process serves), `batcher` (dynamic batching onto the engine thread),
`runtime` (validation, streaming, metrics, request records), `protocol` (OpenAI bodies),
`openai_routes` (FastAPI routes + error accounting), `kserve_model` (v1/v2 predict) and `server`
(start KServe's ModelServer). Only `config` is imported here: the rest pulls in torch and kserve.
"""

from specops.serving import config

__all__ = ["config"]
