"""Access to the MLflow tracking store: a client, and MLflow failures as one-line SpecOps errors."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from specops.errors import InvalidInput, NotFound, SpecOpsError, StoreUnavailable
from specops.pairs import pair_spec


def valid_name(name: str) -> bool:
    """Whether ``name`` is a valid pair name (`pair_spec.NAME_PATTERN`)."""
    import re

    return re.fullmatch(pair_spec.NAME_PATTERN, name) is not None


def quote(name: str) -> str:
    """``name`` quoted for an MLflow search filter."""
    return name.replace("'", "\\'")


def version_number(version: str | int) -> str:
    """A version as MLflow's number string ("v3" and 3 give "3"); anything else is InvalidInput."""
    text = str(version).strip().removeprefix("v")
    if not text.isdigit():
        raise InvalidInput(f"version must be a number, got {version!r}")
    return text


def iso_ms(timestamp_ms: int | None) -> str:
    """An MLflow timestamp (ms since the epoch) as ISO 8601 UTC; "" for none."""
    if not timestamp_ms:
        return ""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exists(read: Any) -> bool:
    """Whether ``read()`` finds its resource (a missing one is False; other errors raise)."""
    try:
        read()
        return True
    except Exception as error:
        if is_missing(error):
            return False
        raise


def is_missing(error: BaseException) -> bool:
    """Whether an MLflow error says the resource does not exist."""
    code = getattr(error, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(code)


def connect(tracking_uri: str) -> Any:
    """An MlflowClient for ``tracking_uri``; an unreachable store is :class:`StoreUnavailable`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # an unreachable server fails in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        create_folder(Path(tracking_uri.removeprefix("sqlite:///")).parent, "MLflow store folder")
    with mlflow_errors("open the MLflow tracking store"):
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def create_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and its parents; one that cannot be is :class:`StoreUnavailable` naming ``what``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(f"cannot create the {what} {folder}: {error.strerror}") from error


@contextlib.contextmanager
def mlflow_errors(doing: str):  # type: ignore[no-untyped-def]
    """Turn MLflow and storage failures into one-line SpecOps errors."""
    try:
        yield
    except SpecOpsError:
        raise
    except OSError as error:
        raise StoreUnavailable(f"cannot {doing}: {error.strerror or error}") from error
    except Exception as error:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException):
            if is_missing(error):
                raise NotFound(f"cannot {doing}: {first_line(error.message)}") from error
            raise StoreUnavailable(f"cannot {doing}: {first_line(error.message)}") from error
        raise


def first_line(text: str) -> str:
    """The first line of an error text, at most 300 characters."""
    text = str(text).strip()
    return text.splitlines()[0][:300] if text else "unknown error"
