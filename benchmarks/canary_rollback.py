"""How fast the local runtime rolls back a canary whose draft proposes garbage (random weights).

v1 is the demo pair (good draft, fixed k = 3) in production; v2 pairs the same target with a draft of
the same shape and random weights. Two ways a garbage draft reaches serving:

* ``adaptive``: the pair's default adaptive speculation. The engine measures that the draft does not
  pay and stops drafting: no draft tokens, so an acceptance-only judge would wait for ever;
* ``fixed k``: the draft proposes k = 3 garbage tokens every step.

For each, ``--runs`` canaries go out under the product's analysis rules (thresholds, sample minimums,
failure limit and comparison with the stable are the defaults of ``RolloutPolicy``; only the analysis
interval is shortened to ``--interval`` seconds so a run takes a minute, not ten) with closed-loop
traffic from 4 clients. Measured: seconds from the canary's first request to the rollback being
applied, against the progress deadline (``max_inconclusive_s``), and the failing checks. Prints a
table and writes ``benchmarks/results/canary-rollback-cpu.json``.

Run from the repository root: ``python -m benchmarks.canary_rollback``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.harness import cpu_machine
from specops.local.traffic import ClosedLoopTraffic
from specops.local.wiring import LocalDeployment
from specops.pairs.demo import demo_prompts, train_demo_pairs
from specops.pairs.pair_spec import TOKENIZER_FILES
from specops.rollout.model import DecisionKind, Phase, RolloutPolicy
from specops.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "canary-rollback-cpu.json"
PAIR = "stdlib-coder"
MODES = {
    "adaptive": {"speculation": {"num_speculative_tokens": 3, "adaptive": True}},
    "fixed k": {"speculation": {"num_speculative_tokens": 3, "adaptive": False}},
}
GOOD = {"speculation": {"num_speculative_tokens": 3, "adaptive": False}}


def garbage_draft(like: Path, out: Path, *, seed: int) -> Path:
    """A draft of ``like``'s shape with random weights (and its tokenizer), saved at ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(like))
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (like / name).is_file():
            shutil.copyfile(like / name, out / name)
    return out


def one_canary(home: Path, *, pairs, draft: Path, config: dict, policy: RolloutPolicy, timeout_s: float) -> dict:  # type: ignore[no-untyped-def]
    """Deploy v1, canary the garbage draft, tick until the rollback; returns the measured run."""
    runtime = LocalDeployment.open(Settings.from_env(home=home), deployment="garbage", pair=PAIR, policy=policy)
    prompts = demo_prompts(8, 48)
    register = runtime.registry.register
    good = register(PAIR, target=pairs.target, draft=pairs.draft, min_acceptance=0.0, prompts=prompts, config=GOOD)
    bad = register(PAIR, target=pairs.target, draft=draft, min_acceptance=0.0, prompts=prompts, config=config)
    runtime.start()
    traffic = None
    try:
        runtime.controller.begin(good.version, now=time.time())
        traffic = ClosedLoopTraffic(
            url=runtime.router.url, model=PAIR, prompts=demo_prompts(32, 48), clients=4, max_tokens=48
        ).start()
        time.sleep(policy.analysis_interval_s)
        runtime.controller.begin(bad.version, now=time.time())
        decisions = []
        started = time.monotonic()
        first = None  # the router forgets it once the canary is gone: read it before each decision
        while runtime.controller.state().phase is Phase.PROGRESSING and time.monotonic() - started < timeout_s:
            time.sleep(policy.analysis_interval_s)
            first = first or runtime.router.upstreams.first_canary_request_at
            decisions.append(runtime.controller.tick(now=time.time()))
        rolled_back_at = time.time()
        reasons = [d.reason for d in decisions if d.kind is DecisionKind.ROLLBACK]
        window = next((d.analysis.metrics for d in reversed(decisions) if d.analysis and d.analysis.metrics), None)
        return {
            "phase": runtime.controller.state().phase.value,
            "first_request_to_rollback_s": None if first is None else round(rolled_back_at - first, 1),
            "analyses": len(decisions),
            "rollback_reason": reasons[0] if reasons else None,
            "canary_window": None
            if window is None
            else {
                "requests": window.num_requests,
                "target_steps": window.num_target_steps,
                "draft_tokens": window.num_draft_tokens,
                "acceptance_rate": window.acceptance_rate,
                "tokens_per_step": window.tokens_per_step,
            },
            "stable_requests_failed": traffic.tally.failed.get("stable", 0),
        }
    finally:
        if traffic is not None:
            traffic.stop()
        runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="canaries per mode")
    parser.add_argument("--interval", type=float, default=10.0, help="analysis interval, seconds")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console()
    pairs = train_demo_pairs(progress=True)
    policy = replace(RolloutPolicy(), steps=(10, 50, 100), analysis_interval_s=args.interval)
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder, Progress(console=console) as bar:
        task = bar.add_task("garbage canaries", total=args.runs * len(MODES))
        for run in range(args.runs):
            draft = garbage_draft(pairs.draft, Path(folder) / f"garbage-{run}", seed=run)
            for mode, config in MODES.items():
                home = Path(folder) / f"{mode.replace(' ', '-')}-{run}" / ".specops"
                timeout = policy.max_inconclusive_s + 4 * policy.analysis_interval_s
                results[mode].append(
                    one_canary(home, pairs=pairs, draft=draft, config=config, policy=policy, timeout_s=timeout)
                )
                bar.advance(task)
    summary = {}
    for mode, runs in results.items():
        times = [
            r["first_request_to_rollback_s"]
            for r in runs
            if r["phase"] == Phase.ROLLED_BACK.value and r["first_request_to_rollback_s"] is not None
        ]
        summary[mode] = {
            "rolled_back": f"{len(times)}/{len(runs)}",
            "median_s": round(statistics.median(times), 1) if times else None,
            "max_s": max(times) if times else None,
        }
    result = {
        "machine": cpu_machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": {
            "analysis_interval_s": policy.analysis_interval_s,
            "steps": list(policy.steps),
            "min_requests": policy.min_requests,
            "min_target_steps": policy.min_target_steps,
            "min_tokens_per_step": policy.min_tokens_per_step,
            "min_acceptance_rate": policy.min_acceptance_rate,
            "failure_limit": policy.failure_limit,
            "max_inconclusive_s": policy.max_inconclusive_s,
        },
        "summary": summary,
        "runs": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(
        "mode", "rolled back", "first request → rollback (median, max)", "deadline", "canary tokens/step",
        title=f"garbage-draft canaries, analysis every {policy.analysis_interval_s:g} s",
    )  # fmt: skip
    for mode, runs in results.items():
        tokens = [r["canary_window"]["tokens_per_step"] for r in runs if r["canary_window"]]
        row = summary[mode]
        table.add_row(
            mode,
            row["rolled_back"],
            f"{row['median_s']} s, {row['max_s']} s",
            f"{policy.max_inconclusive_s:g} s",
            ", ".join(f"{t:.3f}" for t in tokens if t is not None),
        )
    console.print(table)
    for mode, runs in results.items():
        for run in runs:
            console.print(f"[bold]{mode}[/]: {run['rollback_reason']}", highlight=False)
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
