"""``specops.yaml``: the settings of the embedded control plane (`specops up`), validated strictly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from specops.local import yaml_models

CONFIG_ENV = "SPECOPS_CONFIG"
DEFAULT_CONFIG = Path("specops.yaml")


class RecordPolicy(BaseModel):
    """Which requests the model servers record for drift monitoring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of requests recorded (0..1).")
    prompt: str = Field(
        "full", pattern=r"^(full|none|hash|truncate:\d+)$", description="full | none | hash | truncate:N."
    )


class DriftSchedule(BaseModel):
    """The Evidently drift monitor's schedule over the recorded requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run drift monitors at all.")
    interval_s: float = Field(3600.0, ge=10.0, description="Seconds between drift runs per deployment.")
    window_s: float = Field(3600.0, ge=10.0, description="Seconds of requests in the current window.")
    min_rows: int = Field(50, ge=2, description="Rows each window needs before a drift run judges anything.")


class PlaneConfig(BaseModel):
    """What `specops up` serves and how. Every key is optional; an unknown key is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(8000, ge=1, le=65535, description="Router port on 127.0.0.1 (OpenAI routes, /metrics).")
    receiver_port: int = Field(9095, ge=1, le=65535, description="Alertmanager webhook receiver port.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="torch device of the model servers.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="Weights' dtype.")
    max_batch: int = Field(16, ge=1, le=1024, description="Most sequences per engine batch.")
    tick_s: float = Field(0.5, gt=0.0, le=60.0, description="Seconds between the plane's rounds.")
    record: RecordPolicy = Field(default_factory=RecordPolicy)
    drift: DriftSchedule = Field(default_factory=DriftSchedule)

    def server_args(self) -> tuple[str, ...]:
        """The `specops serve` flags these settings set."""
        args = ["--device", self.device, "--max-batch", str(self.max_batch)]
        args += ["--dtype", self.dtype]
        args += ["--record-sample-rate", str(self.record.sample_rate), "--record-prompt", self.record.prompt]
        return tuple(args)


def config_path(given: Path | None = None) -> Path | None:
    """``given``, else ``$SPECOPS_CONFIG``, else ``./specops.yaml`` when it exists (None: defaults)."""
    if given is not None:
        return given
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load(given: Path | None = None) -> PlaneConfig:
    """The plane's settings: the file (see :func:`config_path`) or the defaults."""
    path = config_path(given)
    return PlaneConfig() if path is None else yaml_models.load(path, PlaneConfig)
