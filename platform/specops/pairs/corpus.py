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

A larger corpus (the engine benchmark's) takes the installed packages too (:func:`code_roots`,
:func:`code_files`), with no directory excluded and short files left out; the split is the same rule,
on each file's path relative to its root.

Pure standard library; no torch.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
import zlib
from collections.abc import Iterable, Sequence
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


def source_files(
    *,
    held_out: bool,
    root: Path | None = None,
    excluded_dirs: frozenset[str] = _EXCLUDED_DIRS,
    min_chars: int = 0,
) -> list[str]:
    """Relative paths of the code files on one side of the split, sorted.

    Args:
        held_out: ``True`` for the held-out (evaluation) files, ``False`` for the training files.
        root: standard-library root; default :func:`stdlib_root`.
        excluded_dirs: directory names whose files are left out (default: tests, third-party
            packages, codec tables and the prose module's folder).
        min_chars: files of fewer characters (as :func:`read_text` reads them) are left out.
    """
    base = root or stdlib_root()
    return sorted(
        name
        for name in _python_files(base, excluded_dirs)
        if is_held_out(name) == held_out and _long_enough(base / name, min_chars)
    )


def code_roots() -> list[Path]:
    """The standard library and the installed packages (``purelib``, ``platlib``): distinct folders, sorted."""
    paths = sysconfig.get_paths()
    return sorted({Path(paths["stdlib"]), Path(paths["purelib"]), Path(paths["platlib"])})


def code_files(roots: Sequence[Path], *, held_out: bool, min_chars: int = 0) -> list[Path]:
    """Absolute paths of every ``.py`` file under ``roots`` on one side of the split, nothing excluded.

    Root by root, each sorted by relative path; a file reached from two roots (one inside the other)
    or through a link is listed once, under the first.
    """
    seen: set[Path] = set()
    found: list[Path] = []
    for root in roots:
        for name in sorted(_python_files(root, frozenset())):
            real = (root / name).resolve()
            if real in seen:
                continue
            seen.add(real)  # on both sides of the split: a file belongs to its first root only
            if is_held_out(name) == held_out and _long_enough(root / name, min_chars):
                found.append(root / name)
    return found


def texts_up_to(texts: Iterable[str], max_bytes: int) -> tuple[list[str], int]:
    """Whole texts, in order, until their UTF-8 size reaches ``max_bytes`` (the one crossing it
    included); and that size. ``texts`` may be lazy: nothing past the limit is read."""
    taken: list[str] = []
    num_bytes = 0
    if max_bytes <= 0:
        return taken, num_bytes
    for text in texts:
        taken.append(text)
        num_bytes += len(text.encode("utf-8"))
        if num_bytes >= max_bytes:
            break
    return taken, num_bytes


def _python_files(root: Path, excluded_dirs: frozenset[str]) -> list[str]:
    """Paths relative to ``root`` (``/``-separated) of its ``.py`` files outside ``excluded_dirs``."""
    found: list[str] = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if not excluded_dirs.intersection(relative.parts[:-1]) and path.is_file():
            found.append(relative.as_posix())
    return found


def _long_enough(path: Path, min_chars: int) -> bool:
    """Whether ``path`` holds at least ``min_chars`` characters; an unreadable file does not."""
    if min_chars <= 0:
        return True
    try:
        return path.stat().st_size >= min_chars and len(read_text(path)) >= min_chars
    except OSError:
        return False


def read_text(relative_path: str | Path, *, root: Path | None = None) -> str:
    """One file's text (UTF-8; undecodable bytes replaced), with Windows line ends normalised.

    ``relative_path`` is relative to ``root`` (default :func:`stdlib_root`), or absolute.
    """
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
