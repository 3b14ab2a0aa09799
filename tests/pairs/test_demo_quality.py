"""The real default demo pair: the mismatched draft's low agreement comes from measurement."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from specops.pairs import demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(demo_pairs: demo.DemoPairs) -> dict[str, float]:
    """Agreement of each draft, measured afresh from the saved folders on held-out code."""
    tokenizer = AutoTokenizer.from_pretrained(str(demo_pairs.target))
    target = AutoModelForCausalLM.from_pretrained(str(demo_pairs.target)).eval()
    batches = demo.held_out_batches(tokenizer, seq_len=256, num_windows=24)
    return {
        name: demo.greedy_agreement(target, AutoModelForCausalLM.from_pretrained(str(folder)).eval(), batches)
        for name, folder in ((demo.DRAFT_DIR, demo_pairs.draft), (demo.MISMATCHED_DIR, demo_pairs.draft_mismatched))
    }


def test_the_good_draft_agrees_with_the_target_on_held_out_code(measured):
    assert measured[demo.DRAFT_DIR] >= 0.35


def test_the_mismatched_draft_agrees_far_less(measured):
    assert measured[demo.MISMATCHED_DIR] <= 0.15
    assert measured[demo.DRAFT_DIR] - measured[demo.MISMATCHED_DIR] >= 0.2


def test_the_target_costs_clearly_more_than_the_draft(demo_pairs):
    target = AutoModelForCausalLM.from_pretrained(str(demo_pairs.target))
    draft = AutoModelForCausalLM.from_pretrained(str(demo_pairs.draft))
    assert target.config.num_hidden_layers >= 4 * draft.config.num_hidden_layers
    assert target.num_parameters() >= 4 * draft.num_parameters()
    assert target.config.max_position_embeddings >= 512
