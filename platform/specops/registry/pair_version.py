"""A registered pair version, and the names SpecOps uses in the MLflow registry."""

from __future__ import annotations

from dataclasses import dataclass, field

ALIASES = ("production", "canary", "previous")
"""The aliases SpecOps moves."""

EXPERIMENT = "specops-pairs"
"""MLflow experiment that holds the registration runs."""

MODEL_ARTIFACT_PATH = "pair"
"""Artifact path of the pyfunc model inside a registration run."""

TAG_PASSED = "qualification.passed"


@dataclass
class PairVersion:
    """One registered version: its number (as a string), tags and the aliases that point at it."""

    name: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    source: str = ""
    run_id: str = ""
    created_at: str = ""
    description: str = ""

    @property
    def qualified(self) -> bool:
        """Whether the version passed its qualification gate."""
        return self.tags.get(TAG_PASSED) == "true"

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"
