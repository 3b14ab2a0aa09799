"""Demo-pair fixtures (a plugin registered in ``tests/conftest.py``): a tiny recipe trained in seconds,
and the real default pair (slow, cached).

``demo_pairs`` is session-scoped and trains the default recipe into the normal demo cache
(``$SPECOPS_DEMO_CACHE`` or the user cache dir): about 105 s once per machine when its cores are free
(minutes when they are shared), nothing afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from specops.pairs import demo

TINY_RECIPE = demo.DemoRecipe(
    vocab_size=512,
    corpus_bytes=200_000,
    seq_len=64,
    batch_size=4,
    target=demo.ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
    draft=demo.ModelShape(hidden_size=16, num_layers=1, num_heads=1, intermediate_size=32),
    target_steps=4,
    draft_steps=4,
    mismatched_steps=4,
    distill_sequences=8,
    distill_prompt_tokens=8,
    distill_new_tokens=8,
    distill_steps=4,
    eval_windows=4,
)
"""Trains in about two seconds: checks plumbing, not quality."""


@pytest.fixture(scope="session")
def tiny_recipe() -> demo.DemoRecipe:
    return TINY_RECIPE


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo cache holding the tiny recipe's entry (trained once per session)."""
    cache = tmp_path_factory.mktemp("demo-cache")
    demo.train_demo_pairs(recipe=TINY_RECIPE, cache=cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def tiny_demo_pairs(tiny_cache: Path) -> demo.DemoPairs:
    return demo.train_demo_pairs(recipe=TINY_RECIPE, cache=tiny_cache, progress=False)


@pytest.fixture(scope="session")
def demo_pairs() -> demo.DemoPairs:
    """The default recipe's pair, trained for real on the first use on this machine, then cached."""
    return demo.train_demo_pairs(progress=False)
