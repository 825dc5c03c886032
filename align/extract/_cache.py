"""The align model cache: converted checkpoints, built once per source-package version and renamed into place.

Layout: ``$ALIGN_CACHE/models/<name>-<source version>/`` (``ALIGN_CACHE`` defaults to ``~/.cache/align``).
A conversion writes into a temporary sibling folder ``.<name>-<version>.tmp-<random>/`` and is renamed into place
only when complete, so an interrupted conversion never leaves a half-written model behind. The conversion holds the
lock ``<name>-<version>.lock`` (``align._locks``): a second process waits for it, then uses the finished model, and
temporary folders whose conversion is not running any more (a killed process: hundreds of MB for a language model)
are removed by the next ``build_once``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from align._locks import output_lock
from align._locks import remove_leftovers

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


def build_once(target: Path, build: Callable[[Path], None], provenance: str) -> Path:
    """Build ``target`` with ``build(tmp_dir)`` unless a finished build is already there.

    Args:
      target: the final folder (``converted_model_dir(key)``).
      build: writes the model files into the empty folder it is given.
      provenance: JSON text stored as ``align_conversion.json`` (what was converted, from which package version).

    Returns:
      ``target``.
    """
    remove_conversion_leftovers(target.parent)
    if is_converted(target):
        return target
    with output_lock(target, log=_to_stderr):
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


def remove_conversion_leftovers(models_dir: Path) -> list[Path]:
    """Remove the temporary folders of conversions in ``models_dir`` that no live process is running (left by a
    killed conversion); returns the folders removed."""
    return remove_leftovers(models_dir)


def _to_stderr(message: str) -> None:
    print(message.strip() + " (a model conversion)", file=sys.stderr, flush=True)


def _make_readable(folder: Path) -> None:
    """Make a finished build readable by all (mkdtemp and some writers create owner-only files)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
