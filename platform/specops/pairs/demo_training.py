"""How the demo pair is made: tokenizer, Llama models, the training loop and the agreement measure.

Internal to :mod:`specops.pairs.demo`, which owns the recipe, the cache and the public API. This module
imports torch, transformers and tokenizers at the top; import it only where they are needed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from specops.errors import InvalidInput
from specops.pairs import corpus

if TYPE_CHECKING:
    from specops.pairs.demo import DemoRecipe, ModelShape

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"

StepCallback = Callable[[int, float], None]
"""Called after each optimiser step with (steps done, smoothed training loss)."""


@dataclass(frozen=True)
class TrainingCorpus:
    """Token streams a recipe trains and measures on (documents joined as ``BOS doc EOS``)."""

    code: torch.Tensor  # [num_code_tokens] int64, training files
    prose: torch.Tensor  # [num_prose_tokens] int64, help-topic prose
    held_out: torch.Tensor  # [num_eval_windows, seq_len] int64, windows of held-out files
    num_code_bytes: int


def train_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style pre-tokenisation) trained on ``texts``."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )


def token_stream(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> torch.Tensor:
    """Documents encoded (by the fast tokenizer's Rust backend) and joined as ``BOS doc EOS ...``."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    ids: list[int] = []
    for encoding in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids.append(bos)
        ids.extend(encoding.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def build_corpus(recipe: DemoRecipe) -> tuple[PreTrainedTokenizerFast, TrainingCorpus]:
    """Read the recipe's share of the standard library, train the tokenizer and tokenise everything."""
    names = corpus.source_files(held_out=False)
    random.Random(recipe.seed).shuffle(names)
    texts, num_bytes = corpus.texts_up_to(map(corpus.read_text, names), recipe.corpus_bytes)
    tokenizer = train_tokenizer(texts, vocab_size=recipe.vocab_size, max_length=recipe.max_position_embeddings)
    return tokenizer, TrainingCorpus(
        code=token_stream(tokenizer, texts),
        prose=token_stream(tokenizer, corpus.prose_texts()),
        held_out=held_out_windows(tokenizer, seq_len=recipe.seq_len, num_windows=recipe.eval_windows),
        num_code_bytes=num_bytes,
    )


def held_out_windows(tokenizer: PreTrainedTokenizerFast, *, seq_len: int, num_windows: int) -> torch.Tensor:
    """``[num_windows, seq_len]`` token ids cut from the held-out files, spread evenly over them."""
    stream = token_stream(tokenizer, [corpus.read_text(name) for name in corpus.source_files(held_out=True)])
    available = len(stream) // seq_len
    if available < num_windows:
        raise InvalidInput(f"held-out files give {available} windows of {seq_len} tokens, not {num_windows}")
    windows = stream[: available * seq_len].view(available, seq_len)
    picks = torch.linspace(0, available - 1, num_windows).round().long()
    return windows[picks].contiguous()


def build_model(
    shape: ModelShape,
    *,
    vocab_size: int,
    max_position_embeddings: int,
    seed: int,
    tokenizer: PreTrainedTokenizerFast | None = None,
    tie_embeddings: bool = True,
) -> LlamaForCausalLM:
    """A freshly initialised Llama model of ``shape``, seeded; special token ids from ``tokenizer`` (if any).

    ``tie_embeddings``: the output projection shares the input embedding (the demo pair's small models);
    the engine benchmark's pair unties them, as most released LLMs of its size do.
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_embeddings,
        bos_token_id=tokenizer.bos_token_id if tokenizer is not None else None,
        eos_token_id=tokenizer.eos_token_id if tokenizer is not None else None,
        pad_token_id=tokenizer.pad_token_id if tokenizer is not None else None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@dataclass(frozen=True)
class TrainingSettings:
    """How a model trains: window and batch size, the learning-rate schedule, precision, a time budget."""

    seq_len: int
    """Tokens per training window."""
    batch_size: int
    """Windows per optimiser step."""
    learning_rate: float
    """Peak AdamW learning rate, reached after the warm-up."""
    warmup_steps: int
    """Linear warm-up steps before the cosine decay."""
    bf16_autocast: bool
    """Run matrix products in bfloat16 under autocast on the model's device (weights stay fp32)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    final_lr_ratio: float = 0.1
    """Where the cosine decay ends, as a share of the peak rate."""
    time_budget_s: float | None = None
    """Wall seconds the training may take: after a few timed steps the plan (and its cosine) shrinks to
    fit. None: exactly the steps asked for."""

    @classmethod
    def of(cls, recipe: DemoRecipe) -> TrainingSettings:
        """The demo recipe's settings."""
        return cls(
            seq_len=recipe.seq_len,
            batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            warmup_steps=recipe.warmup_steps,
            bf16_autocast=recipe.bf16_autocast,
        )


@dataclass(frozen=True)
class TrainingResult:
    """What one training did."""

    final_loss: float
    """Smoothed training loss at the last step."""
    steps: int
    """Optimiser steps run (fewer than asked when a time budget cut the plan)."""
    skipped_steps: int
    """Steps whose gradient was not finite: their update was skipped (bf16 overflow, for instance)."""
    seconds: float


def train_model(
    model: PreTrainedModel,
    stream: torch.Tensor,  # [num_tokens] or [num_sequences, seq_len] int64
    *,
    settings: TrainingSettings,
    steps: int,
    seed: int,
    on_step: StepCallback | None = None,
    label_from: int = 0,
    learning_rate: float | None = None,
) -> TrainingResult:
    """Next-token training on the model's device.

    A 1-D ``stream`` is trained on random windows of ``settings.seq_len`` tokens; a 2-D one on random
    rows, with the positions before ``label_from`` read but not trained on (a prompt, for instance).
    AdamW with linear warm-up then cosine decay to ``final_lr_ratio`` of the peak rate (``learning_rate``,
    default the settings'), gradients clipped at 1; a step whose gradient is not finite is skipped.
    """
    if stream.dim() == 1 and len(stream) <= settings.seq_len + 1:
        raise InvalidInput(f"corpus of {len(stream)} tokens is shorter than one window of {settings.seq_len}")
    if stream.dim() == 2 and not 0 <= label_from < stream.shape[1] - 1:
        raise InvalidInput(f"label_from {label_from} leaves nothing to train on in rows of {stream.shape[1]}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    peak = settings.learning_rate if learning_rate is None else learning_rate
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=peak,
        betas=(0.9, 0.95),
        weight_decay=settings.weight_decay,
        fused=device.type == "cuda",
    )
    plan = _Plan(steps=steps, warmup=settings.warmup_steps, floor=settings.final_lr_ratio)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.rate)
    offsets = torch.arange(settings.seq_len)
    smoothed = float("nan")
    skipped = step = 0
    started = time.perf_counter()
    model.train()
    while step < plan.steps:
        if stream.dim() == 1:
            starts = torch.randint(0, len(stream) - settings.seq_len, (settings.batch_size,), generator=generator)
            batch = labels = stream[starts[:, None] + offsets]  # [batch_size, seq_len]
        else:
            rows = torch.randint(0, stream.shape[0], (settings.batch_size,), generator=generator)
            batch = stream[rows]  # [batch_size, row_len]
            labels = batch.clone()
            labels[:, :label_from] = -100
        batch, labels = batch.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16_autocast):
            loss = model(input_ids=batch, labels=labels).loss
        loss.backward()
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)):
            optimizer.step()
        else:
            skipped += 1
        step += 1
        if settings.time_budget_s is not None:  # before the schedule reads the plan for the next step
            plan.fit(step, elapsed=time.perf_counter() - started, budget=settings.time_budget_s)
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if math.isfinite(value):
            smoothed = value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * value
        if on_step is not None:
            on_step(step, smoothed)
    model.eval()
    return TrainingResult(
        final_loss=smoothed, steps=step, skipped_steps=skipped, seconds=round(time.perf_counter() - started, 1)
    )


