"""What each captured CUDA graph of a decoding step costs the device alone, with no host in the way.

Untrained bench-size models. After warm-up, each graph a step replays (the target's verification at
k = 0..K, the draft's rounds, the drop of rejected drafts) is replayed back to back between two CUDA
events: the device time per replay, gaps between its kernels included. A profiled set of replays
gives the sum of its kernel times and its kernel count; the difference is what the device spends
between kernels, which only fewer kernels (not less host work) removes:

    PYTHONPATH=platform python -m benchmarks.engine_graphs --out benchmarks/results/engine-graphs-h100.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.harness import bench_models, mode_engine, replay_us, save_rows

DEVICE_CATEGORIES = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


def replay_costs(graph: torch.cuda.CUDAGraph, replays: int, names: int = 0) -> dict:
    """Device µs per replay (events around back-to-back replays), and the kernels' own time and count;
    with `names`, that many kernel names with the most time, with their count and µs per replay."""
    device_us = replay_us(graph, replays)
    profiled = 20
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(profiled):
            graph.replay()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = [e for e in json.loads(path.read_text())["traceEvents"] if e.get("cat") in DEVICE_CATEGORIES]
    kernel_us = sum(e.get("dur", 0) for e in events) / profiled
    costs = {
        "device_us": round(device_us, 1),
        "kernel_us": round(kernel_us, 1),
        "between_kernels_us": round(device_us - kernel_us, 1),
        "kernels": round(len(events) / profiled, 1),
    }
    if names:
        costs["top_kernels"] = top_kernels(events, profiled, names)
    return costs


def top_kernels(events: list[dict], replays: int, names: int) -> list[dict]:
    """The `names` kernel names with the most device time: launches and µs per replay."""
    by_name: dict[str, list[float]] = {}
    for event in events:
        by_name.setdefault(event.get("name", "?")[:120], []).append(event.get("dur", 0))
    ranked = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:names]
    return [
        {"name": name, "launches": round(len(durs) / replays, 1), "us": round(sum(durs) / replays, 1)}
        for name, durs in ranked
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--k", type=int, default=2, help="largest draft length captured")
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--names", type=int, default=0, help="list this many kernel names per graph")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("engine_graphs.py measures CUDA graphs: it needs a CUDA device")
    target, draft = bench_models("cuda", small=False)
    engine = mode_engine(target, draft, f"fixed_k{args.k}", "draft", args.k)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    engine.warm_up(batch_sizes, max_tokens=256)
    rows = []
    for model, runner in (("target", engine.target), ("draft", engine.proposer.runner)):
        for key, captured in runner.graphs.items():
            steady = key[0] in {"verify", "settle"} or (key[0] == "rounds" and key[2] == 2)  # drafts made ahead
            if captured.graph is None or key[1] not in batch_sizes or not steady:
                continue
            row = {"model": model, "graph": key[0], "batch_size": key[1], "shape": list(key[2:-1])}
            row.update(replay_costs(captured.graph, args.replays, args.names))
            rows.append(row)
            print(json.dumps(row), flush=True)
    save_rows(rows, args.out, "cuda")


if __name__ == "__main__":
    main()
