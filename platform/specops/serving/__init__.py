"""Serving on KServe: OpenAI-compatible completions (+ streaming), KServe v1/v2 predict, dynamic batching.

Public modules: `config` (what a process serves, and the options of `specops serve`), `engine_port`
(what serving needs of an engine), `served_pair` (validation, streaming, metrics, request records of one
pair version) and `server` (start KServe's ModelServer). Inside: `batcher`, `detokenizer`,
`openai_schema` (OpenAI bodies), `openai_routes`, `openai_streaming` and `kserve_model` (v1/v2).
`config` and `engine_port` are imported here; the rest load on first use (they pull in kserve and torch).
"""

from specops.lazy_modules import lazy_submodules
from specops.serving import config, engine_port

__all__ = ["config", "engine_port", "served_pair", "server"]

__getattr__, __dir__ = lazy_submodules(__name__, ["served_pair", "server"])
