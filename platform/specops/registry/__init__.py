"""Pair versions in the MLflow model registry: register (after qualification), list, alias, download.

``PairRegistry.from_settings(settings, audit=...)`` is the entry point (`mlflow_registry`); a version is
written by `version_writer` and read back as a `pair_version.PairVersion`; `mlflow_access` turns MLflow
failures into one-line errors. mlflow is imported lazily.
"""

from specops.registry.mlflow_registry import PairRegistry
from specops.registry.pair_version import ALIASES, PairVersion

__all__ = ["ALIASES", "PairRegistry", "PairVersion"]
