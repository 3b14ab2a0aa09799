"""A YAML file read into a strict pydantic model, every problem reported as one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from specops.errors import InvalidInput

Model = TypeVar("Model", bound=BaseModel)


def parse(text: str, model: type[Model], *, source: str) -> Model:
    """YAML text → ``model``; InvalidInput names ``source`` and the first bad key."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInput(f"{source}: not YAML: {' '.join(str(error).split())}") from error
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top)"
        if first["type"] == "extra_forbidden":
            raise InvalidInput(f"{source}: unknown key {key!r}") from error
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{source}: {key}: {message}") from error


def load(path: Path, model: type[Model]) -> Model:
    """Read ``path`` and validate it as ``model``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}") from error
    return parse(text, model, source=str(path))
