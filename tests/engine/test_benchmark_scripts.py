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
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--out", str(out), *args]
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
