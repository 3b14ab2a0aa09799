"""The demo pair: a target, a good draft and a mismatched draft, trained here on the CPU and cached.

No model hub is reachable, so the demo makes its own models from the Python standard library's sources
(:mod:`specops.pairs.corpus`): a byte-level BPE tokenizer, a Llama target and two one-layer Llama
drafts — one trained on the same code and then on the target's own greedy continuations of it (a good
pair: a small target's greedy text repeats itself in ways its training text does not, and a draft
trained on that text alone agrees with the target on little of what it writes), and one trained on
English prose (a pair whose acceptance rate is low *when measured*; nothing marks it as bad).

Training runs torch single-threaded, one Python thread per lane (the target beside the drafts):
two-thread torch steps slow down tenfold when other processes share the cores, one-thread lanes just
get their fair share, and single-threaded kernels make the result independent of the load.

Results are cached under ``platformdirs.user_cache_dir("specops")/demo-pairs/<recipe hash>``, keyed
by every :class:`DemoRecipe` field plus the Python version (the corpus comes from it), so a second run
starts at once. Training happens in a temporary folder renamed into place at the end, under a file
lock, so an interrupted run never leaves a half-written cache entry.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specops.errors import InvalidInput, StoreUnavailable
from specops.pairs import corpus

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

FORMAT_VERSION = 2
"""Bump when the training code changes what a recipe produces; it is part of the cache key."""

TARGET_DIR, DRAFT_DIR, MISMATCHED_DIR = "target", "draft", "draft-mismatched"
REPORT_FILE = "demo.json"
CACHE_ENV = "SPECOPS_DEMO_CACHE"
"""Environment variable overriding the cache folder (default: the user cache dir + ``demo-pairs``)."""

CHARS_PER_TOKEN = 3.5
"""Characters per token of the default recipe's tokenizer on the held-out files (3.54 measured)."""


