"""Suite-wide settings: offline model loading, and the fixture plugins every test folder may use.

Test folders mirror the packages (``tests/<package>/`` for ``platform/specops/<package>/``, ``tests/operator/``
for the operator, ``tests/benchmarks/`` for ``benchmarks/``, ``tests/e2e/`` across them); helpers shared
between folders live in ``tests/support/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.support.demo_pairs",
    "tests.support.serving_pairs",
    "tests.support.tiny_checkpoints",
]
