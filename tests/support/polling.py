"""Waiting for a condition by polling it: servers, controllers and the operator act in their own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"
) -> Any:
    """Poll ``predicate`` every ``interval`` seconds until it returns a truthy value, and return that value.

    After ``timeout`` seconds it raises AssertionError naming ``message`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message}; last value: {last!r}")
