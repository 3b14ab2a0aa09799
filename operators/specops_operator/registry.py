"""The registry side of the operator: the ``VersionAliases`` port plus version lookups.

:class:`RegistryAliases` is a thin adapter over :class:`specops.registry.PairRegistry` (MLflow);
:class:`MemoryAliases` keeps aliases in a dict (benchmarks, and tests without MLflow). Both also
resolve a spec's version (number or alias) and say where a version's files are.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from specops.errors import Conflict, NotFound
from specops_operator.builders import PairSource

TAG_PROPOSER = "pair.proposer"
"""Not written by the registry yet: without it, a version with a draft model uses it, else n-gram lookup."""
TAG_DRAFT_SHA256 = "pair.draft_sha256"
TAG_NUM_SPECULATIVE_TOKENS = "pair.num_speculative_tokens"


class PairVersions(Protocol):
    """What the operator needs from the registry beyond the rollout port."""

    def set_alias(self, pair: str, alias: str, version: str) -> None: ...

    def delete_alias(self, pair: str, alias: str) -> None: ...

    def resolve(self, pair: str, ref: str) -> str:
        """A version number for ``ref`` (a number or an alias); NotFound, or Conflict if unqualified."""

    def source(self, pair: str, version: str) -> PairSource:
        """Where the version's pair folder is, and how it speculates."""


class RegistryAliases:
    """Over ``specops.registry.PairRegistry`` (MLflow). Only thin glue: no caching, no retries."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def set_alias(self, pair: str, alias: str, version: str) -> None:
        self.registry.set_alias(pair, alias, version)

    def delete_alias(self, pair: str, alias: str) -> None:
        self.registry.delete_alias(pair, alias)

    def resolve(self, pair: str, ref: str) -> str:
        """The version ``ref`` names; Conflict when it did not pass qualification (it never gets traffic)."""
        version = ref if ref.isdigit() else self.registry.alias(pair, ref)
        if version is None:
            raise NotFound(f"pair {pair} has no alias {ref!r}")
        item = self.registry.version(pair, str(version))
        if not item.qualified:
            raise Conflict(f"{pair} version {item.version} did not pass qualification: it is not rolled out")
        return item.version

    def source(self, pair: str, version: str) -> PairSource:
        """The version's artifact location (what KServe's storage initializer downloads) and its
        speculation settings from the registry's tags."""
        item = self.registry.version(pair, version)
        tags = item.tags
        return PairSource(
            storage_uri=item.source,
            proposer=tags.get(TAG_PROPOSER) or ("draft" if tags.get(TAG_DRAFT_SHA256) else "prompt_lookup"),
            num_speculative_tokens=int(tags.get(TAG_NUM_SPECULATIVE_TOKENS) or 4),
        )


class MemoryAliases:
    """Aliases in memory; ``moves`` records every change as (pair, alias, version or None)."""

    def __init__(
        self, aliases: dict[tuple[str, str], str] | None = None, *, storage_root: str = "s3://specops-pairs"
    ) -> None:
        self.aliases = dict(aliases or {})
        self.moves: list[tuple[str, str, str | None]] = []
        self.storage_root = storage_root
        self._lock = threading.Lock()

    def set_alias(self, pair: str, alias: str, version: str) -> None:
        with self._lock:
            self.aliases[(pair, alias)] = version
            self.moves.append((pair, alias, version))

    def delete_alias(self, pair: str, alias: str) -> None:
        with self._lock:
            if self.aliases.pop((pair, alias), None) is not None:
                self.moves.append((pair, alias, None))

    def alias(self, pair: str, alias: str) -> str | None:
        return self.aliases.get((pair, alias))

    def resolve(self, pair: str, ref: str) -> str:
        if ref.isdigit():
            return ref
        version = self.alias(pair, ref)
        if version is None:
            raise NotFound(f"pair {pair} has no alias {ref!r}")
        return version

    def source(self, pair: str, version: str) -> PairSource:
        return PairSource(storage_uri=f"{self.storage_root}/{pair}/{version}")
