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

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from specops.errors import InvalidInput, QualificationRefused
from specops.pairs import pair_spec

DEFAULT_MIN_ACCEPTANCE = 0.2
"""Acceptance-rate floor when neither the spec nor a flag says otherwise."""

DEFAULT_MAX_NEW_TOKENS = 32
"""Tokens generated per evaluation prompt."""

CHAT_TEMPERATURE = 0.7
"""Temperature of the sampled speedup when the pair's default is greedy: the typical chat setting."""

CHAT_TOP_P = 0.95
"""top_p of the sampled speedup when the pair's default is greedy (with ``CHAT_TEMPERATURE``)."""

WARM_UP_SAMPLED_TOKENS = 4
"""Tokens of the one sampled warm-up call per engine (the greedy warm-up is one full prompt)."""

SAMPLING_SEED = 20_261
"""Seed of prompt 0's sampled runs; prompt i uses ``SAMPLING_SEED + i`` (target alone and pair alike)."""

TAG_PREFIX = "qualification."
"""Prefix of the registry tags that carry the figures."""

ProgressCallback = Callable[[str, int, int], None]
"""Called as (phase, prompts done, prompts total)."""


@dataclass
class QualificationReport:
    """Everything the gate measured and decided (written as ``qualification.json`` and as tags)."""

    passed: bool
    reason: str
    lossless: bool
    tokenizer_compatible: bool
    tokenizer_reason: str
    acceptance_rate: float
    mean_accepted_length: float
    speedup: float
    min_acceptance: float
    num_prompts: int
    max_new_tokens: int
    num_speculative_tokens: int
    adaptive: bool = True
    num_mismatched_prompts: int = 0
    first_mismatch: dict[str, Any] | None = None
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    num_accepted_per_position: list[int] = field(default_factory=list)
    target_seconds: float = 0.0
    pair_seconds: float = 0.0
    target_tokens_per_s: float = 0.0
    pair_tokens_per_s: float = 0.0
    target_vocab_size: int = 0
    draft_vocab_size: int = 0
    device: str = "cpu"
    machine: str = ""
    measured_at: str = ""
    speedup_sampled: float = 0.0
    sampled_temperature: float = CHAT_TEMPERATURE
    sampled_top_p: float = CHAT_TOP_P
    sampled_top_k: int = 0
    sampled_settings: str = ""
    acceptance_rate_sampled: float = 0.0
    target_seconds_sampled: float = 0.0
    pair_seconds_sampled: float = 0.0
    min_speedup: float = 0.0
    min_speedup_source: str = ""
    speedup_note: str = ""

    def tags(self) -> dict[str, str]:
        """The figures as registry tags (``qualification.*``)."""
        return {
            f"{TAG_PREFIX}passed": _flag(self.passed),
            f"{TAG_PREFIX}lossless": _flag(self.lossless),
            f"{TAG_PREFIX}tokenizer_compatible": _flag(self.tokenizer_compatible),
            f"{TAG_PREFIX}acceptance_rate": f"{self.acceptance_rate:.4f}",
            f"{TAG_PREFIX}mean_accepted_length": f"{self.mean_accepted_length:.3f}",
            f"{TAG_PREFIX}speedup": f"{self.speedup:.3f}",
            f"{TAG_PREFIX}speedup_sampled": f"{self.speedup_sampled:.3f}",
            f"{TAG_PREFIX}sampled_temperature": f"{self.sampled_temperature:g}",
            f"{TAG_PREFIX}sampled_top_p": f"{self.sampled_top_p:g}",
            f"{TAG_PREFIX}sampled_top_k": str(self.sampled_top_k),
            f"{TAG_PREFIX}acceptance_rate_sampled": f"{self.acceptance_rate_sampled:.4f}",
            f"{TAG_PREFIX}min_acceptance": f"{self.min_acceptance:g}",
            f"{TAG_PREFIX}min_speedup": f"{self.min_speedup:g}",
            f"{TAG_PREFIX}min_speedup_source": self.min_speedup_source,
            f"{TAG_PREFIX}speedup_note": self.speedup_note[:250],
            f"{TAG_PREFIX}num_prompts": str(self.num_prompts),
            f"{TAG_PREFIX}max_new_tokens": str(self.max_new_tokens),
            f"{TAG_PREFIX}num_speculative_tokens": str(self.num_speculative_tokens),
            f"{TAG_PREFIX}adaptive": _flag(self.adaptive),
            f"{TAG_PREFIX}device": self.device,
            f"{TAG_PREFIX}machine": self.machine[:250],
            f"{TAG_PREFIX}measured_at": self.measured_at,
        }

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def summary(self) -> str:
        """One line: verdict and figures (and the speedup note, when there is one)."""
        verdict = "qualified" if self.passed else f"refused: {self.reason}"
        line = (
            f"{verdict} — acceptance {self.acceptance_rate:.3f} (floor {self.min_acceptance:g}), "
            f"mean accepted length {self.mean_accepted_length:.2f}, "
            f"speedup {self.speedup:.2f}× greedy, {self.speedup_sampled:.2f}× sampled "
            f"(floor {self.min_speedup:g}), lossless {'yes' if self.lossless else 'no'} on {self.num_prompts} prompts"
        )
        return f"{line}; {self.speedup_note}" if self.speedup_note else line