@dataclass
class _Plan:
    """The steps a training will run and its learning-rate schedule (a share of the peak, by step)."""

    steps: int
    warmup: int
    floor: float
    timed_from: float | None = None

    def rate(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.floor + (0.5 - self.floor / 2) * (1.0 + math.cos(math.pi * progress))

    def fit(self, step: int, *, elapsed: float, budget: float) -> None:
        """Time steps 11 to 30 (to 12 for a short plan) and shrink the plan to end within ``budget`` s."""
        if step == 10:
            self.timed_from = elapsed
        last = 12 if self.steps <= 40 else 30
        if step != last or self.timed_from is None:
            return
        per_step = (elapsed - self.timed_from) / (step - 10)
        fit = int((budget - self.timed_from) / per_step) + 10
        if fit < self.steps:
            self.steps = max(step + 1, fit)
            self.warmup = min(self.warmup, max(1, self.steps // 4))


@torch.inference_mode()
def greedy_continuations(
    model: PreTrainedModel,
    stream: torch.Tensor,  # [num_tokens] int64
    *,
    num_sequences: int,
    prompt_tokens: int,
    new_tokens: int,
    seed: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """``[num_sequences, prompt_tokens + new_tokens]``: random windows of ``stream``, each continued by
    ``model``'s own greedy decoding (EOS suppressed, so every row has ``new_tokens`` new tokens).

    What a greedy target writes is what a draft must predict in serving, and a small target's greedy
    text differs from its training text (it repeats itself, for one): a draft trained on these rows
    learns the target's habits (sequence-level distillation, Kim & Rush 2016; DistillSpec, arXiv
    2310.08461).
    """
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(stream) - prompt_tokens, (num_sequences,), generator=generator)
    prompts = stream[starts[:, None] + torch.arange(prompt_tokens)]  # [num_sequences, prompt_tokens]
    config = model.generation_config
    rows = []
    for batch in prompts.split(batch_size):
        rows.append(
            model.generate(
                input_ids=batch,
                attention_mask=torch.ones_like(batch),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=config.pad_token_id,
                eos_token_id=config.eos_token_id,
            )
        )
    return torch.cat(rows)


@dataclass(frozen=True)
class TrainingJob:
    """One model to train: a name, the freshly built model, its token stream and schedule."""

    name: str
    model: PreTrainedModel
    stream: torch.Tensor  # [num_tokens] int64
    steps: int
    seed: int


class Cancelled(Exception):
    """Raised inside a training lane when another lane failed or the run was interrupted."""


def train_in_lanes(
    lanes: Sequence[Sequence[TrainingJob]],
    *,
    recipe: DemoRecipe,
    on_step: Callable[[str, int, float], None],
    seconds: dict[str, float],
    cpu_seconds: dict[str, float],
) -> dict[str, float]:
    """Train each lane's jobs one after another, the lanes side by side; returns final losses by name.

    Each lane is a Python thread and torch runs single-threaded, so two lanes keep two cores busy
    without OpenMP threads waiting on each other: on a shared, oversubscribed machine a two-thread
    torch step was measured ten times slower than a one-thread step, while one thread per lane just
    gets its fair share. Single-threaded kernels also make the result independent of the load.
    Models must be built (seeded) before, in the calling thread: initialisation uses torch's global RNG.
    """
    cancel = threading.Event()
    losses: dict[str, float] = {}

    def run_lane(jobs: Sequence[TrainingJob]) -> None:
        for job in jobs:

            def step_done(done: int, loss: float, name: str = job.name) -> None:
                if cancel.is_set():
                    raise Cancelled(name)
                on_step(name, done, loss)

            with timed(seconds, cpu_seconds, job.name.replace("-", "_"), cpu_clock=time.thread_time):
                losses[job.name] = train_model(
                    job.model,
                    job.stream,
                    settings=TrainingSettings.of(recipe),
                    steps=job.steps,
                    seed=job.seed,
                    on_step=step_done,
                ).final_loss

    with torch_threads(1), concurrent.futures.ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        futures = [pool.submit(run_lane, jobs) for jobs in lanes]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
        except BaseException:
            cancel.set()
            raise
    return losses


def greedy_agreement(
    target: PreTrainedModel,
    draft: PreTrainedModel,
    token_batches: Iterable[torch.Tensor | Sequence[Sequence[int]]],
) -> float:
    """Fraction of positions where the draft's argmax equals the target's, teacher-forced.

    Both models read the same tokens (no sampling, no padding); every position of every batch counts.
    A greedy speculative decoder accepts a drafted token exactly when the two argmaxes agree, so this
    is the per-token acceptance a greedy draft would see on this text.
    """
    return agreements(target, {"draft": draft}, token_batches)["draft"]


@torch.inference_mode()
def agreements(
    target: PreTrainedModel,
    drafts: Mapping[str, PreTrainedModel],
    token_batches: Iterable[torch.Tensor | Sequence[Sequence[int]]],
) -> dict[str, float]:
    """:func:`greedy_agreement` of several drafts with one target, running the target once."""
    num_agreed = dict.fromkeys(drafts, 0)
    num_positions = 0
    for batch in token_batches:
        ids = torch.as_tensor(batch, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None, :]
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise InvalidInput(f"token batch must be [batch_size, seq_len], got shape {tuple(ids.shape)}")
        target_argmax = target(input_ids=ids).logits.argmax(dim=-1)  # [batch_size, seq_len]
        for name, draft in drafts.items():
            draft_argmax = draft(input_ids=ids).logits.argmax(dim=-1)  # [batch_size, seq_len]
            num_agreed[name] += int((target_argmax == draft_argmax).sum())
        num_positions += ids.numel()
    if num_positions == 0:
        raise InvalidInput("no tokens to measure agreement on")
    return {name: agreed / num_positions for name, agreed in num_agreed.items()}


def save_pair_folder(model: PreTrainedModel, folder: Path, tokenizer_files: Path) -> None:
    """Write ``model`` as a save_pretrained folder and copy the shared tokenizer files into it."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own tqdm bar would cut through ours
    try:
        model.save_pretrained(folder)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    for file in sorted(tokenizer_files.iterdir()):
        (folder / file.name).write_bytes(file.read_bytes())


@contextlib.contextmanager
def timed(
    seconds: dict[str, float],
    cpu_seconds: dict[str, float],
    phase: str,
    *,
    cpu_clock: Callable[[], float] = time.process_time,
) -> Iterator[None]:
    """Record the wall-clock and CPU seconds the ``with`` body takes under ``phase``.

    ``cpu_clock`` is :func:`time.process_time` (all threads) or :func:`time.thread_time` (this thread).
    On a shared machine the CPU/wall ratio tells contention apart from work.
    """
    wall, cpu = time.perf_counter(), cpu_clock()
    try:
        yield
    finally:
        seconds[phase] = round(time.perf_counter() - wall, 2)
        cpu_seconds[phase] = round(cpu_clock() - cpu, 2)


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count for the ``with`` body, then restore it (it is process-wide)."""
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
