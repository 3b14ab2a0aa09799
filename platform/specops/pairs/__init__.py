"""Pair versions: what a pair is (`pair_spec`), the qualification gate (`qualification`, with its
`qualification_report`, `qualification_rules` and `eval_inputs`), and the demo pair trained on this
machine (`demo`, with its `corpus` and `demo_training`).

Every module loads on first use: qualification and the demo pull in torch and transformers.
"""

from specops.lazy_modules import lazy_submodules

__all__ = [
    "corpus",
    "demo",
    "demo_training",
    "eval_inputs",
    "pair_spec",
    "qualification",
    "qualification_report",
    "qualification_rules",
]

__getattr__, __dir__ = lazy_submodules(__name__, __all__)
