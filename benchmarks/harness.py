"""What the benchmark scripts share: the bench pair's recipe and untrained models, timed engine runs,
the engines the step timers compare, result files and the machine a figure was taken on.

The scripts run from the repository root as modules, which puts the root on ``sys.path`` so that
``benchmarks.harness`` imports without path edits; ``PYTHONPATH=platform`` finds ``specops`` where the
package is not installed (the GPU machine gets only the repository copy)::

    PYTHONPATH=platform python -m benchmarks.engine --smoke --device cpu --out /tmp/engine-smoke.json
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from specops.engine import ExecutionSettings, SamplingParams, SpeculationConfig, SpeculativeEngine
from specops.pairs.demo import ModelShape

REPO = Path(__file__).resolve().parents[1]


# -- machine ---------------------------------------------------------------------------------------
def cpu_machine() -> dict[str, object]:
    """Processor, cores, Python and the load when the figures were taken."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
    }


@dataclass(frozen=True)
class BenchRecipe:
    """The bench pair and its training; recorded in the JSON."""

    corpus_bytes: int = 60_000_000
    tokenizer_bytes: int = 20_000_000
    min_file_chars: int = 2000
    vocab_size: int = 8192
    target_hidden: int = 1024
    target_layers: int = 16
    target_heads: int = 16
    target_mlp: int = 2816
    draft_hidden: int = 256
    draft_layers: int = 2
    draft_heads: int = 4
    draft_mlp: int = 704
    seq_len: int = 512
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 200
    target_steps: int = 1500
    draft_steps: int = 1500
    target_train_seconds: float = 330.0  # budget: fewer steps (recorded) if 1500 do not fit
    draft_train_seconds: float = 60.0
    eval_files: int = 24
    prompt_tokens: int = 128
    new_tokens: int = 128
    seed: int = 0

    def shape(self, name: str) -> ModelShape:
        """The shape of the pair's ``name`` model ("target" or "draft")."""
        return ModelShape(
            hidden_size=getattr(self, f"{name}_hidden"),
            num_layers=getattr(self, f"{name}_layers"),
            num_heads=getattr(self, f"{name}_heads"),
            intermediate_size=getattr(self, f"{name}_mlp"),
        )


SMOKE = BenchRecipe(
    corpus_bytes=1_500_000,
    tokenizer_bytes=600_000,
    vocab_size=512,
    target_hidden=64,
    target_layers=2,
    target_heads=4,
    target_mlp=128,
    draft_hidden=32,
    draft_layers=1,
    draft_heads=2,
    draft_mlp=64,
    seq_len=64,
    batch_size=8,
    warmup=5,
    target_steps=30,
    draft_steps=30,
    target_train_seconds=30,
    draft_train_seconds=15,
    eval_files=4,
    prompt_tokens=32,
    new_tokens=24,
)


# -- corpus and tokenizer -------------------------------------------------------------------------
def engine_source_digest() -> str:
    """A digest of the engine's source files: which code a results file measured (the device machine
    gets a copy of the working tree, without git history)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "platform" / "specops" / "engine").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# -- models and training --------------------------------------------------------------------------
def llama(recipe: BenchRecipe, name: str, *, seed: int, tokenizer: Any = None) -> torch.nn.Module:
    """The recipe's untrained ``name`` model ("target" or "draft"): untied embeddings, 2048 positions."""
    from specops.pairs.demo_training import build_model

    return build_model(
        recipe.shape(name),
        vocab_size=len(tokenizer) if tokenizer is not None else recipe.vocab_size,
        max_position_embeddings=2048,
        seed=seed,
        tokenizer=tokenizer,
        tie_embeddings=False,
    )


