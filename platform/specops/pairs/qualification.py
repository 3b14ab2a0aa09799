"""The qualification gate: measure a pair on evaluation prompts before it may become a version.

Measured on this machine (the one the pair will serve on), one prompt at a time:

- **losslessness** — the pair's greedy output equals the target alone's (``proposer="none"``) on every
  prompt, token for token (speculative decoding must never change greedy output; arXiv 2211.17192);
- **tokenizer compatibility** — the draft's tokenizer (if it ships one) has the target's vocabulary and
  the two models' vocabulary sizes agree;
- **acceptance rate** — accepted / drafted tokens over all prompts, with the pair's own speculation
  settings (draft length k, adaptive k on or off as its PairSpec says), i.e. the figure the canary
  analysis will see in serving. With a fixed k the rate also falls as k grows (later positions are
  accepted only after earlier ones), so a fixed-k figure would under-state a good adaptive pair.
  The pair drafts at every step (``always_draft``): the engine's timing-based fallback to plain
  decoding would make the figure depend on this machine's step times, not on the pair;
- **mean accepted length** — tokens gained per target verification (1 + accepted per draft);
- **speedup, greedy** — wall time of the target alone / wall time of the pair, greedy, after one
  warm-up each, the two taking turns prompt by prompt (``speedup``);
- **speedup, sampled** — the same ratio with the pair's default sampling (its PairSpec's
  temperature / top_p / top_k), or the typical chat setting (temperature 0.7, top_p 0.95) when the
  pair's default is greedy: the report's ``sampled_settings`` says which (``speedup_sampled``). Same
  prompts, after a short sampled warm-up call each (sampled steps run other code than greedy ones).
  Prompt i samples with seed ``SAMPLING_SEED + i`` in the target-alone and in the pair run, so both
  draw from the same seeded generator; the pair's rejection sampling consumes draws differently, so
  the tokens may differ (their distribution does not), and both runs decode exactly
  ``max_new_tokens`` tokens, so the times compare.

A pair is refused when it is not lossless, its tokenizers differ, its acceptance rate is under the
floor (``min_acceptance``), or its greedy **or** sampled speedup is under the speedup floor
(``min_speedup``): a pair serves both kinds of request, and one that slows either slows traffic.
Losslessness and tokenizer checks cannot be switched off; the floors can be lowered (``0.0`` records
the figures without judging them — the demo's mismatched pair is meant to be caught by the canary
analysis, not here). The speedup floor defaults to :func:`default_min_speedup` of the device: 1.0 on
CUDA, 0 (recorded, not judged) on a CPU; a speedup under 1 that is not judged is said plainly in the
report's ``speedup_note`` and summary.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from specops.errors import InvalidInput, QualificationRefused
from specops.pairs import eval_inputs, pair_spec, qualification_rules
from specops.pairs.qualification_report import QualificationReport
from specops.pairs.qualification_rules import DEFAULT_MIN_ACCEPTANCE

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "DEFAULT_MIN_ACCEPTANCE", "QualificationReport", "enforce", "qualify"]

DEFAULT_MAX_NEW_TOKENS = 32
"""Tokens generated per evaluation prompt."""

WARM_UP_SAMPLED_TOKENS = 4
"""Tokens of the one sampled warm-up call per engine (the greedy warm-up is one full prompt)."""

SAMPLING_SEED = 20_261
"""Seed of prompt 0's sampled runs; prompt i uses ``SAMPLING_SEED + i`` (target alone and pair alike)."""

ProgressCallback = Callable[[str, int, int], None]
"""Called as (phase, prompts done, prompts total)."""


