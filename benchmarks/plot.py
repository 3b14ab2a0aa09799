"""Plots of the engine benchmark: tokens/s per mode and batch size, one panel per batch size.

python -m benchmarks.plot benchmarks/results/engine-h100.json   # writes engine-h100.png beside it
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the file-only backend

MODES = (
    ("hf_static_compiled_tok_s", "HF static cache", "#9e9e9e"),
    ("specops_nonspec_tok_s", "SpecOps plain", "#4c72b0"),
    ("specops_fixed_k_tok_s", "SpecOps draft, fixed k", "#dd8452"),
    ("specops_tok_s", "SpecOps draft, adaptive", "#55a868"),
    ("specops_prompt_lookup_tok_s", "SpecOps prompt lookup", "#8172b3"),
)


def plot_engine(report: dict, out: Path) -> None:
    """One bar panel per batch size of an `engine.py` results file, saved as a PNG at `out`."""
    rows = [report[key] for key in ("batch1", "batch8", "batch32") if key in report]
    if not rows:
        raise SystemExit("no batch1 / batch8 / batch32 rows in this file: is it an engine.py result?")
    figure, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.8), squeeze=False)
    for axis, row in zip(axes[0], rows, strict=True):
        modes = [(label, row[key], color) for key, label, color in MODES if row.get(key) is not None]
        bars = axis.bar(range(len(modes)), [v for _, v, _ in modes], color=[c for _, _, c in modes])
        axis.bar_label(bars, fmt="%.0f", fontsize=7)
        axis.set_xticks(range(len(modes)), [label for label, _, _ in modes], rotation=35, ha="right", fontsize=7)
        axis.set_title(
            f"batch {row['batch_size']} (k = {row.get('k', '-')}, α = {row.get('alpha', 0):.2f})", fontsize=9
        )
        axis.margins(y=0.12)
    axes[0][0].set_ylabel("tokens/s")
    figure.suptitle(f"engine on {report.get('device', '?')}, {report.get('dtype', '')}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="engine.py results files")
    for path in parser.parse_args().results:
        out = path.with_suffix(".png")
        plot_engine(json.loads(path.read_text()), out)
        print(out)


if __name__ == "__main__":
    main()
