"""Locks on align's outputs, and the removal of temporaries that killed runs left behind.

Every output written by more than one step of a run (an activation store, a converted model, a scoring job's table,
a results table, a heatmap folder, a rendered stimulus set) is written by a process that holds an exclusive lock on
``<output>.lock`` beside it: a ``filelock.FileLock`` (``flock`` on POSIX, released by the operating system when its
process dies, so a kill -9 never leaves a lock held). A second run on the same output waits for the lock and then
finds the output finished and reuses it. Lock files are empty and stay in place (waiters must share one inode); they
are not outputs. Within one process the lock is re-entrant (one ``FileLock`` instance per lock file).

Temporaries are named after the output they become, so the next run can tell whose they are:

- ``<name>.<pid>.tmp`` (``align.store._format.atomic_path``) and ``.<name>.<random>.tmp`` (``write_results``,
  heatmaps): files;
- ``.<name>.tmp-<random>``: folders (model conversions, rendered synthetic stimulus sets);
- ``<store>.parts/``: an interrupted extraction, resumed by the next run of that store (``StoreWriter``).

A temporary is removed only while the lock of its output can be taken, i.e. when it is the leftover of a killed
process and not the work in progress of a live one.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"

_HIDDEN_FILE_TMP = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")  # .<name>.<random>.tmp (mkstemp)
_PID_FILE_TMP = re.compile(r"^(?P<target>[^.].*)\.\d+\.tmp$")  # <name>.<pid>.tmp (atomic_path)
_DIR_TMP = re.compile(r"^\.(?P<target>.+)\.tmp-.+$")  # .<name>.tmp-<random> (mkdtemp and friends)


def lock_path(path: str | Path) -> Path:
    """The lock file of the output ``path``: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def _lock(path: str | Path):
    from filelock import FileLock

    # one instance per lock file and process (is_singleton), shared by every thread: re-entrant, so a function
    # that holds the lock of an output may call another that takes it again
    return FileLock(str(lock_path(path)), is_singleton=True, thread_local=False)


@contextlib.contextmanager
def output_lock(path: str | Path, *, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of the output ``path`` (wait as long as another process holds it).

    Callers re-check whether the output exists after entering: another run may have finished it meanwhile.

    Args:
      path: the output (a file or folder; it need not exist, its parent folder is created).
      log: told once when the lock is held by another process and this one waits.
    """
    from filelock import Timeout

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if log is not None:
            log(f"  waiting for another run that is writing {path} (lock {lock_path(path)})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def output_locks(paths: Iterable[str | Path], *, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the locks of several outputs, taken in sorted order (so two runs never wait for each other in a
    cycle)."""
    with contextlib.ExitStack() as held:
        for path in sorted({Path(p) for p in paths}):
            held.enter_context(output_lock(path, log=log))
        yield


@contextlib.contextmanager
def lock_if_free(path: str | Path) -> Iterator[bool]:
    """Take the lock of ``path`` without waiting; yields True when held (free, or already held by this process),
    False when another process holds it or the lock file cannot be created (a read-only folder)."""
    from filelock import Timeout

    if not Path(path).parent.is_dir():
        yield True
        return
    lock = _lock(path)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):  # OSError: a read-only folder (shared stores) -- nothing to clean there anyway
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def temporary_target(name: str, *, is_dir: bool) -> str | None:
    """The output name a temporary file or folder called ``name`` was to become, or None when ``name`` is not one
    of align's temporary names."""
    if is_dir:
        match = _DIR_TMP.match(name)
    else:
        match = _HIDDEN_FILE_TMP.match(name) if name.startswith(".") else _PID_FILE_TMP.match(name)
    return match.group("target") if match else None


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(folder: str | Path, *, targets: Callable[[str], bool] | None = None, held: bool = False,
                     pattern: str = "*") -> list[Path]:
    """Remove the temporaries in ``folder`` whose output is not being written (its lock is free).

    Args:
      folder: where to look (not recursive; a missing folder has none).
      targets: only temporaries of outputs whose name passes this test (default: every align temporary name).
      held: the caller holds the lock of every output concerned (e.g. the heatmap folder's lock, or the one
        output ``targets`` selects): remove without taking each output's lock.
      pattern: only entries whose name matches this glob (narrows the scan of a big folder).

    Returns:
      The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.glob(pattern)):
        target = temporary_target(entry.name, is_dir=entry.is_dir())
        if target is None or (targets is not None and not targets(target)):
            continue
        if held:
            remove_path(entry)
            removed.append(entry)
            continue
        with lock_if_free(folder / target) as free:
            if free and entry.exists():
                remove_path(entry)
                removed.append(entry)
    return removed