def qualify(
    target: str | Path,
    draft: str | Path,
    *,
    prompts: list[str] | None = None,
    min_acceptance: float = DEFAULT_MIN_ACCEPTANCE,
    min_speedup: float | None = None,
    num_speculative_tokens: int = 4,
    adaptive: bool = True,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> QualificationReport:
    """Measure ``target`` + ``draft`` on ``prompts`` (default: the bundled set) and judge them.

    ``temperature``/``top_p``/``top_k`` are the pair's default sampling (its PairSpec's speculation
    settings), used for the sampled speedup (see :func:`sampled_settings`). ``min_speedup`` None means
    :func:`default_min_speedup` of ``device``. Returns a report whether the pair passed or not;
    :func:`enforce` turns a failure into :class:`QualificationRefused`. Missing or unreadable
    checkpoints and out-of-range floors raise :class:`InvalidInput`.
    """
    qualification_rules.check_floors(min_acceptance=min_acceptance, min_speedup=min_speedup)
    speedup_floor = qualification_rules.default_min_speedup(device) if min_speedup is None else float(min_speedup)
    speedup_source = f"default on {qualification_rules.device_kind(device)}" if min_speedup is None else "given"
    sample_temperature, sample_top_p, sample_top_k, sample_source = qualification_rules.sampled_settings(
        temperature=temperature, top_p=top_p, top_k=top_k
    )
    if max_new_tokens < 1:
        raise InvalidInput(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    target_dir = pair_spec.checkpoint_folder(target, "target")
    draft_dir = pair_spec.checkpoint_folder(draft, "draft")
    prompts = prompts if prompts is not None else eval_inputs.load_prompts()
    if not prompts:
        raise InvalidInput("qualification needs at least one prompt")

    common = {
        "min_acceptance": min_acceptance,
        "min_speedup": speedup_floor,
        "min_speedup_source": speedup_source,
        "sampled_temperature": sample_temperature,
        "sampled_top_p": sample_top_p,
        "sampled_top_k": sample_top_k,
        "sampled_settings": sample_source,
        "num_prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "num_speculative_tokens": num_speculative_tokens,
        "adaptive": adaptive,
        "device": device,
        "machine": _machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    compatible, tokenizer_reason, target_vocab, draft_vocab = eval_inputs.check_tokenizers(target_dir, draft_dir)
    if not compatible:
        return QualificationReport(
            passed=False,
            reason=f"tokenizers differ: {tokenizer_reason}",
            lossless=False,
            tokenizer_compatible=False,
            tokenizer_reason=tokenizer_reason,
            acceptance_rate=0.0,
            mean_accepted_length=1.0,
            speedup=0.0,
            target_vocab_size=target_vocab,
            draft_vocab_size=draft_vocab,
            **common,
        )

    from specops.engine import AdaptationSettings, SamplingParams, SpeculationConfig, SpeculativeEngine

    baseline = _load_engine(SpeculativeEngine, target_dir, None, SpeculationConfig(proposer="none"), device)
    pair = _load_engine(
        SpeculativeEngine,
        target_dir,
        draft_dir,
        # always drafting: the acceptance figure must not depend on this machine's step timings
        SpeculationConfig(
            proposer="draft",
            num_speculative_tokens=num_speculative_tokens,
            adaptive=adaptive,
            adaptation=AdaptationSettings(always_draft=True),
        ),
        device,
    )
    tokenizer = baseline.tokenizer
    encoded = [_encode(tokenizer, prompt, baseline.max_context, max_new_tokens) for prompt in prompts]
    params = [SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)] * len(encoded)
    sampled = [
        SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=sample_temperature,
            top_p=sample_top_p,
            top_k=sample_top_k,
            seed=SAMPLING_SEED + index,
            ignore_eos=True,
        )
        for index in range(len(encoded))
    ]

    # warm-up: first-call allocations are not the pair's fault. Sampled steps run other code than greedy
    # ones (rejection sampling; on a GPU, not the greedy steps' CUDA graph): a few sampled tokens each
    # load that code too, for a fraction of a full prompt's time.
    sampled_warm_up = replace(sampled[0], max_new_tokens=min(max_new_tokens, WARM_UP_SAMPLED_TOKENS))
    for engine in (baseline, pair):
        engine.generate([encoded[0]], [params[0]])
        engine.generate([encoded[0]], [sampled_warm_up])
    (target_outputs, target_seconds), (pair_results, pair_seconds) = _run_both(
        baseline, pair, encoded, params, ("target alone", "target + draft"), progress
    )
    (_, target_seconds_sampled), (sampled_results, pair_seconds_sampled) = _run_both(
        baseline, pair, encoded, sampled, ("target alone, sampled", "target + draft, sampled"), progress
    )

    mismatches = [
        index
        for index, (expected, got) in enumerate(zip(target_outputs, pair_results, strict=True))
        if expected.token_ids != got.token_ids
    ]
    first_mismatch = None
    if mismatches:
        index = mismatches[0]
        expected, got = target_outputs[index].token_ids, pair_results[index].token_ids
        position = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
        position = min(len(expected), len(got)) if position is None else position
        first_mismatch = {"prompt_index": index, "prompt": prompts[index][:200], "token_position": position}

    num_drafts = sum(r.stats.num_drafts for r in pair_results)
    num_draft_tokens = sum(r.stats.num_draft_tokens for r in pair_results)
    num_accepted = sum(r.stats.num_accepted_tokens for r in pair_results)
    per_position = [0] * num_speculative_tokens
    for result in pair_results:
        for position, count in enumerate(result.stats.num_accepted_per_position[:num_speculative_tokens]):
            per_position[position] += count
    acceptance = num_accepted / num_draft_tokens if num_draft_tokens else 0.0
    mean_length = 1.0 + num_accepted / num_drafts if num_drafts else 1.0
    target_tokens = sum(len(r.token_ids) for r in target_outputs)
    pair_tokens = sum(len(r.token_ids) for r in pair_results)
    sampled_drafted = sum(r.stats.num_draft_tokens for r in sampled_results)
    sampled_accepted = sum(r.stats.num_accepted_tokens for r in sampled_results)
    speedup = target_seconds / pair_seconds if pair_seconds > 0 else 0.0
    speedup_sampled = target_seconds_sampled / pair_seconds_sampled if pair_seconds_sampled > 0 else 0.0
    speedup_reason = qualification_rules.speedup_reason(
        greedy=speedup, sampled=speedup_sampled, floor=speedup_floor, temperature=sample_temperature, top_p=sample_top_p
    )

    lossless = not mismatches
    if not lossless:
        reason = (
            f"not lossless: greedy output differs from the target alone on {len(mismatches)} of "
            f"{len(prompts)} prompts (first: prompt {first_mismatch['prompt_index']}, "  # type: ignore[index]
            f"token {first_mismatch['token_position']})"  # type: ignore[index]
        )
    elif acceptance < min_acceptance:
        reason = f"acceptance rate {acceptance:.3f} is under the floor {min_acceptance:g}"
    elif speedup_reason:
        reason = speedup_reason
    else:
        reason = "lossless, same tokenizer, acceptance and speedup at or above their floors"
    return QualificationReport(
        passed=lossless and acceptance >= min_acceptance and not speedup_reason,
        reason=reason,
        lossless=lossless,
        tokenizer_compatible=True,
        tokenizer_reason=tokenizer_reason,
        acceptance_rate=acceptance,
        mean_accepted_length=mean_length,
        speedup=speedup,
        speedup_sampled=speedup_sampled,
        acceptance_rate_sampled=sampled_accepted / sampled_drafted if sampled_drafted else 0.0,
        target_seconds_sampled=target_seconds_sampled,
        pair_seconds_sampled=pair_seconds_sampled,
        speedup_note=qualification_rules.speedup_note(
            greedy=speedup, sampled=speedup_sampled, floor=speedup_floor, source=speedup_source, device=device
        ),
        num_mismatched_prompts=len(mismatches),
        first_mismatch=first_mismatch,
        num_drafts=num_drafts,
        num_draft_tokens=num_draft_tokens,
        num_accepted_tokens=num_accepted,
        num_accepted_per_position=per_position,
        target_seconds=target_seconds,
        pair_seconds=pair_seconds,
        target_tokens_per_s=target_tokens / target_seconds if target_seconds > 0 else 0.0,
        pair_tokens_per_s=pair_tokens / pair_seconds if pair_seconds > 0 else 0.0,
        target_vocab_size=target_vocab,
        draft_vocab_size=draft_vocab,
        **common,
    )


def enforce(report: QualificationReport) -> None:
    """Raise :class:`QualificationRefused` with the one-line reason when ``report`` did not pass."""
    if not report.passed:
        raise QualificationRefused(f"qualification refused: {report.reason}")


def _load_engine(engine_class: Any, target: Path, draft: Path | None, config: Any, device: str) -> Any:
    try:
        return engine_class.load(target, draft, config=config, device=device)
    except InvalidInput:
        raise
    except Exception as error:
        which = f"{target}" + (f" + {draft}" if draft else "")
        raise InvalidInput(f"cannot load checkpoint {which}: {eval_inputs.first_line(error)}") from error


def _encode(tokenizer: Any, prompt: str, max_context: int, max_new_tokens: int) -> list[int]:
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if not ids:
        raise InvalidInput(f"prompt {prompt[:40]!r} encodes to no tokens")
    budget = max_context - max_new_tokens - 32
    if budget < 1:
        raise InvalidInput(f"max_new_tokens {max_new_tokens} leaves no room in a context of {max_context}")
    return ids[-budget:]


def _run_both(  # type: ignore[no-untyped-def]
    baseline: Any,
    pair: Any,
    encoded: list[list[int]],
    params: list[Any],
    phases: tuple[str, str],
    progress: ProgressCallback | None,
):
    """Generate each prompt alone (with its own params) on ``baseline`` and on ``pair``, interleaved.

    Returns ((baseline results, seconds), (pair results, seconds)). The two engines take turns per
    prompt, in alternating order (A B, B A, ...): a burst of other work on the machine, or a slow drift
    in its speed, then falls on both sides alike rather than on whichever ran during it. (It narrows
    the noise on a shared machine; it cannot remove it.)
    """
    engines = (baseline, pair)
    results: tuple[list[Any], list[Any]] = ([], [])
    seconds = [0.0, 0.0]
    for done, (ids, prompt_params) in enumerate(zip(encoded, params, strict=True)):
        for side in (0, 1) if done % 2 == 0 else (1, 0):
            started = time.perf_counter()
            results[side].extend(engines[side].generate([ids], [prompt_params]))
            seconds[side] += time.perf_counter() - started
            if progress is not None:
                progress(phases[side], done + 1, len(encoded))
    return (results[0], seconds[0]), (results[1], seconds[1])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"
