"""A ServingBackend for a deployment whose runtime is not running.

`specops rollback|promote` work from a terminal also when no `specops demo`/runtime process serves the
deployment: then there is no traffic to move, so the decision is carried by the registry aliases, the
saved state and the audit log alone, and the next runtime started for the deployment serves what they say.
"""

from __future__ import annotations


class DetachedServing:
    """No processes to touch: every traffic operation is recorded by the caller, not performed here."""

    def deploy_stable(self, version: str) -> None:
        """Nothing runs; the production alias carries the version."""

    def start_canary(self, version: str, weight: int) -> None:
        """Nothing runs; the canary alias carries the version."""

    def set_canary_weight(self, weight: int) -> None:
        """Nothing runs."""

    def promote_canary(self) -> None:
        """Nothing runs."""

    def remove_canary(self, stable_version: str | None = None) -> None:
        """Nothing runs."""