def _flag(value: bool) -> str:
    return "true" if value else "false"


# ------------------------------------------------------------------------------------ floors and settings


def default_min_speedup(device: str) -> float:
    """The speedup floor when neither the spec (``slos.min_speedup``) nor a flag sets one.

    1.0 on a CUDA device; 0.0 (recorded, not judged) on a CPU and on any other device.

    Why: qualification runs on the machine the pair will serve on, so its speedup is the one traffic
    will get. Speculation exists to make decoding faster on accelerators, where a step of a real LLM is
    bound by memory bandwidth and verifying k + 1 tokens costs little more than decoding one; a pair
    that decodes slower than its target alone there (under 1×, greedy or sampled) only adds cost and
    is refused. That holds for tiny models too: a 4 M-parameter pair is bound by kernel launches on a
    GPU, and is refused there unless a floor is given.
    On a CPU a step is bound by compute and per-step overhead, so only a draft the target keeps most
    of pays, and run-to-run noise on shared cores is as large as the effect (see the demo pair's
    figures in ``benchmarks/results/demo-cpu.json``): judging it would
    refuse pairs the tests and the demo qualify by chance, and says nothing about the GPU it may
    serve on later. So on a CPU the figures
    are recorded, and the report says plainly when they are under 1. Other devices (mps, xpu, …) have
    no measured basis here yet: not judged either.
    """
    return 1.0 if _device_kind(device) == "cuda" else 0.0


def check_floors(
    *,
    min_acceptance: float | None,
    min_speedup: float | None,
    names: tuple[str, str] = ("min_acceptance", "min_speedup"),
) -> None:
    """Refuse an acceptance floor outside [0, 1] or a negative (or NaN) speedup floor, naming it as ``names``."""
    if min_acceptance is not None and not 0.0 <= min_acceptance <= 1.0:
        raise InvalidInput(f"{names[0]} must be within [0, 1], got {min_acceptance:g}")
    if min_speedup is not None and (math.isnan(min_speedup) or min_speedup < 0.0):
        raise InvalidInput(f"{names[1]} must be >= 0 (0 records without judging), got {min_speedup:g}")


def sampled_settings(*, temperature: float, top_p: float, top_k: int) -> tuple[float, float, int, str]:
    """(temperature, top_p, top_k, where they come from) of the sampled speedup measurement.

    The pair's default sampling when it samples; the typical chat setting (``CHAT_TEMPERATURE``,
    ``CHAT_TOP_P``, the pair's top_k) when its default is greedy — a greedy default says nothing about
    how its sampled requests will run.
    """
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
        raise InvalidInput(
            f"sampling settings must have temperature >= 0, top_p in (0, 1] and top_k >= 0, got "
            f"temperature {temperature:g}, top_p {top_p:g}, top_k {top_k}"
        )
    if temperature > 0:
        return temperature, top_p, top_k, "the pair's default sampling"
    return (
        CHAT_TEMPERATURE,
        CHAT_TOP_P,
        top_k,
        f"the typical chat setting (temperature {CHAT_TEMPERATURE:g}, top_p {CHAT_TOP_P:g}): "
        "the pair's default is greedy",
    )


def speedup_note(*, greedy: float, sampled: float, floor: float, source: str, device: str) -> str:
    """A plain sentence when speculation does not pay here (a figure under 1) and the floor let it pass.

    "" when both figures are at least 1, or when the floor refuses the pair (its reason says so).
    ``source`` is how the floor was chosen: "given", or "default on DEVICE" (:func:`default_min_speedup`).
    """
    if min(greedy, sampled) >= 1.0 or (floor > 0 and min(greedy, sampled) < floor):
        return ""  # it pays, or the gate refuses it (the reason says so)
    figures = f"speculation does not pay on this machine (greedy {greedy:.2f}×, sampled {sampled:.2f}×)"
    if floor > 0:
        return f"{figures}: at or above the floor {floor:g}"
    if source == "given":
        return f"{figures}: not judged (floor 0 given)"
    return f"{figures}: not judged here (floor 0 on {_device_kind(device)}); pass --min-speedup to enforce"


def _speedup_reason(*, greedy: float, sampled: float, floor: float, temperature: float, top_p: float) -> str:
    """One line naming the figure(s) under the floor, or "" when both are at or above it."""
    if greedy < floor and sampled < floor:
        return f"speedup is under the floor {floor:g}×: greedy {greedy:.3f}×, sampled {sampled:.3f}×"
    if greedy < floor:
        return f"greedy speedup {greedy:.3f}× is under the floor {floor:g}× (sampled {sampled:.3f}×)"
    if sampled < floor:
        return (
            f"sampled speedup {sampled:.3f}× (temperature {temperature:g}, top_p {top_p:g}) is under the floor "
            f"{floor:g}× (greedy {greedy:.3f}×)"
        )
    return ""


