"""The rows of two stores, read together in chunks: the only way the streamed metrics see activations.

Both stores must list the same stimuli in the same order (the streamed path cannot re-pair rows by id without
random access; the in-memory path can, with ``align_by_id``). Each chunk comes with its first row index, so a
metric can look up per-row labels such as cross-validation fold ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from align.store import ActivationStore
from align.store import StoreMismatchError
from align.store import open_store

#: Bytes of activations (both stores, float32) per chunk when ``chunk_rows`` is not given: about one row group of
#: a finished store (``align.store`` writes row groups of 64 MB), so a chunk costs about as much memory as the
#: reader already holds.
CHUNK_BYTES = 64 * 2**20

#: Rows per chunk are a multiple of this (BLAS-friendly block sizes), at least this many.
CHUNK_QUANTUM = 1024


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Rows ``start .. start + m`` of both stores: ``xs`` (one ``[m, p_l]`` float32 array per x layer) and ``ys``."""

    start: int
    xs: list[np.ndarray]
    ys: list[np.ndarray]

    @property
    def rows(self) -> int:
        return self.xs[0].shape[0]


def as_store(source, label: str) -> ActivationStore:
    """An open store from an ``ActivationStore`` or a path to a finished one."""
    if isinstance(source, ActivationStore):
        return source
    if isinstance(source, (str, Path)):
        return open_store(source, cache=False)
    raise TypeError(f"{label}: the streamed path reads activation stores (an ActivationStore or a path to one), got "
                    f"{type(source).__name__}; score in-memory arrays with align.pairwise")


def check_paired(store_x: ActivationStore, store_y: ActivationStore) -> None:
    """Refuse two stores whose rows are not the same stimuli in the same order."""
    if store_x.order_hash == store_y.order_hash and store_x.stimulus_ids == store_y.stimulus_ids:
        return
    raise StoreMismatchError(
        f"stores {store_x.path} and {store_y.path} do not list the same stimuli in the same order; the streamed path "
        f"reads rows in store order and cannot pair them by id: re-extract both on the same stimulus set, or score "
        f"them in memory with align.pairwise(..., align_by_id=True)")


def default_chunk_rows(widths_x, widths_y) -> int:
    """Rows per chunk so that a chunk of both stores holds about :data:`CHUNK_BYTES` of float32 activations."""
    row_bytes = 4 * (sum(widths_x) + sum(widths_y))
    return max(CHUNK_QUANTUM, CHUNK_BYTES // row_bytes // CHUNK_QUANTUM * CHUNK_QUANTUM)


def paired_chunks(store_x: ActivationStore, store_y: ActivationStore, rows: int) -> Iterator[Chunk]:
    """Every layer of both stores, ``rows`` rows at a time (the last chunk may be shorter)."""
    start = 0
    for xs, ys in zip(store_x.iter_chunks(rows=rows), store_y.iter_chunks(rows=rows), strict=True):
        yield Chunk(start, xs, ys)
        start += xs[0].shape[0]
    if start != store_x.n:
        raise StoreMismatchError(f"{store_x.path}: read {start} rows but the store lists {store_x.n} stimuli")


def check_chunk_rows(chunk_rows) -> None:
    if chunk_rows is not None and (not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool)
                                   or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
