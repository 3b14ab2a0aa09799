"""Proposers, one per file; `PROPOSERS` builds one by its `SpeculationConfig.proposer` name."""

from __future__ import annotations

from specops.engine.proposers.base import Proposal, Proposer, ProposerFactory
from specops.engine.proposers.draft_model import DraftModelProposer
from specops.engine.proposers.prompt_lookup import PromptLookupProposer

#: SpeculationConfig.proposer -> the factory of its proposer ("none" has no proposer).
PROPOSERS: dict[str, ProposerFactory] = {
    "draft": DraftModelProposer.build,
    "prompt_lookup": PromptLookupProposer.build,
}

__all__ = ["PROPOSERS", "DraftModelProposer", "PromptLookupProposer", "Proposal", "Proposer", "ProposerFactory"]