def _device_kind(device: str) -> str:
    """The device type of a torch device string: "cuda" for "cuda:1"."""
    return str(device).split(":", 1)[0].strip().lower()


# ------------------------------------------------------------------------------------ prompts


def load_prompts(path: str | Path | None = None) -> list[str]:
    """Evaluation prompts: the bundled default, or a file.

    Formats: ``.json`` (a list of strings, or ``{"prompts": [...]}``), ``.jsonl`` (one string or
    ``{"prompt": ...}`` per line), anything else one prompt per non-empty line.
    """
    if path is None:
        text = resources.files("specops.pairs").joinpath("eval-prompts.json").read_text()
        return _prompts_from_json(json.loads(text), "the bundled prompts")
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise InvalidInput(f"prompt file {path} does not exist") from error
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read prompt file {path}: {error}") from error
    try:
        if path.suffix == ".json":
            prompts = _prompts_from_json(json.loads(text), str(path))
        elif path.suffix == ".jsonl":
            prompts = []
            for line in filter(str.strip, text.splitlines()):
                item = json.loads(line)
                prompts.append(item["prompt"] if isinstance(item, dict) else item)
        else:
            prompts = [line for line in text.splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"prompt file {path} is malformed: {error}") from error
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InvalidInput(f"prompt file {path} holds no prompts (or a prompt that is not text)")
    return prompts


def _prompts_from_json(data: Any, where: str) -> list[str]:
    prompts = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InvalidInput(f"{where} must hold a non-empty list of prompt strings")
    return prompts


# ------------------------------------------------------------------------------------ checks


def check_tokenizers(target: Path, draft: Path) -> tuple[bool, str, int, int]:
    """(compatible, reason, target vocab size, draft vocab size) of a target/draft pair.

    Compatible means: the models' ``vocab_size`` agree and, when the draft ships tokenizer files,
    they are byte-identical to the target's or define the same vocabulary and special tokens.
    """
    from transformers import AutoTokenizer

    target_vocab = _config_vocab_size(target)
    draft_vocab = _config_vocab_size(draft)
    if target_vocab != draft_vocab:
        return False, f"vocabulary sizes differ (target {target_vocab}, draft {draft_vocab})", target_vocab, draft_vocab
    target_hash = pair_spec.tokenizer_sha256(target)
    if not target_hash:
        raise InvalidInput(f"target checkpoint {target} has no tokenizer files")
    draft_hash = pair_spec.tokenizer_sha256(draft)
    if not draft_hash or draft_hash == target_hash:
        return (
            True,
            "same tokenizer files" if draft_hash else "draft uses the target's tokenizer",
            target_vocab,
            draft_vocab,
        )
    try:
        target_tokenizer = AutoTokenizer.from_pretrained(str(target))
        draft_tokenizer = AutoTokenizer.from_pretrained(str(draft))
    except Exception as error:
        raise InvalidInput(f"cannot load a tokenizer: {_first_line(error)}") from error
    if target_tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        return False, "draft tokenizer's vocabulary differs from the target's", target_vocab, draft_vocab
    for special in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(target_tokenizer, special, None) != getattr(draft_tokenizer, special, None):
            return False, f"draft tokenizer's {special} differs from the target's", target_vocab, draft_vocab
    return True, "same vocabulary and special tokens", target_vocab, draft_vocab


def _config_vocab_size(folder: Path) -> int:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise InvalidInput(f"checkpoint {folder} has an unreadable config.json: {error}") from error
    text_config = config.get("text_config") or {}
    value = config.get("vocab_size", text_config.get("vocab_size"))
    if not isinstance(value, int):
        raise InvalidInput(f"checkpoint {folder} config.json has no vocab_size")
    return value


# ------------------------------------------------------------------------------------ the gate


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
    check_floors(min_acceptance=min_acceptance, min_speedup=min_speedup)
    speedup_floor = default_min_speedup(device) if min_speedup is None else float(min_speedup)
    speedup_source = f"default on {_device_kind(device)}" if min_speedup is None else "given"
    sample_temperature, sample_top_p, sample_top_k, sample_source = sampled_settings(
        temperature=temperature, top_p=top_p, top_k=top_k
    )
    if max_new_tokens < 1:
        raise InvalidInput(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    target_dir = pair_spec.checkpoint_folder(target, "target")
    draft_dir = pair_spec.checkpoint_folder(draft, "draft")
    prompts = prompts if prompts is not None else load_prompts()
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
    compatible, tokenizer_reason, target_vocab, draft_vocab = check_tokenizers(target_dir, draft_dir)
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
    speedup_reason = _speedup_reason(
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
        speedup_note=speedup_note(
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
        raise InvalidInput(f"cannot load checkpoint {which}: {_first_line(error)}") from error


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
