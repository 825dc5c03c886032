"""The align model cache: converted checkpoints, built once per source-package version and renamed into place.

Layout: ``$ALIGN_CACHE/models/<name>-<source version>/`` (``ALIGN_CACHE`` defaults to ``~/.cache/align``).
A conversion writes into a temporary sibling folder and is renamed into place only when complete, so an
interrupted conversion never leaves a half-written model behind; a lock file keeps two processes (e.g. pytest-xdist
workers) from converting the same model at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

_COMPLETE_MARKER = "align_conversion.json"


def align_cache_dir() -> Path:
    """The root of align's cache: ``$ALIGN_CACHE`` if set, else ``~/.cache/align``."""
    root = os.environ.get("ALIGN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "align"


def converted_model_dir(key: str) -> Path:
    """Where the converted model ``key`` (e.g. ``"smollm2-135m-0.1.2"``) lives once built."""
    return align_cache_dir() / "models" / key


def is_converted(target: Path) -> bool:
    """True when ``target`` holds a finished conversion (written by :func:`build_once`)."""
    return (target / _COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(target: Path, build: Callable[[Path], None], provenance: str) -> Path:
    """Build ``target`` with ``build(tmp_dir)`` unless a finished build is already there.

    Args:
      target: the final folder (``converted_model_dir(key)``).
      build: writes the model files into the empty folder it is given.
      provenance: JSON text stored as ``align_conversion.json`` (what was converted, from which package version).

    Returns:
      ``target``.
    """
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if is_converted(target):  # another process finished while we waited for the lock
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            (tmp / _COMPLETE_MARKER).write_text(provenance)
            _make_readable(tmp)
            if target.exists():  # an unfinished folder from a crashed older layout: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(folder: Path) -> None:
    """Make a finished build readable by all (mkdtemp and some writers create owner-only files)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
