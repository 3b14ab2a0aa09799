"""Monitoring test data: the golden files' folder and writer, and request records inserted into a store."""

from __future__ import annotations

import os
from pathlib import Path

from specops.governance import store as store_module

TESTDATA = Path(__file__).resolve().parents[1] / "monitoring" / "testdata"
REPO = Path(__file__).resolve().parents[2]
UPDATE_GOLDEN = os.environ.get("SPECOPS_UPDATE_GOLDEN") == "1"
"""Run with ``SPECOPS_UPDATE_GOLDEN=1`` to rewrite golden files (then review the diff)."""


def golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the golden file ``path`` byte for byte (or rewrite it under the flag)."""
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}: run with SPECOPS_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path} differs from the generator's output; rerun with SPECOPS_UPDATE_GOLDEN=1"


def _corpus(kind: str) -> list[str]:
    """Prompt texts that ship with Python: source lines (``code``) or documentation prose (``prose``)."""
    import argparse
    import json.decoder
    import textwrap

    if kind == "code":
        lines: list[str] = []
        for module in (argparse, json.decoder):
            source = Path(module.__file__).read_text(encoding="utf-8").splitlines()  # type: ignore[arg-type]
            lines += [line.strip() for line in source if len(line.strip()) > 20]
        return [" ".join(lines[i : i + 3]) for i in range(0, len(lines) - 3, 3)]
    from pydoc_data import topics

    text = " ".join(topics.topics.values())
    return textwrap.wrap(" ".join(text.split()), 160)


def insert_records(
    store: store_module.Store,
    *,
    deployment: str,
    version: str,
    role: str,
    start: object,
    count: int,
    seconds: float,
    prompts: str,
    acceptance: float,
    seed: int,
) -> None:
    """Insert ``count`` realistic request records spread over ``seconds`` from ``start``."""
    from datetime import timedelta

    import numpy as np

    from specops.governance import models

    rng = np.random.default_rng(seed)
    corpus = _corpus(prompts)
    rows = []
    for i in range(count):
        prompt = corpus[int(rng.integers(len(corpus)))]
        num_prompt = max(4, int(len(prompt) / 3.2 + rng.normal(0, 3)))
        rate = float(np.clip(rng.beta(acceptance * 20, (1 - acceptance) * 20), 0, 1))
        drafts = int(rng.integers(8, 20))
        mean_len = 1 + rate * 4 * (1 - 0.3 * rng.random())
        output = int(rng.integers(32, 96))
        rows.append(
            models.RequestRecord(
                created_at=start + timedelta(seconds=seconds * i / count),  # type: ignore[operator]
                deployment=deployment,
                pair_name="demo",
                pair_version=version,
                role=role,
                prompt_tokens=num_prompt,
                output_tokens=output,
                acceptance_rate=rate,
                mean_accepted_length=mean_len,
                ttft_s=float(rng.gamma(2, 0.01)),
                e2e_s=float(output * 0.004 * drafts / 10),
                itl_mean_s=float(rng.gamma(2, 0.002)),
                finish_reason="length",
                prompt=prompt,
            )
        )
    with store.session() as session:
        session.add_all(rows)
