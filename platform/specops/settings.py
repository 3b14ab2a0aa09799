"""Where SpecOps keeps its state. One frozen dataclass, read from the environment once per command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Locations of the embedded stores.

    home: the state folder (default ``./.specops``; env ``SPECOPS_HOME``).
    database_url: SQLAlchemy URL of the governance store (default SQLite in ``home``;
        env ``SPECOPS_DATABASE_URL``).
    tracking_uri: MLflow tracking URI (default SQLite in ``home``; env ``MLFLOW_TRACKING_URI``).
    artifacts_dir: MLflow artifact root (default ``home/artifacts``).
    """

    home: Path
    database_url: str
    tracking_uri: str
    artifacts_dir: Path

    @classmethod
    def from_env(cls, home: Path | None = None) -> Settings:
        """Build settings from the environment, with ``home`` overriding ``SPECOPS_HOME``."""
        root = Path(home or os.environ.get("SPECOPS_HOME", ".specops")).resolve()
        return cls(
            home=root,
            database_url=os.environ.get("SPECOPS_DATABASE_URL", f"sqlite:///{root / 'governance.db'}"),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}"),
            artifacts_dir=root / "artifacts",
        )
