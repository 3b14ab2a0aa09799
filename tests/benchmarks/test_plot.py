"""`benchmarks/plot.py` draws a committed engine results file, and refuses a file of another kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _plot_module():
    from benchmarks import plot

    return plot


def test_the_engine_plot_draws_a_results_file(tmp_path):
    report = json.loads((ROOT / "benchmarks" / "results" / "engine-h100.json").read_text())
    out = tmp_path / "engine.png"
    _plot_module().plot_engine(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000  # three panels of bars, not an empty canvas


def test_a_file_without_batch_rows_is_refused_with_a_reason(tmp_path):
    with pytest.raises(SystemExit, match=r"engine\.py result"):
        _plot_module().plot_engine({"device": "x"}, tmp_path / "none.png")
