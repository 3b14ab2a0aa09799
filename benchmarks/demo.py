"""The demo loop's figures: `specops demo` in a fresh state folder, then again in the same one.

Prints a table and writes ``benchmarks/results/demo-cpu.json``: wall time of each run, breach onset
(the canary's first request) → rollback applied, the qualification figures of both versions, the canary
and stable windows of the last decision, and the demo pair's training report (agreement, CPU seconds).

Run from the repository root: ``python -m benchmarks.demo``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.harness import cpu_machine
from specops.local.demo import DemoConfig, run_demo
from specops.pairs.demo import train_demo_pairs
from specops.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "demo-cpu.json"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console()
    pairs = train_demo_pairs(progress=True)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env(home=Path(folder) / ".specops")
        for label in ("fresh state folder", "second run, same state folder"):
            outcome = run_demo(settings, DemoConfig(), console)
            windows = {
                role: {
                    "target_steps": w.num_target_steps,
                    "tokens_per_step": w.tokens_per_step,
                    "draft_tokens": w.num_draft_tokens,
                    "accepted_tokens": w.num_accepted_tokens,
                    "acceptance_rate": w.acceptance_rate,
                }
                for role, w in outcome.windows.items()
            }
            runs.append(
                {
                    "run": label,
                    "seconds": round(outcome.seconds, 1),
                    "breach_to_rollback_s": round(outcome.breach_to_rollback_s or -1, 1),
                    "final_phase": outcome.final_phase.value,
                    "production": outcome.production,
                    "audit_ok": outcome.audit_ok,
                    "windows": windows,
                    "qualification": {
                        v: {
                            k: t
                            for k, t in tags.items()
                            if k.startswith("qualification.")
                            and k.split(".")[1] in ("acceptance_rate", "lossless", "speedup", "speedup_sampled")
                        }
                        for v, tags in outcome.versions.items()
                    },
                }
            )
    result = {
        "machine": cpu_machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "demo_pair": {
            k: getattr(pairs.report, k)
            for k in ("agreement", "generated_agreement", "seconds", "cpu_seconds", "num_parameters")
        },
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table("run", "wall s", "breach → rollback s", "phase", "canary acceptance", title="specops demo")
    for run in runs:
        canary = run["windows"].get("canary", {}).get("acceptance_rate")
        table.add_row(
            run["run"],
            str(run["seconds"]),
            str(run["breach_to_rollback_s"]),
            run["final_phase"],
            "-" if canary is None else f"{canary:.3f}",
        )
    console.print(table)
    console.print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
