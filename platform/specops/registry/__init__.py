"""Pair versions in the MLflow model registry: register (after qualification), list, alias, download.

``PairRegistry.from_settings(settings, audit=...)`` is the entry point; mlflow is imported lazily.
"""

from specops.registry.mlflow_registry import ALIASES, PairRegistry, PairVersion

__all__ = ["ALIASES", "PairRegistry", "PairVersion"]
