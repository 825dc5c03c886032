"""Where align.data writes files it derives from inputs (decoded COCO masks, preference images)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """``$ALIGN_CACHE``, default ``~/.cache/align`` (shared with the extraction cache)."""
    return Path(os.environ.get("ALIGN_CACHE", "~/.cache/align")).expanduser()


def file_key(path: Path) -> str:
    """16 hex chars identifying a file version: its absolute path, size and modification time."""
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