@dataclass(frozen=True)
class ModelShape:
    """Size of one Llama model."""

    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Decoder layers; the target's count over the draft's is most of the cost ratio."""
    num_heads: int
    """Attention heads (no grouped-query sharing); ``hidden_size`` must divide by it."""
    intermediate_size: int
    """Width of the SwiGLU feed-forward block."""


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides what the demo pair comes out as; every field is part of the cache key.

    The defaults fit a 2-core CPU: the target trains on one core while the two drafts train one after
    the other on the other; then the target writes continuations and the good draft trains on them.
    Measured on this project's 2-core machine (Python 3.11): 5 CPU-s for the tokenizer, 100–170 s for
    the target, 33–60 s for each draft, 18 s for the distillation: 2 to 3 1/2 minutes wall. The good
    draft agrees with the target on 0.36 of held-out code positions and on 0.72 of what the target
    writes (the prose draft: 0.09 and 0.29).
    """

    vocab_size: int = 4096
    """BPE vocabulary size, including the three special tokens (bos, eos, pad)."""
    corpus_bytes: int = 3_000_000
    """UTF-8 bytes of training code read (whole files, seeded shuffle); the tokenizer trains on them too."""
    seq_len: int = 256
    """Tokens per training and evaluation window."""
    batch_size: int = 8
    """Windows per optimiser step (8 x 256 beat 16 x 256 at the same number of tokens seen)."""
    max_position_embeddings: int = 512
    """Context the saved models declare (RoPE, so longer than ``seq_len`` is allowed)."""
    target: ModelShape = ModelShape(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688)
    """The expensive model."""
    draft: ModelShape = ModelShape(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=344)
    """The cheap model; both drafts share this shape."""
    target_steps: int = 200
    """Optimiser steps for the target."""
    draft_steps: int = 200
    """Optimiser steps for the good draft (same code corpus as the target)."""
    mismatched_steps: int = 200
    """Optimiser steps for the mismatched draft (prose corpus, :data:`corpus.PROSE_FILE`)."""
    distill_sequences: int = 256
    """Greedy continuations of code windows the trained target writes for the good draft's last phase."""
    distill_prompt_tokens: int = 32
    """Code tokens each continuation starts from (read, not trained on)."""
    distill_new_tokens: int = 96
    """Tokens the target writes per continuation."""
    distill_steps: int = 150
    """Optimiser steps of the good draft on those continuations (sequence-level distillation)."""
    distill_learning_rate: float = 1e-3
    """Peak AdamW learning rate of that phase (half the first phase's: it refines a trained draft)."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 10
    """Linear warm-up steps before the cosine decay."""
    bf16_autocast: bool = True
    """Run matrix products in bfloat16 (CPU autocast; weights and saved files stay fp32): ~1.6x faster."""
    eval_windows: int = 16
    """Held-out windows of ``seq_len`` tokens the reported agreement is measured on."""
    seed: int = 0
    """Seeds file order, initialisation (target ``seed``, drafts ``seed + 1``/``+ 2``) and batches."""

    def cache_key(self) -> str:
        """Hex digest of the recipe, :data:`FORMAT_VERSION` and the Python version."""
        payload = {"recipe": dataclasses.asdict(self), "python": corpus.python_tag(), "format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DemoReport:
    """What training measured; stored as ``demo.json`` next to the three model folders."""

    recipe_hash: str
    python: str
    seconds: dict[str, float]
    """Wall seconds per phase: ``tokenizer`` (training it + tokenising the corpora), ``models`` (all
    three trainings: the target in one lane beside the two drafts, one after the other, in another),
    each model's own ``target``/``draft``/``draft_mismatched``, ``distillation`` (the target's
    continuations and the good draft's training on them), ``evaluation`` and ``save``."""
    agreement: dict[str, float]
    """Greedy agreement with the target on held-out windows, by draft folder name."""
    final_loss: dict[str, float]
    """Smoothed training loss at the last step, by folder name."""
    num_parameters: dict[str, int]
    num_train_tokens: int
    """Tokens in the code training stream."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """Process CPU seconds (all threads) per phase; CPU/wall well under the thread count means the
    machine was shared."""
    generated_agreement: dict[str, float] = field(default_factory=dict)
    """Greedy agreement with the target on the target's own greedy continuations of held-out windows
    (rows of prompt and written tokens: what a greedy draft meets in serving), by draft folder name."""

    @property
    def target_and_draft_seconds(self) -> float:
        """The budgeted part: from the start until the tokenizer, target and good draft are all trained."""
        seconds = self.seconds
        return round(seconds.get("tokenizer", 0.0) + max(seconds.get(TARGET_DIR, 0.0), seconds.get(DRAFT_DIR, 0.0)), 2)

    @property
    def total_seconds(self) -> float:
        """Wall time of the whole training run, mismatched draft, evaluation and saving included."""
        phases = ("tokenizer", "models", "distillation", "evaluation", "save")
        return round(sum(self.seconds.get(phase, 0.0) for phase in phases), 2)


@dataclass(frozen=True)
class DemoPairs:
    """Where the trained demo models are: three save_pretrained folders sharing one tokenizer."""

    root: Path
    target: Path
    draft: Path
    draft_mismatched: Path
    report: DemoReport
    from_cache: bool = field(default=False)
    """True when nothing was trained in this call."""

    @classmethod
    def at(cls, root: Path, *, report: DemoReport, from_cache: bool) -> DemoPairs:
        return cls(
            root=root,
            target=root / TARGET_DIR,
            draft=root / DRAFT_DIR,
            draft_mismatched=root / MISMATCHED_DIR,
            report=report,
            from_cache=from_cache,
        )


def cache_dir() -> Path:
    """The folder holding one sub-folder per recipe hash (``$SPECOPS_DEMO_CACHE`` overrides)."""
    if override := os.environ.get(CACHE_ENV):
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("specops")) / "demo-pairs"


def train_demo_pairs(
    out: Path | None = None,
    *,
    recipe: DemoRecipe = DemoRecipe(),
    progress: bool = True,
    cache: Path | None = None,
) -> DemoPairs:
    """Train (or take from the cache) the demo target, draft and mismatched draft.

    Args:
        out: if given, the three folders (and ``demo.json``) are copied there, replacing any
            folders of the same names; the returned paths then point into ``out``.
        recipe: what to train; its hash names the cache entry.
        progress: show a rich progress bar while training.
        cache: cache folder; default :func:`cache_dir`.
    """
    base = cache or cache_dir()
    key = recipe.cache_key()
    entry = base / key
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(f"cannot create the demo-pair cache {base}: {error}") from error
    with _locked(base / f"{key}.lock"):
        from_cache = (entry / REPORT_FILE).is_file()
        if not from_cache:
            _discard_leftovers(base, key)
            staging = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=base))
            try:
                _train_into(staging, recipe=recipe, key=key, progress=progress)
                staging.chmod(0o755)  # mkdtemp makes it private; the cache entry is readable like its parent
                staging.rename(entry)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    report = _read_report(entry)
    if out is None:
        return DemoPairs.at(entry, report=report, from_cache=from_cache)
    _copy_out(entry, Path(out))
    return DemoPairs.at(Path(out), report=report, from_cache=from_cache)


def greedy_agreement(
    target: PreTrainedModel,
    draft: PreTrainedModel,
    token_batches: Iterable[torch.Tensor | Sequence[Sequence[int]]],
) -> float:
    """Fraction of positions where the draft's argmax equals the target's, teacher-forced.

    ``token_batches`` yields ``[batch_size, seq_len]`` token ids (tensors or nested lists); both
    models read the same tokens. A greedy speculative decoder accepts a drafted token exactly when the
    two argmaxes agree, so this is the per-token acceptance rate a greedy draft would see.
    """
    from specops.pairs import demo_training

    return demo_training.greedy_agreement(target, draft, token_batches)


def held_out_batches(
    tokenizer: PreTrainedTokenizerFast, *, seq_len: int = 256, num_windows: int = 16, batch_size: int = 4
) -> list[torch.Tensor]:
    """Windows of held-out standard-library code as ``[batch_size, seq_len]`` token-id batches.

    The windows (documents joined as ``bos doc eos``, cut evenly over the held-out files) are those
    the training report's agreement is measured on when ``seq_len`` and ``num_windows`` match the recipe.
    """
    from specops.pairs import demo_training

    return list(demo_training.held_out_windows(tokenizer, seq_len=seq_len, num_windows=num_windows).split(batch_size))


def demo_prompts(n: int, tokens: int, *, seed: int = 0, tokenizer: PreTrainedTokenizerFast | None = None) -> list[str]:
    """``n`` prompts of about ``tokens`` tokens each, cut from held-out standard-library files.

    Each prompt starts at the beginning of a non-blank line (not a comment or a closing bracket) of a
    held-out file — never trained on — and runs on, across lines, to the size asked, so it may end
    mid-line as a completion prompt does. Starts are drawn with a seeded RNG: the same arguments give
    the same prompts. With ``tokenizer`` every prompt is exactly ``tokens`` tokens of it (when the file
    is long enough); without, sizes are approximate (:data:`CHARS_PER_TOKEN` characters a token).
    """
    if n < 0 or tokens < 1:
        raise InvalidInput(f"demo_prompts needs n >= 0 and tokens >= 1, got n={n}, tokens={tokens}")
    budget = max(1, round(tokens * CHARS_PER_TOKEN))
    documents = [corpus.read_text(name) for name in corpus.source_files(held_out=True)]
    starts = [
        (doc, offset)
        for doc, text in enumerate(documents)
        for offset, line in _line_starts(text)
        if line.strip() and not line.lstrip().startswith(("#", ")", "]", "}")) and offset + budget <= len(text)
    ]
    rng = random.Random(seed)
    chosen = rng.sample(starts, k=n) if n <= len(starts) else rng.choices(starts, k=n)
    if tokenizer is None:
        return [documents[doc][offset : offset + budget] for doc, offset in chosen]
    prompts = []
    for doc, offset in chosen:
        ids = tokenizer(documents[doc][offset : offset + 4 * budget], add_special_tokens=False)["input_ids"]
        prompts.append(tokenizer.decode(ids[:tokens]))
    return prompts


def _line_starts(text: str) -> Iterator[tuple[int, str]]:
    """(character offset, line) of every line of ``text``."""
    offset = 0
    for line in text.splitlines(keepends=True):
        yield offset, line
        offset += len(line)


def _train_into(folder: Path, *, recipe: DemoRecipe, key: str, progress: bool) -> None:
    from specops.pairs import demo_training as training

    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    with _progress(enabled=progress) as bar:
        task = bar.add_task("tokenizer + corpus", total=None, status="")
        with training.timed(seconds, cpu_seconds, "tokenizer"):
            tokenizer, data = training.build_corpus(recipe)
        bar.update(task, total=1, completed=1)

        # Built here, in order: initialisation draws from torch's global RNG.
        jobs = {
            name: training.TrainingJob(
                name=name,
                model=training.build_model(
                    shape,
                    vocab_size=len(tokenizer),
                    max_position_embeddings=recipe.max_position_embeddings,
                    tokenizer=tokenizer,
                    seed=seed,
                ),
                stream=stream,
                steps=steps,
                seed=seed,
            )
            for name, shape, stream, steps, seed in (
                (TARGET_DIR, recipe.target, data.code, recipe.target_steps, recipe.seed),
                (DRAFT_DIR, recipe.draft, data.code, recipe.draft_steps, recipe.seed + 1),
                (MISMATCHED_DIR, recipe.draft, data.prose, recipe.mismatched_steps, recipe.seed + 2),
            )
        }
        tasks = {name: bar.add_task(name, total=job.steps, status="") for name, job in jobs.items()}

        def on_step(name: str, done: int, loss: float) -> None:
            bar.update(tasks[name], completed=done, status=f"loss {loss:.2f}")

        with training.timed(seconds, cpu_seconds, "models"):
            losses = training.train_in_lanes(
                [[jobs[TARGET_DIR]], [jobs[DRAFT_DIR], jobs[MISMATCHED_DIR]]],
                recipe=recipe,
                on_step=on_step,
                seconds=seconds,
                cpu_seconds=cpu_seconds,
            )
        models = {name: job.model for name, job in jobs.items()}

        task = bar.add_task("distillation", total=recipe.distill_steps, status="target writes")
        with training.timed(seconds, cpu_seconds, "distillation"), training.torch_threads(1):
            continuations = training.greedy_continuations(
                models[TARGET_DIR],
                data.code,
                num_sequences=recipe.distill_sequences,
                prompt_tokens=recipe.distill_prompt_tokens,
                new_tokens=recipe.distill_new_tokens,
                seed=recipe.seed + 3,
            )
            losses["draft-distilled"] = training.train_model(
                models[DRAFT_DIR],
                continuations,
                settings=training.TrainingSettings.of(recipe),
                steps=recipe.distill_steps,
                seed=recipe.seed + 3,
                label_from=recipe.distill_prompt_tokens,
                learning_rate=recipe.distill_learning_rate,
                on_step=lambda done, loss: bar.update(task, completed=done, status=f"loss {loss:.2f}"),
            ).final_loss

        task = bar.add_task("agreement", total=1, status="")
        drafts = {name: models[name] for name in (DRAFT_DIR, MISMATCHED_DIR)}
        with training.timed(seconds, cpu_seconds, "evaluation"), training.torch_threads(1):
            measured = training.agreements(models[TARGET_DIR], drafts, data.held_out.split(4))
            agreement = {name: round(value, 4) for name, value in measured.items()}
            held_out_writes = training.greedy_continuations(
                models[TARGET_DIR],
                data.held_out.flatten(),
                num_sequences=recipe.eval_windows,
                prompt_tokens=recipe.distill_prompt_tokens,
                new_tokens=recipe.distill_new_tokens,
                seed=recipe.seed + 4,
            )
            on_writes = training.agreements(models[TARGET_DIR], drafts, held_out_writes.split(4))
            generated_agreement = {name: round(value, 4) for name, value in on_writes.items()}
        bar.update(task, completed=1)

    with training.timed(seconds, cpu_seconds, "save"):
        tokenizer_files = folder / ".tokenizer"
        tokenizer.save_pretrained(tokenizer_files)
        for name, model in models.items():
            training.save_pair_folder(model, folder / name, tokenizer_files)
        shutil.rmtree(tokenizer_files)
    report = DemoReport(
        recipe_hash=key,
        python=corpus.python_tag(),
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        agreement=agreement,
        generated_agreement=generated_agreement,
        final_loss={name: round(loss, 4) for name, loss in losses.items()},
        num_parameters={name: sum(p.numel() for p in model.parameters()) for name, model in models.items()},
        num_train_tokens=len(data.code),
    )
    payload = {"recipe": dataclasses.asdict(recipe), **dataclasses.asdict(report)}
    (folder / REPORT_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _read_report(entry: Path) -> DemoReport:
    payload = json.loads((entry / REPORT_FILE).read_text())
    names = {f.name for f in dataclasses.fields(DemoReport)}
    return DemoReport(**{k: v for k, v in payload.items() if k in names})


def _copy_out(entry: Path, out: Path) -> None:
    """Copy the cache entry's folders into ``out``; each folder is staged, then renamed into place."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in (TARGET_DIR, DRAFT_DIR, MISMATCHED_DIR):
            staging = out / f".{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(entry / name, staging)
            shutil.rmtree(out / name, ignore_errors=True)
            staging.rename(out / name)
        shutil.copyfile(entry / REPORT_FILE, out / REPORT_FILE)
    except OSError as error:
        raise StoreUnavailable(f"cannot write the demo pairs to {out}: {error}") from error


def _discard_leftovers(base: Path, key: str) -> None:
    """Remove staging folders of this key left by interrupted runs (safe: we hold the key's lock)."""
    for leftover in base.glob(f".tmp-{key}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path``, so concurrent runs train a recipe once."""
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _progress(*, enabled: bool) -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
    )
    with bar:
        yield bar
