"""Text that ships with Python itself: the corpus the demo pairs are trained and evaluated on.

No model hub is reachable, so the demo trains on the standard library's own ``.py`` sources, found
with :mod:`sysconfig`. Files are named by their path relative to the standard-library root, so the
split below is the same wherever Python is installed:

- **held out**: files whose ``zlib.crc32(relative_path) % 20 == 0`` (about 5 %) — never trained on;
  evaluation windows and demo prompts come from them;
- **training**: every other source file, minus tests, third-party packages, generated codec tables
  (``encodings/``) and the prose module ``pydoc_data/topics.py``;
- **prose**: ``pydoc_data/topics.py`` (the help topics as English text), the *different* text a
  deliberately mismatched draft is trained on.

Pure standard library; no torch.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
import zlib
from pathlib import Path

HELD_OUT_MODULUS = 20
"""A file is held out when ``crc32(relative path) % HELD_OUT_MODULUS == 0``."""

PROSE_FILE = "pydoc_data/topics.py"
"""Relative path of the English prose used to train the mismatched draft."""

_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "encodings", "pydoc_data"}
)


def stdlib_root() -> Path:
    """The directory holding this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def python_tag() -> str:
    """Implementation and version (``cpython-3.11.7``): the corpus changes with it."""
    return f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}"


def is_held_out(relative_path: str) -> bool:
    """Whether a file (path relative to the standard-library root, ``/``-separated) is held out."""
    return zlib.crc32(relative_path.encode("utf-8")) % HELD_OUT_MODULUS == 0


def source_files(*, held_out: bool, root: Path | None = None) -> list[str]:
    """Relative paths of the code files on one side of the split, sorted.

    Args:
        held_out: ``True`` for the held-out (evaluation) files, ``False`` for the training files.
        root: standard-library root; default :func:`stdlib_root`.
    """
    base = root or stdlib_root()
    found: list[str] = []
    for path in base.rglob("*.py"):
        relative = path.relative_to(base)
        if _EXCLUDED_DIRS.intersection(relative.parts[:-1]) or not path.is_file():
            continue
        name = relative.as_posix()
        if is_held_out(name) == held_out:
            found.append(name)
    return sorted(found)


def read_text(relative_path: str, *, root: Path | None = None) -> str:
    """One file's text (UTF-8; undecodable bytes replaced), with Windows line ends normalised."""
    raw = ((root or stdlib_root()) / relative_path).read_bytes()
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


def prose_texts(*, root: Path | None = None) -> list[str]:
    """The help topics of :data:`PROSE_FILE` as plain English text, one string per topic.

    The file is Python source holding one dict literal; it is parsed with :func:`ast.literal_eval`,
    never imported or executed.
    """
    module = ast.parse(read_text(PROSE_FILE, root=root))
    for node in module.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "topics" for target in node.targets
        ):
            topics = ast.literal_eval(node.value)
            return [topics[name] for name in sorted(topics)]
    raise ValueError(f"{PROSE_FILE} holds no 'topics' dict")
