"""Where a decoding step's wall time goes: device busy, device idle, and what the host did meanwhile.

Untrained bench-size models, static batches (every draft is rejected: the step shapes are those of
a trained pair's worst case). Each step is traced with torch.profiler, in which the engine names
its own phases (`specops.engine.PHASES`). Per mode the summary gives the mean step wall time, the
device's busy and idle time per step, and which host phase was running while the device sat idle:

    PYTHONPATH=platform python -m benchmarks.engine_trace --out benchmarks/results/engine-trace-h100.json

`--host` times each host phase with clock reads instead of the profiler (no profiler overhead):

    PYTHONPATH=platform python -m benchmarks.engine_trace --host --out benchmarks/results/engine-trace-h100-host.json

`--traces DIR` also writes the Chrome traces (gzip), for a look in Perfetto.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.harness import MODES, bench_models, engine_run, engine_run_continuous, mode_engine, save_rows
from specops.engine import PHASES, SpeculativeEngine, StepStats
from specops.engine.phases import host_microseconds

DEVICE_CATEGORIES = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def step_records(trace: dict) -> list[dict]:
    """Per step (µs; steps end at `step_end` annotations): wall, device busy, the host time of each
    phase, and the device's idle time charged to the innermost host phase running then."""
    events = trace["traceEvents"]
    ends = sorted(e["ts"] for e in events if e.get("name") == "step_end")
    busy = _merged([(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") in DEVICE_CATEGORIES and "dur" in e])
    phases = [
        (e["ts"], e["ts"] + e["dur"], e["name"])
        for e in events
        if e.get("cat") == "user_annotation" and e.get("name") in PHASES and "dur" in e
    ]
    records = []
    for start, end in itertools.pairwise(ends):
        inside = [(max(a, start), min(b, end)) for a, b in busy if b > start and a < end]
        near = [p for p in phases if p[1] > start and p[0] < end]
        idle: dict[str, float] = defaultdict(float)
        cursor = start
        for a, b in [*inside, (end, end)]:
            for t in range(int(cursor), int(a)):  # the gap before this busy interval, 1 µs resolution
                running = [(p_end - p_start, name) for p_start, p_end, name in near if p_start <= t < p_end]
                idle[min(running)[1] if running else "(between phases)"] += 1.0
            cursor = max(cursor, b)
        host: dict[str, float] = defaultdict(float)
        for p_start, p_end, name in near:
            host[name] += min(p_end, end) - max(p_start, start)
        records.append({"wall": end - start, "busy": sum(b - a for a, b in inside), "idle_while": idle, "host": host})
    return records


def device_by_phase(trace: dict, steps: int, top: int = 6) -> dict[str, dict]:
    """Device time per step (µs, whole call) charged to the innermost host phase that launched it
    (kernels inside a CUDA graph count for the phase that replayed it), with its costliest kernels."""
    events = trace["traceEvents"]
    launches = {
        e["args"]["correlation"]: e["ts"]
        for e in events
        if e.get("cat") in {"cuda_runtime", "cuda_driver"} and "correlation" in e.get("args", {})
    }
    phases = sorted(
        (e["ts"], e["ts"] + e["dur"], e["name"])
        for e in events
        if e.get("cat") == "user_annotation" and e.get("name") in PHASES and "dur" in e
    )
    totals: dict[str, float] = defaultdict(float)
    kernels: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in events:
        if event.get("cat") not in DEVICE_CATEGORIES or "dur" not in event:
            continue
        launched = launches.get(event.get("args", {}).get("correlation"))
        running = [] if launched is None else [(b - a, name) for a, b, name in phases if a <= launched < b]
        phase = min(running)[1] if running else "(no phase)"
        totals[phase] += event["dur"]
        kernels[phase][event["name"][:80]] += event["dur"]
    per_step = max(steps, 1)
    return {
        phase: {
            "device_us": round(total / per_step, 1),
            "top_kernels_us": {
                name: round(value / per_step, 1)
                for name, value in sorted(kernels[phase].items(), key=lambda i: -i[1])[:top]
            },
        }
        for phase, total in sorted(totals.items(), key=lambda i: -i[1])
    }


def summarise(records: list[dict]) -> dict:
    """Means per step (µs) of `step_records`."""
    count = max(len(records), 1)

    def mean_of(key: str) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for record in records:
            for name, value in record[key].items():
                totals[name] += value
        return {k: round(v / count, 1) for k, v in sorted(totals.items(), key=lambda i: -i[1])}

    wall = sum(r["wall"] for r in records) / count
    busy = sum(r["busy"] for r in records) / count
    return {
        "steps": len(records),
        "step_wall_us": round(wall, 1),
        "device_busy_us": round(busy, 1),
        "device_idle_us": round(wall - busy, 1),
        "device_idle_while_us": mean_of("idle_while"),
        "host_in_phase_us": mean_of("host"),
    }


class _StepEnd:
    """The `times` hook of the benchmark's runners: counts steps and (`marks`) marks the end of each
    in the profiler's trace."""

    def __init__(self, *, marks: bool = True) -> None:
        self.marks = marks
        self.steps = 0

    def start(self) -> None:
        pass

    def __call__(self, stats: StepStats) -> None:
        self.steps += 1
        if self.marks:
            with record_function("step_end"):
                pass


def traced(engine: SpeculativeEngine, batch_size: int, args: argparse.Namespace, name: str) -> dict:
    """Trace one call (after a warm-up call): static, or `4 * batch_size` sequences of 64..192 new
    tokens streamed through `batch_size` rows (`--continuous`); steps that admitted apart."""
    generator = torch.Generator().manual_seed(batch_size)
    count = 4 * batch_size if args.continuous else batch_size
    prompts = torch.randint(0, engine.target.vocab_size, (count, 128), generator=generator).tolist()
    if args.continuous:
        lengths = torch.randint(64, 193, (count,), generator=generator).tolist()

        def run(hook: _StepEnd) -> None:
            engine_run_continuous(engine, prompts, batch_size, lengths, args.device, hook)
    else:

        def run(hook: _StepEnd) -> None:
            engine_run(engine, [prompts], args.new, args.device, hook)

    run(_StepEnd())  # warm-up
    if args.host:
        return host_timed(run)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        run(_StepEnd())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
        if args.traces is not None:
            args.traces.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as source, gzip.open(args.traces / f"{name}.json.gz", "wb") as target:
                shutil.copyfileobj(source, target)
    records = step_records(trace)[2:]  # the first steps of a call carry its set-up
    device = device_by_phase(trace, len(records) + 2)
    admitting = [r for r in records if "admit" in r["host"]]
    return {
        "steps": summarise([r for r in records if "admit" not in r["host"]]),
        "admitting_steps": summarise(admitting) if admitting else None,
        "device_by_phase": device,
    }


def host_timed(run: Callable[[_StepEnd], None], calls: int = 3) -> dict:
    """Host time per step (µs) in each phase, over `calls` calls, and the step's mean wall time."""
    hook = _StepEnd(marks=False)
    started = time.perf_counter()
    with host_microseconds() as totals:
        for _ in range(calls):
            run(hook)
    wall = (time.perf_counter() - started) * 1e6
    count = max(hook.steps, 1)
    return {
        "steps": hook.steps,
        "step_wall_us": round(wall / count, 1),
        "host_in_phase_us": {k: round(v / count, 1) for k, v in sorted(totals.items(), key=lambda i: -i[1])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--traces", type=Path, help="folder for the Chrome traces")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--modes", default="nonspec,fixed_k2,fixed_k2_inline")
    parser.add_argument("--new", type=int, default=48, help="new tokens per sequence")
    parser.add_argument("--small", action="store_true", help="tiny models (a CPU check of the script)")
    parser.add_argument("--continuous", action="store_true", help="continuous batching (admissions apart)")
    parser.add_argument("--host", action="store_true", help="host time per phase, clock reads, no profiler")
    args = parser.parse_args()
    target, draft = bench_models(args.device, small=args.small)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for name, proposer, k in [m for m in MODES if m[0] in args.modes.split(",")]:
        engine = mode_engine(target, draft, name, proposer, k)
        engine.warm_up(batch_sizes, max_tokens=128 + (192 if args.continuous else args.new), continuous=args.continuous)
        for batch_size in batch_sizes:
            row = {"mode": name, "batch_size": batch_size}
            row.update(traced(engine, batch_size, args, f"{name}-b{batch_size}"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    save_rows(rows, args.out, args.device)


if __name__ == "__main__":
    main()
