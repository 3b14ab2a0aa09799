"""Engine benchmark: SpecOps speculative decoding against Hugging Face generate, one GPU, one run.

GPU (self-contained: trains the bench pair with the package's pair trainer, `specops.pairs.demo_training`,
then measures; imports only torch, transformers, tokenizers, `specops.engine` and that trainer):

    PYTHONPATH=platform python -m benchmarks.engine --out benchmarks/results/engine-h100.json
    PYTHONPATH=platform python -m benchmarks.engine --smoke --device cpu --out /tmp/engine-smoke.json

CPU with the demo pair (`specops.pairs.demo.train_demo_pairs()`):

    PYTHONPATH=platform python -m benchmarks.engine --demo-pair --device cpu \
        --out benchmarks/results/engine-cpu.json

Measured at batch 1, 8 and 32 on the same device: HF greedy (eager, and static cache compiled),
HF assisted generation and HF prompt lookup (batch 1), and the engine without speculation, with the
draft (fixed best k and adaptive) and with prompt lookup. Above batch 1 the engine's figures are
continuous batching (as `specops serve` runs it: a row takes the next prompt when its sequence ends,
`--waves` prompts per row); static batches of the plain and fixed-k modes are recorded beside them.
Every engine mode runs `--passes` times, the modes interleaved; its tok/s is the median pass (all
passes are recorded), so that the machine's drift during the run does not favour one mode.
Losslessness: every engine output is compared with the target's own greedy output (HF, batch 1);
each first divergence is checked to sit at a near-tie of the target's two best logits (`--near-tie`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as platform_module
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from benchmarks.harness import (
    SMOKE,
    BenchRecipe,
    StepTimes,
    engine_run,
    engine_run_continuous,
    engine_source_digest,
    llama,
    sync,
)
from specops.engine import ExecutionSettings, SpeculationConfig, SpeculativeEngine
from specops.engine.adaptive import expected_speedup
from specops.pairs import corpus, demo_training


def bench_training(model, stream: torch.Tensor, *, recipe: BenchRecipe, name: str, seed: int, log) -> dict:
    """Train one model of the bench pair with the package's trainer: AdamW, cosine to 0 after warm-up,
    weight decay 0.1, bf16 autocast on CUDA, steps cut to fit the model's time budget (recorded)."""
    steps = getattr(recipe, f"{name}_steps")
    settings = demo_training.TrainingSettings(
        seq_len=recipe.seq_len,
        batch_size=recipe.batch_size,
        learning_rate=recipe.lr,
        warmup_steps=min(recipe.warmup, max(1, steps // 10)),
        bf16_autocast=next(model.parameters()).device.type == "cuda",
        weight_decay=0.1,
        final_lr_ratio=0.0,
        time_budget_s=getattr(recipe, f"{name}_train_seconds"),
    )
    losses: list[float] = []

    def on_step(step: int, loss: float) -> None:
        if step % 100 == 0:
            losses.append(round(loss, 4))
            log(f"  step {step}: loss {losses[-1]}")

    result = demo_training.train_model(model, stream, settings=settings, steps=steps, seed=seed, on_step=on_step)
    return {
        "steps": result.steps,
        "planned_steps": steps,
        "seconds": result.seconds,
        "final_loss": round(result.final_loss, 4),
        "skipped_non_finite_steps": result.skipped_steps,
        "loss_every_100": losses,
    }


def batches(prompts: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Groups of `batch_size` prompts; the prompt list is cycled to fill at least one full group."""
    n = max(len(prompts), batch_size)
    n = math.ceil(n / batch_size) * batch_size
    cycled = [prompts[i % len(prompts)] for i in range(n)]
    return [cycled[i : i + batch_size] for i in range(0, n, batch_size)]


def hf_run(model, groups, new_tokens: int, device: str, **kwargs) -> tuple[list[list[int]], float, int]:
    outputs, seconds, tokens = [], 0.0, 0
    for group in groups:
        ids = torch.tensor(group, device=device)
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
                **kwargs,
            )
        sync(device)
        seconds += time.perf_counter() - start
        new = out[:, ids.shape[1] :].tolist()
        outputs.extend(new)
        tokens += sum(len(x) for x in new)
    return outputs, seconds, tokens


def measured_run(engine, batch_size: int, groups, stream, new_tokens: int, device: str, times=None):
    """A mode's measured workload: `stream` continuously batched through `batch_size` rows above
    batch 1, the static `groups` at batch 1 (`engine_run`'s results)."""
    if batch_size > 1:
        return engine_run_continuous(engine, stream, batch_size, new_tokens, device, times)
    return engine_run(engine, groups, new_tokens, device, times)


def speculation_figures(records) -> dict:
    """alpha (geometric estimate), acceptance rate, mean accepted length and cost ratio c."""
    from specops.engine import RequestStats, StepStats

    requests = [r for r in records if isinstance(r, RequestStats)]
    steps = [s for s in records if isinstance(s, StepStats) and s.speculative]
    drafts = sum(r.num_drafts for r in requests)
    draft_tokens = sum(r.num_draft_tokens for r in requests)
    accepted = sum(r.num_accepted_tokens for r in requests)
    bonus = sum(r.num_bonus_tokens for r in requests)
    rejections = drafts - bonus
    alpha = accepted / (accepted + rejections) if accepted + rejections else 0.0
    rounds = sum(max(s.num_draft_tokens) for s in steps)
    c = (
        (sum(s.draft_seconds for s in steps) / rounds) / (sum(s.target_seconds for s in steps) / len(steps))
        if steps and rounds
        else None
    )
    return {
        "alpha": round(alpha, 4),
        "acceptance_rate": round(accepted / draft_tokens, 4) if draft_tokens else 0.0,
        "mean_accepted_length": round(1 + accepted / drafts, 4) if drafts else 1.0,
        "c": round(c, 4) if c is not None else None,
        "speculative_steps": len(steps),
    }


class Lossless:
    """Compares outputs with the target's own greedy output; checks each first divergence for a near-tie."""

    def __init__(self, target, prompts, reference, near_tie: float, device: str) -> None:
        self.target, self.reference, self.near_tie, self.device = target, reference, near_tie, device
        self.index = {tuple(p): i for i, p in enumerate(prompts)}
        self.prompts = prompts

    def check(self, groups, outputs) -> dict:
        flat = [p for g in groups for p in g]
        identical = not_near_tie = 0
        gaps = []
        for prompt, output in zip(flat, outputs, strict=True):
            ref = self.reference[self.index[tuple(prompt)]]
            if output == ref:
                identical += 1
                continue
            at = (
                next(i for i, (a, b) in enumerate(zip(output, ref, strict=False)) if a != b)
                if any(a != b for a, b in zip(output, ref, strict=False))
                else min(len(output), len(ref))
            )
            with torch.inference_mode():
                ids = torch.tensor([prompt + ref[:at]], device=self.device)
                logits = self.target(ids).logits[0, -1].float()
            top2 = torch.topk(logits, 2).values
            gap = float(top2[0] - top2[1])
            gaps.append(round(gap, 4))
            if gap > self.near_tie:
                not_near_tie += 1
        return {
            "identical": identical,
            "prompts": len(flat),
            "divergences_not_near_tie": not_near_tie,
            "divergence_gaps": gaps,
        }


@dataclass
class BenchPair:
    """A trained pair, its held-out prompts and what its training reported."""

    tokenizer: object
    target: torch.nn.Module
    draft: torch.nn.Module
    prompts: list[list[int]]
    report: dict


def eval_prompts(tokenizer, held_texts: list[str], recipe: BenchRecipe) -> list[list[int]]:
    """A `prompt_tokens` window from the middle of each held-out file long enough, up to `eval_files`."""
    prompts = []
    for text in held_texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= 2 * recipe.prompt_tokens:
            middle = len(ids) // 2 - recipe.prompt_tokens // 2
            prompts.append(ids[middle : middle + recipe.prompt_tokens])
        if len(prompts) == recipe.eval_files:
            break
    return prompts


def demo_pair(recipe: BenchRecipe) -> BenchPair:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specops.pairs import demo

    pairs = demo.train_demo_pairs(progress=False)
    tokenizer = AutoTokenizer.from_pretrained(str(pairs.target))
    target = AutoModelForCausalLM.from_pretrained(str(pairs.target)).eval()
    draft = AutoModelForCausalLM.from_pretrained(str(pairs.draft)).eval()
    held_texts = [corpus.read_text(name) for name in corpus.source_files(held_out=True)]
    report = {"kind": "demo", "root": str(pairs.root), "report": asdict(pairs.report)}
    return BenchPair(tokenizer, target, draft, eval_prompts(tokenizer, held_texts, recipe), report)


def trained_pair(recipe: BenchRecipe, device: str, cache: Path | None, log) -> BenchPair:
    """Train the bench pair (recipe in the module's BenchRecipe), or load it from `cache` where an
    earlier run on the same machine saved it (so one pair serves several device calls)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cache is not None and (cache / "pair.json").exists():
        saved = json.loads((cache / "pair.json").read_text())
        if saved["report"]["recipe"] == asdict(recipe):
            log(f"loading the bench pair from {cache}")
            return BenchPair(
                AutoTokenizer.from_pretrained(str(cache / "target")),
                AutoModelForCausalLM.from_pretrained(str(cache / "target")).eval(),
                AutoModelForCausalLM.from_pretrained(str(cache / "draft")).eval(),
                saved["prompts"],
                {**saved["report"], "loaded_from_cache": True},
            )
    log("collecting corpus")
    # the package's corpus over the standard library and the installed packages, files in order
    roots = corpus.code_roots()
    train_files = corpus.code_files(roots, held_out=False, min_chars=recipe.min_file_chars)
    held_files = corpus.code_files(roots, held_out=True, min_chars=recipe.min_file_chars)
    texts, _ = corpus.texts_up_to(map(corpus.read_text, train_files), recipe.corpus_bytes)
    log(f"{len(train_files)} train files ({len(texts)} used), {len(held_files)} held out; tokenizer")
    tokenizer = demo_training.train_tokenizer(
        corpus.texts_up_to(texts, recipe.tokenizer_bytes)[0], vocab_size=recipe.vocab_size, max_length=2048
    )
    log("tokenizing")
    stream = demo_training.token_stream(tokenizer, texts)
    models, trainings = {}, {}
    for offset, name in enumerate(("target", "draft")):
        log(f"{len(stream)} training tokens; training {name}")
        models[name] = llama(recipe, name, seed=recipe.seed + offset, tokenizer=tokenizer).to(device)
        trainings[name] = bench_training(
            models[name], stream, recipe=recipe, name=name, seed=recipe.seed + offset, log=log
        )
        log(f"{name}: {trainings[name]}")
    prompts = eval_prompts(tokenizer, [corpus.read_text(path) for path in held_files], recipe)
    report = {
        "kind": "bench",
        "recipe": asdict(recipe),
        "train_tokens": len(stream),
        "target_parameters": sum(p.numel() for p in models["target"].parameters()),
        "draft_parameters": sum(p.numel() for p in models["draft"].parameters()),
        "target_training": trainings["target"],
        "draft_training": trainings["draft"],
    }
    if cache is not None:
        for name, model in models.items():
            model.save_pretrained(str(cache / name))
        tokenizer.save_pretrained(str(cache / "target"))
        (cache / "pair.json").write_text(json.dumps({"report": report, "prompts": prompts}))
        log(f"bench pair saved to {cache}")
    return BenchPair(tokenizer, models["target"], models["draft"], prompts, report)


def reference_outputs(pair: BenchPair, new: int, device: str, cache: Path | None) -> tuple[list[list[int]], float]:
    """The target's own greedy output for every prompt (HF static cache, batch 1) and its tok/s.

    Saved beside a cached pair so a later run on the same pair need not compile it again (tok/s None then).
    """
    saved = cache / "reference.json" if cache is not None else None
    if saved is not None and saved.exists():
        return json.loads(saved.read_text()), None
    static = {"cache_implementation": "static"}
    hf_run(pair.target, [[pair.prompts[0]]], new, device, **static)  # compile
    reference, seconds, tokens = hf_run(pair.target, [[p] for p in pair.prompts], new, device, **static)
    if saved is not None:
        saved.write_text(json.dumps(reference))
    return reference, tokens / seconds


def device_busy(records, seconds: float) -> float:
    """Fraction of the generate calls' wall time the device spent in the draft and target phases
    (the rest is the host's turn-around between steps and the calls' set-up)."""
    from specops.engine import StepStats

    busy = sum(s.draft_seconds + s.target_seconds for s in records if isinstance(s, StepStats))
    return round(busy / seconds, 4)


def k_histogram(records) -> dict[int, int]:
    """How many steps drafted each batch draft length (0 = plain steps)."""
    from collections import Counter

    from specops.engine import StepStats

    counts = Counter(max(s.num_draft_tokens, default=0) for s in records if isinstance(s, StepStats))
    return dict(sorted(counts.items()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script")
    parser.add_argument("--demo-pair", action="store_true", help="use specops.pairs.demo's pair (CPU file)")
    parser.add_argument("--pair-cache", type=Path, help="save the trained bench pair here, or load it if saved")
    parser.add_argument("--train-only", action="store_true", help="train (and cache) the pair, measure nothing")
    parser.add_argument(
        "--engine-only", action="store_true", help="the engine's modes only: no HF baselines, no losslessness check"
    )
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--slow-prompts", type=int, default=2, help="prompts for HF eager/assisted at batch 1")
    parser.add_argument("--near-tie", type=float, default=0.125)
    parser.add_argument("--waves", type=int, default=4, help="sequences per row in the continuous runs (batch > 1)")
    parser.add_argument("--passes", type=int, default=3, help="runs per mode (modes interleaved; tok/s: the median)")
    parser.add_argument("--inline", action="store_true", help="also fixed k without drafts made ahead")
    parser.add_argument("--k-sweep", default="1,2,3,4,5")
    parser.add_argument("--k", type=int, help="the fixed k (skips the sweep)")
    parser.add_argument("--train-seconds", help="override the training budgets: TARGET,DRAFT seconds")
    parser.add_argument("--eval-files", type=int, help="override the number of prompts")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="run the engine eagerly")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile'd layers in the engine")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: shared 2-core machines)")
    return parser.parse_args()


def bench_recipe(args: argparse.Namespace) -> BenchRecipe:
    """The recipe the arguments ask for: the full or smoke recipe, with its overrides."""
    recipe = SMOKE if args.smoke else BenchRecipe()
    if args.train_seconds:
        target_s, draft_s = (float(x) for x in args.train_seconds.split(","))
        recipe = replace(recipe, target_train_seconds=target_s, draft_train_seconds=draft_s)
    if args.eval_files:
        recipe = replace(recipe, eval_files=args.eval_files)
    if args.demo_pair:
        recipe = replace(recipe, eval_files=args.eval_files or 8, prompt_tokens=64, new_tokens=64)
    return recipe


def load_pair(args: argparse.Namespace, recipe: BenchRecipe, log) -> tuple[BenchPair, torch.dtype]:
    """The pair to measure and its dtype: the demo pair (float32), or the bench pair trained or loaded
    from `--pair-cache` (bfloat16 on a GPU)."""
    if args.demo_pair:
        return demo_pair(recipe), torch.float32
    if args.pair_cache is not None:
        args.pair_cache.mkdir(parents=True, exist_ok=True)
    pair = trained_pair(recipe, args.device, args.pair_cache, log)
    return pair, torch.bfloat16 if args.device == "cuda" else torch.float32


def measure_hf(
    target, draft, prompts, *, reference, hf_static_b1, batch_sizes: list[int], new: int, args, device: str, log
) -> dict[int, dict]:
    """Hugging Face's figures per batch size: greedy eager and static cache, and at batch 1 assisted
    generation and prompt lookup (none with `--engine-only`). Run before the engine's, so that its
    compiled graphs never interleave with the engine's."""
    static_kwargs = {"cache_implementation": "static"}
    rows: dict[int, dict] = {}
    for batch_size in batch_sizes:
        row: dict = {"batch_size": batch_size}
        groups = batches(prompts, batch_size)
        if args.engine_only:
            pass
        elif batch_size == 1:
            slow = [[p] for p in prompts[: args.slow_prompts]]
            hf_run(target, [[prompts[0][:16]]], 8, device)  # warm-up (kernels, allocator)
            eager, seconds, tokens = hf_run(target, slow, new, device)
            row["target_tok_s"] = round(tokens / seconds, 1)
            same = sum(a == b for a, b in zip(eager, reference, strict=False))
            row["hf_eager_vs_static_identical"] = f"{same}/{len(eager)}"
            if hf_static_b1 is None:
                _, seconds, tokens = hf_run(target, [[p] for p in prompts], new, device, **static_kwargs)
                hf_static_b1 = tokens / seconds
            row["hf_static_compiled_tok_s"] = round(hf_static_b1, 1)
            hf_run(target, [[prompts[0][:16]]], 8, device, assistant_model=draft)  # warm-up
            _, seconds, tokens = hf_run(target, slow, new, device, assistant_model=draft)
            row["hf_assisted_tok_s"] = round(tokens / seconds, 1)
            _, seconds, tokens = hf_run(target, slow, new, device, prompt_lookup_num_tokens=10)
            row["hf_prompt_lookup_tok_s"] = round(tokens / seconds, 1)
            row["hf_slow_modes_prompts"] = len(slow)
        else:
            _, seconds, tokens = hf_run(target, groups[:1], new, device)
            row["target_tok_s"] = round(tokens / seconds, 1)
            hf_run(target, groups[:1], new, device, **static_kwargs)  # compile for this batch size
            _, seconds, tokens = hf_run(target, groups, new, device, **static_kwargs)
            row["hf_static_compiled_tok_s"] = round(tokens / seconds, 1)
        rows[batch_size] = row
        log(f"HF batch {batch_size}: {row}")
    return rows


def sweep_fixed_k(engine, prompts, *, recipe: BenchRecipe, args, device: str, log) -> tuple[int, dict[int, float]]:
    """The fixed k with the best tok/s at batch 1 on a few prompts, and every k's tok/s."""
    new = recipe.new_tokens
    sweep = {}
    few = [[p] for p in prompts[: max(2, args.slow_prompts)]]
    for k in [int(x) for x in args.k_sweep.split(",")]:
        eng = engine("draft", k, adaptive=False)
        eng.warm_up([1], max_tokens=recipe.prompt_tokens + new)
        engine_run(eng, few[:1], new, device)
        _, seconds, tokens, _ = engine_run(eng, few, new, device)
        sweep[k] = round(tokens / seconds, 1)
        del eng
    best_k = max(sweep, key=sweep.get)
    log(f"k sweep (batch 1): {sweep} -> k = {best_k}")
    return best_k, sweep


def measure_engine(
    modes: dict, row: dict, prompts, *, batch_size: int, best_k: int, lossless, args, new: int, device: str
) -> None:
    """The engine's figures at `batch_size` into `row`: every mode's tok/s (median of `--passes`
    interleaved passes), speculation figures, step times and losslessness."""
    row["k"] = best_k
    groups = batches(prompts, batch_size)
    # above batch 1 the engine runs as the server runs it, continuously batched: `waves` times the
    # batch in sequences stream through `batch_size` rows (static batches are recorded beside it)
    stream = [prompts[i % len(prompts)] for i in range(args.waves * batch_size)]
    checks = {}
    for name, eng in modes.items():
        engine_run(eng, groups[:1], new, device)  # warm-up: governor
        times = StepTimes()  # the measured run's steps only (not the static run beside it)
        if batch_size > 1 and name in ("specops_nonspec", "specops_fixed_k"):
            _, seconds, tokens, _ = engine_run(eng, groups, new, device)
            row[f"{name}_static_tok_s"] = round(tokens / seconds, 1)
        outputs, seconds, tokens, records = measured_run(eng, batch_size, groups, stream, new, device, times)
        measured = [stream] if batch_size > 1 else groups
        row[f"{name}_tok_s"] = round(tokens / seconds, 1)
        if lossless is not None:
            checks[name] = lossless.check(measured, outputs)
        figures = speculation_figures(records)
        row[f"{name}_figures"] = {
            **figures,
            "device_busy_fraction": device_busy(records, seconds),
            # against governor_step_ms (median of steady steps): the gap is per-call and unsteady work
            "step_wall": times.summary(),
            "k_chosen": k_histogram(records),
            "governor_step_ms": {
                f"b{bucket}_k{k}": round(eng.governor.step_seconds(bucket, k) * 1000, 3)
                for bucket, k in sorted(eng.governor.samples)
            },
            # the recent step times behind those medians (their spread shows a noisy choice)
            "governor_samples_ms": {
                f"b{bucket}_k{k}": [round(t * 1000, 3) for t in samples]
                for (bucket, k), samples in sorted(eng.governor.samples.items())
            },
        }
    # more passes, the modes interleaved, so that a drift of the machine's speed during the run
    # (seen at 10-20 % between modes doing identical work) hits every mode alike
    passes = {name: [row[f"{name}_tok_s"]] for name in modes}
    for _ in range(args.passes - 1):
        for name, eng in modes.items():
            _, seconds, tokens, _ = measured_run(eng, batch_size, groups, stream, new, device)
            passes[name].append(round(tokens / seconds, 1))
    for name, values in passes.items():
        row[f"{name}_passes_tok_s"] = values
        row[f"{name}_tok_s"] = statistics.median(values)
    figures = row["specops_fixed_k_figures"]
    row["alpha"] = figures["alpha"]
    row["mean_accepted_length"] = figures["mean_accepted_length"]
    row["c"] = figures["c"]
    row["theoretical_speedup"] = (
        round(expected_speedup(figures["alpha"], best_k, figures["c"]), 3) if figures["c"] is not None else None
    )
    if "target_tok_s" in row:
        row["speedup_over_target"] = round(row["specops_tok_s"] / row["target_tok_s"], 2)
    row["spec_over_nonspec"] = round(row["specops_fixed_k_tok_s"] / row["specops_nonspec_tok_s"], 3)
    row["adaptive_over_nonspec"] = round(row["specops_tok_s"] / row["specops_nonspec_tok_s"], 3)
    if row["theoretical_speedup"]:
        row["spec_over_nonspec_vs_theory"] = round(row["spec_over_nonspec"] / row["theoretical_speedup"], 3)
    if checks:
        row["identical"] = sum(c["identical"] for c in checks.values())
        row["prompts"] = sum(c["prompts"] for c in checks.values())
        row["divergences_not_near_tie"] = sum(c["divergences_not_near_tie"] for c in checks.values())
    row["lossless_by_mode"] = checks


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    device = args.device
    recipe = bench_recipe(args)
    log = lambda msg: print(f"[{time.perf_counter() - began:6.1f}s] {msg}", flush=True)  # noqa: E731
    torch.backends.cuda.matmul.allow_tf32 = True
    if device == "cpu":
        torch.set_num_threads(args.threads)
    import transformers

    report: dict = {
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else platform_module.processor() or platform_module.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "engine_source": engine_source_digest(),
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # partial results survive a timeout

    pair, dtype = load_pair(args, recipe, log)
    report["pair"] = pair.report
    save()
    if args.train_only:
        return
    target = pair.target.to(device=device, dtype=dtype).eval()
    draft = pair.draft.to(device=device, dtype=dtype).eval()
    target.generation_config.eos_token_id = None
    draft.generation_config.eos_token_id = None
    tokenizer, prompts = pair.tokenizer, pair.prompts
    report["dtype"] = str(dtype).removeprefix("torch.")
    if device == "cpu":
        report["cpu_threads"] = torch.get_num_threads()
        report["hf_static_note"] = (
            "transformers compiles static-cache generation only on accelerators: on a CPU it is the static cache, eager"
        )
    new = recipe.new_tokens
    log(f"{len(prompts)} prompts of {recipe.prompt_tokens} tokens, {new} new tokens, {report['dtype']}")

    # the target's own greedy output (HF static compiled, batch 1) is the reference of every check
    lossless = reference = hf_static_b1 = None
    if not args.engine_only:
        reference, hf_static_b1 = reference_outputs(pair, new, device, args.pair_cache)
        lossless = Lossless(target, prompts, reference, args.near_tie, device)

    def engine(proposer: str, k: int, adaptive: bool, *, draft_ahead: bool = True) -> SpeculativeEngine:
        config = SpeculationConfig(
            proposer=proposer,
            num_speculative_tokens=k,
            adaptive=adaptive,
            execution=ExecutionSettings(
                cuda_graphs=not args.no_cuda_graphs, compiled=not args.no_compile, draft_ahead=draft_ahead
            ),
        )
        return SpeculativeEngine(target, tokenizer, draft=draft if proposer == "draft" else None, config=config)

    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    common = {"batch_sizes": batch_sizes, "new": new, "args": args, "device": device, "log": log}
    rows = measure_hf(target, draft, prompts, reference=reference, hf_static_b1=hf_static_b1, **common)
    report["hf"] = rows
    save()

    best_k = args.k
    if best_k is None:
        best_k, report["k_sweep_batch1_tok_s"] = sweep_fixed_k(
            engine, prompts, recipe=recipe, args=args, device=device, log=log
        )
    modes = {
        "specops_nonspec": engine("none", 0, adaptive=False),
        "specops_fixed_k": engine("draft", best_k, adaptive=False),
        "specops": engine("draft", 8, adaptive=True),
        "specops_prompt_lookup": engine("prompt_lookup", 8, adaptive=True),
    }
    if args.inline:  # fixed k drafting each step after reading the decision before it (no drafts made ahead)
        modes["specops_fixed_k_inline"] = engine("draft", best_k, adaptive=False, draft_ahead=False)
    for eng in modes.values():
        # batch 1 runs static calls, larger batches continuous ones (whose caches are larger)
        eng.warm_up([b for b in batch_sizes if b == 1], max_tokens=recipe.prompt_tokens + new)
        eng.warm_up([b for b in batch_sizes if b > 1], max_tokens=recipe.prompt_tokens + new, continuous=True)
    log("graphs captured")
    for batch_size in batch_sizes:
        row = rows[batch_size]
        measure_engine(
            modes,
            row,
            prompts,
            batch_size=batch_size,
            best_k=best_k,
            lossless=lossless,
            args=args,
            new=new,
            device=device,
        )
        report[f"batch{batch_size}"] = row
        save()
        log(f"batch {batch_size}: " + json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}))
    report["wall_seconds"] = round(time.perf_counter() - began, 1)
    report.pop("hf", None)
    save()
    print_table(report, batch_sizes)


def merge(paths: list[Path], out: Path) -> None:
    """Join runs that measured different batch sizes on the same cached pair into one results file."""
    runs = [json.loads(p.read_text()) for p in paths]
    merged = dict(runs[0])
    for run in runs[1:]:
        if run["pair"].get("target_training") != merged["pair"].get("target_training"):
            raise SystemExit(f"runs measured different pairs: {paths}")
        merged.update({k: v for k, v in run.items() if k.startswith("batch") or k == "k_sweep_batch1_tok_s"})
    merged["runs"] = [{"file": p.name, "wall_seconds": r.get("wall_seconds")} for p, r in zip(paths, runs, strict=True)]
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print_table(merged, sorted(int(k.removeprefix("batch")) for k in merged if k.startswith("batch")))


def print_table(report: dict, batch_sizes: list[int]) -> None:
    columns = [
        "target",
        "hf_static_compiled",
        "hf_assisted",
        "hf_prompt_lookup",
        "specops_nonspec",
        "specops_fixed_k",
        "specops",
        "specops_prompt_lookup",
    ]
    rows = []
    for b in batch_sizes:
        row = report[f"batch{b}"]
        cells = [f"{row.get(f'{c}_tok_s'):.0f}" if row.get(f"{c}_tok_s") else "-" for c in columns]
        rows.append(
            [
                str(b),
                *cells,
                f"{row['alpha']:.2f}",
                f"{row['mean_accepted_length']:.2f}",
                str(row["c"]),
                str(row["theoretical_speedup"]),
                f"{row.get('identical', '-')}/{row.get('prompts', '-')}",
                str(row.get("divergences_not_near_tie", "-")),
            ]
        )
    header = [
        "batch",
        "target",
        "hf static",
        "hf assist",
        "hf lookup",
        "nonspec",
        "fixed k",
        "spec",
        "lookup",
        "alpha",
        "acc len",
        "c",
        "theory",
        "identical",
        "bad div",
    ]
    title = f"engine tok/s on {report['device']} (torch {report['torch']}, {report['dtype']})"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(header))
        for r in rows:
            print(" | ".join(r))
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if sys.argv[1:2] == ["merge"]:  # engine.py merge OUT RUN.json RUN.json ...
        merge([Path(p) for p in sys.argv[3:]], Path(sys.argv[2]))
    else:
        main()
