"""What the qualification gate measured and decided, as a report, JSON and registry tags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

CHAT_TEMPERATURE = 0.7
"""Temperature of the sampled speedup when the pair's default is greedy: the typical chat setting."""

CHAT_TOP_P = 0.95
"""top_p of the sampled speedup when the pair's default is greedy (with ``CHAT_TEMPERATURE``)."""

TAG_PREFIX = "qualification."
"""Prefix of the registry tags that carry the figures."""


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
