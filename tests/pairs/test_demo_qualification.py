"""The trained demo pair passes the gate; its mismatched draft is told apart by acceptance alone."""

from __future__ import annotations

import pytest

from specops.pairs import eval_inputs, qualification


@pytest.mark.slow
def test_the_demo_pair_qualifies_and_the_mismatched_draft_accepts_less() -> None:
    from specops.pairs import demo

    pairs = demo.train_demo_pairs(progress=False)
    prompts = eval_inputs.load_prompts()[:8]
    good = qualification.qualify(pairs.target, pairs.draft, prompts=prompts, max_new_tokens=24)
    assert good.passed, good.reason
    assert good.lossless
    assert good.acceptance_rate >= qualification.DEFAULT_MIN_ACCEPTANCE
    assert good.speedup > 0 and good.speedup_sampled > 0
    assert good.min_speedup == 0.0  # on a CPU the speedup is recorded, not judged
    assert (good.speedup_note != "") == (min(good.speedup, good.speedup_sampled) < 1.0)
    mismatched = qualification.qualify(
        pairs.target, pairs.draft_mismatched, prompts=prompts, max_new_tokens=24, min_acceptance=0.0
    )
    assert mismatched.passed  # recorded, not refused: the canary is what catches it
    assert mismatched.lossless
    assert mismatched.acceptance_rate < good.acceptance_rate
