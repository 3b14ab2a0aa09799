"""Which kernels a forward launches and what each costs on the device (torch.profiler, no CUDA graphs).

Untrained bench-size models, compiled layers as the engine runs them on a GPU:

    PYTHONPATH=platform python -m benchmarks.engine_kernels --out benchmarks/results/engine-kernels-h100.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.harness import BenchRecipe, llama  # the bench pair's shapes
from specops.engine.runner import ModelRunner


def kernels(runner: ModelRunner, batch_size: int, q: int, calls: int = 20, *, prefill: bool = False) -> dict:
    """Device kernels of one forward of `q` tokens per sequence: count, total and top time.

    prefill: the public eager path a prompt takes (`append`, no logits), with its host time.
    """
    cache = runner.cache(batch_size, 384)
    ids = torch.zeros(batch_size, q, dtype=torch.long, device=runner.device)
    valid = torch.ones(batch_size, q, dtype=torch.bool, device=runner.device)
    start = torch.zeros(1, dtype=torch.long, device=runner.device)
    prompts = [[0] * q for _ in range(batch_size)]

    def forward() -> None:
        if prefill:
            runner.append(cache, prompts)
        else:
            with torch.inference_mode():
                runner.forward_slots(cache, ids, valid, start, kv_len=None)
        cache.reset()

    for _ in range(3):  # compile and warm up
        forward()
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(calls):
        forward()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - began) * 1000 / calls
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            forward()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.self_device_time_total for e in events) / calls
    launched = sum(e.count for e in events) / calls
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:15]
    return {
        "batch_size": batch_size,
        "q": q,
        "prefill": prefill,
        "wall_ms_per_forward": round(wall_ms, 3),
        "kernels_per_forward": round(launched, 1),
        "device_us_per_forward": round(total_us, 1),
        "top": [
            {
                "name": e.key[:90],
                "per_forward": round(e.count / calls, 1),
                "us": round(e.self_device_time_total / calls, 1),
            }
            for e in top
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compiled", choices=("on", "off"), default="on")
    args = parser.parse_args()
    recipe = BenchRecipe()
    rows = []
    for seed, name in enumerate(("target", "draft")):
        model = llama(recipe, name, seed=seed).to(device="cuda", dtype=torch.bfloat16).eval()
        runner = ModelRunner(model, compiled=args.compiled == "on")
        for batch_size, q, prefill in ((1, 1, False), (1, 3, False), (8, 3, False), (32, 3, False), (1, 127, True)):
            row = {"model": name, **kernels(runner, batch_size, q, prefill=prefill)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "top"}), flush=True)
            for t in row["top"][:8]:
                print("   ", json.dumps(t), flush=True)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
