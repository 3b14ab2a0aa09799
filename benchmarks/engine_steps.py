"""Where a `generate` call's time goes: per-step wall times, prefill, graph captures, cache compactions.

Untrained bench-size models (the timing of a step does not depend on the weights; acceptance does,
so speculative steps here reject every draft):

    PYTHONPATH=platform python -m benchmarks.engine_steps --out benchmarks/results/engine-steps-h100.json

`--continuous`: instead, sequences of different lengths stream through the rows (continuous batching,
as the server runs), and the admissions' parts are timed on their own, each call synchronised.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.harness import MODES, bench_models, engine_run_continuous, mode_engine, save_rows, sync
from specops.engine import SamplingParams, SpeculativeEngine, StepStats
from specops.engine.kv_cache import KVCache


def profile(engine: SpeculativeEngine, batch_size: int, prompt: int, new: int, device: str) -> dict:
    compactions = []
    original = KVCache.compact

    def counted(cache: KVCache) -> None:
        compactions.append(cache.batch_size)
        original(cache)

    KVCache.compact = counted  # type: ignore[method-assign]
    try:
        generator = torch.Generator().manual_seed(batch_size)
        prompts = torch.randint(0, engine.target.vocab_size, (batch_size, prompt), generator=generator).tolist()
        params = [SamplingParams(max_new_tokens=new, ignore_eos=True)] * batch_size
        engine.generate(prompts, params)  # warm-up
        compactions.clear()
        graphs_before = engine.target.num_graphs
        marks: list[float] = []
        phases: list[StepStats] = []

        def on_step(stats: StepStats) -> None:
            marks.append(time.perf_counter())
            phases.append(stats)

        sync(device)
        started = time.perf_counter()
        engine.generate(prompts, params, on_step=on_step)
        sync(device)
        total = time.perf_counter() - started
    finally:
        KVCache.compact = original  # type: ignore[method-assign]
    steps = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "batch_size": batch_size,
        "tok_s": round(batch_size * new / total, 1),
        "total_ms": round(total * 1000, 2),
        "first_step_ms": round((marks[0] - started) * 1000, 2),  # prefill + first step
        "steps": len(marks),
        "step_median_ms": round(statistics.median(steps) * 1000, 3),
        # device time of the phases (CUDA events); the rest of a step is the host's
        "draft_device_median_ms": round(statistics.median(p.draft_seconds for p in phases) * 1000, 3),
        "target_device_median_ms": round(statistics.median(p.target_seconds for p in phases) * 1000, 3),
        "step_mean_ms": round(statistics.fmean(steps) * 1000, 3),
        "step_max_ms": round(max(steps) * 1000, 2),
        "steps_over_2x_median": sum(s > 2 * statistics.median(steps) for s in steps),
        "target_graphs_captured": engine.target.num_graphs - graphs_before,
        "compactions": len(compactions),
    }


def continuous_pass(
    engine: SpeculativeEngine, batch_size: int, prompt: int, device: str
) -> tuple[Callable[[], tuple[float, int]], list[int]]:
    """A run of `4 * batch_size` sequences of 64..192 new tokens through `batch_size` rows (the same
    ones at every call: seconds, steps), and their lengths."""
    generator = torch.Generator().manual_seed(batch_size)
    count = 4 * batch_size
    prompts = torch.randint(0, engine.target.vocab_size, (count, prompt), generator=generator).tolist()
    lengths = torch.randint(64, 193, (count,), generator=generator).tolist()

    def run() -> tuple[float, int]:
        _, seconds, _, records = engine_run_continuous(engine, prompts, batch_size, lengths, device)
        return seconds, sum(isinstance(record, StepStats) for record in records)

    return run, lengths


def profile_continuous(engine: SpeculativeEngine, batch_size: int, prompt: int, device: str) -> dict:
    """`4 * batch_size` sequences of 64..192 new tokens through `batch_size` rows; admission parts timed."""
    from specops.engine.proposers import DraftModelProposer
    from specops.engine.runner import ModelRunner
    from specops.engine.scheduler import Scheduler

    spent: dict[str, float] = dict.fromkeys(("admit", "append", "catch_up", "compact"), 0.0)
    calls: dict[str, int] = dict.fromkeys(spent, 0)
    patched = [(Scheduler, "admit", "admit"), (ModelRunner, "append", "append")]
    patched += [(DraftModelProposer, "_catch_up", "catch_up"), (KVCache, "compact", "compact")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def timed(original, label):
        def call(*args, **kwargs):
            sync(device)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                sync(device)
                spent[label] += time.perf_counter() - began
                calls[label] += 1

        return call

    run, lengths = continuous_pass(engine, batch_size, prompt, device)
    run()  # warm-up
    plain, _ = run()  # without the timers
    for owner, name, label in patched:
        setattr(owner, name, timed(getattr(owner, name), label))
    try:
        timed_total, steps = run()
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return {
        "batch_size": batch_size,
        "sequences": len(lengths),
        "tok_s": round(sum(lengths) / plain, 1),
        "total_ms": round(plain * 1000, 2),
        "steps": steps,
        "timed_total_ms": round(timed_total * 1000, 2),
        "timed_ms": {label: round(seconds * 1000, 2) for label, seconds in spent.items()},
        "timed_calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--small", action="store_true", help="tiny models (a CPU check of the script)")
    parser.add_argument("--compiled", choices=("both", "on", "off"), default="both", help="torch.compile'd layers")
    parser.add_argument("--continuous", action="store_true", help="continuous batching, admissions timed")
    parser.add_argument("--modes", default=",".join(name for name, _, _ in MODES))
    parser.add_argument("--repeat", type=int, default=0, help="continuous: more passes, modes interleaved")
    args = parser.parse_args()
    device = args.device
    target, draft = bench_models(device, small=args.small)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    passes = []  # (row, one continuous pass) for `--repeat`
    compiled_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.compiled]
    modes = [mode for mode in MODES if mode[0] in args.modes.split(",")]
    for compiled, (name, proposer, k) in itertools.product(compiled_modes, modes):
        engine = mode_engine(target, draft, name, proposer, k, compiled=compiled)
        started = time.perf_counter()
        engine.warm_up(batch_sizes, max_tokens=128 + (192 if args.continuous else 128), continuous=args.continuous)
        warm_up_s = round(time.perf_counter() - started, 1)
        for batch_size in batch_sizes:
            row = {"mode": name, "compiled": compiled, "warm_up_s": warm_up_s}
            if args.continuous:
                row.update(profile_continuous(engine, batch_size, 128, device))
                passes.append((row, continuous_pass(engine, batch_size, 128, device)))
            else:
                row.update(profile(engine, batch_size, 128, 128, device))
            rows.append(row)
            print(json.dumps(row), flush=True)
    for _ in range(args.repeat):  # interleaved, so that a drift of the machine's speed hits every mode alike
        for row, (run, lengths) in passes:
            row.setdefault("repeat_tok_s", []).append(round(sum(lengths) / run()[0], 1))
    for row, _ in passes if args.repeat else ():
        row["median_tok_s"] = statistics.median(row["repeat_tok_s"])
        print(row["mode"], row["batch_size"], row["median_tok_s"], row["repeat_tok_s"], flush=True)
    save_rows(rows, args.out, device)


if __name__ == "__main__":
    main()