# -- measuring ------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimes:
    """Wall time between step callbacks, the first of a call counted from the call's start (its
    set-up and prefill included): where a call's time goes beyond its steady steps."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, bool, int]] = []  # (seconds, first of its call, batch k)
        self._last = 0.0
        self._first = False

    def start(self) -> None:
        self._last, self._first = time.perf_counter(), True

    def __call__(self, stats) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last, self._first, max(stats.num_draft_tokens, default=0)))
        self._last, self._first = now, False

    def summary(self) -> dict:
        if not self.gaps:
            return {}
        ms = sorted(g * 1000 for g, _, _ in self.gaps)
        first = [g * 1000 for g, is_first, _ in self.gaps if is_first]
        rest = [g * 1000 for g, is_first, _ in self.gaps if not is_first]
        slowest = sorted(((round(g * 1000, 2), k) for g, is_first, k in self.gaps if not is_first), reverse=True)
        return {
            "median_ms": round(ms[len(ms) // 2], 3),
            "mean_ms": round(sum(ms) / len(ms), 3),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 3),
            "first_of_call_mean_ms": round(sum(first) / len(first), 3) if first else None,
            "calls": len(first),
            "other_steps_mean_ms": round(sum(rest) / len(rest), 3) if rest else None,
            "slowest_other_steps_ms_k": slowest[:8],
        }


def engine_run(engine, groups, new_tokens: int, device: str, times: StepTimes | None = None):
    outputs, seconds, tokens = [], 0.0, 0
    step_stats = []
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    times = times or StepTimes()

    def on_step(stats) -> None:
        step_stats.append(stats)
        times(stats)

    for group in groups:
        sync(device)
        start = time.perf_counter()
        times.start()
        results = engine.generate(group, [params] * len(group), on_step=on_step)
        sync(device)
        seconds += time.perf_counter() - start
        outputs.extend(r.token_ids for r in results)
        tokens += sum(len(r.token_ids) for r in results)
        for r in results:
            step_stats.append(r.stats)
    return outputs, seconds, tokens, step_stats


def engine_run_continuous(
    engine, prompts, rows: int, new_tokens: int | list[int], device: str, times: StepTimes | None = None
):
    """`prompts` through `rows` rows with continuous batching, as the server runs the engine: a row
    takes the next prompt as soon as its sequence ends. `new_tokens`: for all prompts, or per prompt.
    Outputs in `prompts` order."""
    budgets = new_tokens if isinstance(new_tokens, list) else [new_tokens] * len(prompts)
    queue = list(enumerate(prompts))
    in_row: dict[int, int] = {}
    outputs: dict[int, list[int]] = {}
    records: list = []

    def admit(free: list[int]):
        taken = queue[: len(free)]
        del queue[: len(free)]
        in_row.update({row: index for row, (index, _) in zip(free, taken, strict=False)})
        return [(prompt, SamplingParams(max_new_tokens=budgets[index], ignore_eos=True)) for index, prompt in taken]

    def finish(row: int, result) -> None:
        outputs[in_row[row]] = result.token_ids
        records.append(result.stats)

    times = times or StepTimes()

    def on_step(stats) -> None:
        records.append(stats)
        times(stats)

    longest = max(map(len, prompts)) + max(budgets)
    sync(device)
    start = time.perf_counter()
    times.start()
    engine.generate([], [], admit=admit, on_finish=finish, on_step=on_step, rows=rows, max_tokens=longest)
    sync(device)
    seconds = time.perf_counter() - start
    ordered = [outputs[i] for i in range(len(prompts))]
    return ordered, seconds, sum(map(len, ordered)), records


class NullTokenizer:
    """The engine's tokenizer where only timing counts: no end-of-sequence token, nothing decoded."""

    eos_token_id = None

    def decode(self, ids) -> str:
        return ""


MODES: tuple[tuple[str, str, int], ...] = (
    ("nonspec", "none", 0),
    ("fixed_k2", "draft", 2),
    ("fixed_k2_inline", "draft", 2),
    ("nonspec_admit_before", "none", 0),
    ("fixed_k2_admit_before", "draft", 2),
)
"""(name, proposer, k) of the engines these scripts compare; "inline" drafts each step after reading
the decision of the one before (`ExecutionSettings.draft_ahead` off); "admit_before" admits a new
prompt (and prefills it) before the running rows' next step instead of during it (`admit_in_step` off)."""


def bench_models(device: str, *, small: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Untrained target and draft of the bench pair's shapes (tiny ones with `small`)."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    recipe = SMOKE if small else BenchRecipe()
    target, draft = (
        llama(recipe, name, seed=seed).to(device=device, dtype=dtype).eval()
        for seed, name in enumerate(("target", "draft"))
    )
    return target, draft


def mode_engine(target, draft, name: str, proposer: str, k: int, *, compiled: bool = True) -> SpeculativeEngine:
    config = SpeculationConfig(
        proposer=proposer,
        num_speculative_tokens=k,
        adaptive=False,
        execution=ExecutionSettings(
            compiled=compiled,
            draft_ahead=not name.endswith("_inline"),
            admit_in_step=not name.endswith("_admit_before"),
        ),
    )
    return SpeculativeEngine(target, NullTokenizer(), draft=draft if k else None, config=config)


def save_rows(rows: list[dict], out: Path, device: str) -> None:
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "engine_source": engine_source_digest(),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def replay_us(graph: torch.cuda.CUDAGraph, replays: int) -> float:
    """Device µs per replay: events around `replays` back-to-back replays, after 3 to warm up."""
    for _ in range(3):
        graph.replay()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) * 1000 / replays
