"""The engine's benchmark scripts run end to end at tiny sizes (CPU) and write what their readers expect.

The GPU figures come from these scripts on a machine this suite never sees; a script broken by an
engine change would only show there, at the price of device time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = [
    "target_tok_s",
    "hf_static_compiled_tok_s",
    "specops_tok_s",
    "specops_nonspec_tok_s",
    "specops_prompt_lookup_tok_s",
    "alpha",
    "mean_accepted_length",
    "c",
    "k",
    "theoretical_speedup",
    "identical",
    "prompts",
    "divergences_not_near_tie",
]
BATCH1_ONLY = ["hf_assisted_tok_s", "hf_prompt_lookup_tok_s"]

pytestmark = pytest.mark.slow


def _run(script: str, out: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    command = [sys.executable, "-m", f"benchmarks.{script.removesuffix('.py')}", "--out", str(out), *args]
    subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    return json.loads(out.read_text())


def test_the_engine_benchmark_writes_the_issues_contract(tmp_path):
    report = _run("engine.py", tmp_path / "engine.json", "--smoke")
    assert {"device", "torch", "engine_source"} <= set(report)
    for batch in ("batch1", "batch8", "batch32"):
        row = report[batch]
        assert set(CONTRACT) <= set(row), f"{batch} lacks {set(CONTRACT) - set(row)}"
        assert row["identical"] == row["prompts"] > 0  # float32 on a CPU: every output identical
        assert row["divergences_not_near_tie"] == 0
    assert set(BATCH1_ONLY) <= set(report["batch1"])


def test_the_step_profile_charges_device_idle_time_to_host_phases(tmp_path):
    report = _run("engine_trace.py", tmp_path / "trace.json", "--small", "--batch-sizes", "2", "--new", "8")
    rows = {row["mode"]: row["steps"] for row in report["rows"]}
    assert set(rows) == {"nonspec", "fixed_k2", "fixed_k2_inline"}
    assert all(steps["steps"] > 0 and steps["step_wall_us"] > 0 for steps in rows.values())
    assert "verify_step" in rows["nonspec"]["host_in_phase_us"]
    assert "greedy_rounds" in rows["fixed_k2"]["host_in_phase_us"]


def test_the_step_timer_reports_every_mode(tmp_path):
    report = _run("engine_steps.py", tmp_path / "steps.json", "--small", "--batch-sizes", "2", "--compiled", "off")
    modes = [(row["mode"], row["steps"]) for row in report["rows"]]
    names = ["nonspec", "fixed_k2", "fixed_k2_inline", "nonspec_admit_before", "fixed_k2_admit_before"]
    assert modes == [(name, 128) for name in names]


def test_host_timing_reports_each_phase_and_the_wait_for_the_device(tmp_path):
    args = ("--small", "--batch-sizes", "2", "--new", "8", "--modes", "nonspec,fixed_k2", "--host")
    report = _run("engine_trace.py", tmp_path / "host.json", *args)
    rows = {row["mode"]: row for row in report["rows"]}
    assert set(rows) == {"nonspec", "fixed_k2"}
    for row in rows.values():
        assert row["steps"] > 0 and row["step_wall_us"] > 0
        phases = row["host_in_phase_us"]
        assert phases["verify_step"] >= phases["get"] >= 0  # the read of the decision is inside the step
    assert "greedy_rounds" in rows["fixed_k2"]["host_in_phase_us"]


def test_device_time_is_charged_to_the_host_phase_that_launched_it():
    from benchmarks.engine_trace import device_by_phase

    def annotation(name, ts, dur):
        return {"cat": "user_annotation", "name": name, "ts": ts, "dur": dur}

    def launch(ts, correlation):
        return {"cat": "cuda_runtime", "ts": ts, "dur": 1, "args": {"correlation": correlation}}

    def kernel(name, ts, dur, correlation):
        return {"cat": "kernel", "name": name, "ts": ts, "dur": dur, "args": {"correlation": correlation}}

    trace = {
        "traceEvents": [
            annotation("verify_step", 0, 100),
            annotation("forward", 10, 20),  # inside verify_step: the innermost phase wins
            launch(15, 1),
            launch(50, 2),
            kernel("gemm", 200, 30, 1),  # runs long after its launch, outside every phase
            kernel("gemm", 240, 10, 1),
            kernel("argmax", 260, 6, 2),
            kernel("stray", 300, 4, 99),  # no launch on record
        ]
    }
    phases = device_by_phase(trace, steps=2)
    assert phases == {
        "forward": {"device_us": 20.0, "top_kernels_us": {"gemm": 20.0}},
        "verify_step": {"device_us": 3.0, "top_kernels_us": {"argmax": 3.0}},
        "(no phase)": {"device_us": 2.0, "top_kernels_us": {"stray": 2.0}},
    }


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("engine_graphs.py", "engine_graphs.py measures CUDA graphs: it needs a CUDA device"),
        ("engine_attention.py", "engine_attention.py times CUDA graphs: it needs a CUDA device"),
    ],
)
def test_the_graph_timers_say_they_need_a_cuda_device(tmp_path, script, reason):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    command = [sys.executable, "-m", f"benchmarks.{script.removesuffix('.py')}", "--out", str(tmp_path / "g.json")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == reason
    assert not (tmp_path / "g.json").exists()


def test_the_graph_timer_ranks_kernel_names_by_device_time_per_replay():
    from benchmarks.engine_graphs import top_kernels

    events = [
        {"name": "gemm", "dur": 10.0},
        {"name": "gemm", "dur": 10.0},
        {"name": "attention", "dur": 30.0},
        {"name": "norm", "dur": 2.0},
        {"name": "gemm", "dur": 10.0},
        {"name": "gemm", "dur": 10.0},
    ]
    assert top_kernels(events, replays=2, names=2) == [
        {"name": "gemm", "launches": 2.0, "us": 20.0},
        {"name": "attention", "launches": 0.5, "us": 15.0},
    ]
