"""Proposers, one per file, chosen by name through `PROPOSERS`."""

from __future__ import annotations

from specops.engine.proposers.base import Proposal, Proposer
from specops.engine.proposers.draft_model import DraftModelProposer
from specops.engine.proposers.prompt_lookup import PromptLookupProposer

#: SpeculationConfig.proposer -> proposer class ("none" has no proposer).
PROPOSERS: dict[str, type] = {
    "draft": DraftModelProposer,
    "prompt_lookup": PromptLookupProposer,
}

__all__ = ["PROPOSERS", "DraftModelProposer", "PromptLookupProposer", "Proposal", "Proposer"]
