"""The rows of two stores, read together in chunks: the only way the streamed metrics see activations.

Either both stores list the same stimuli in the same order, or each row of the first names its rows of the second
(``rows_y``: a caption store's captions of each image, read in store order through a small buffer). The streamed
path cannot re-pair rows by id without random access; the in-memory path can, with ``align_by_id``. Each chunk
comes with its first row index, so a metric can look up per-row labels such as cross-validation fold ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align.store import ActivationStore
from align.store import StoreFormatError
from align.store import StoreMismatchError
from align.store import open_store

#: Bytes of activations (both stores, float32) per chunk when ``chunk_rows`` is not given. The accumulators hold
#: about four times a chunk (its float64 copy and products), the Parquet reader about two row groups of each store
#: (``align.store`` writes row groups of 64 MB): 32 MB keeps the chunk's share below the reader's.
CHUNK_BYTES = 32 * 2**20

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
        f"reads rows in store order and cannot pair them by id: re-extract both on the same stimulus set, pass "
        f"rows_y (the store_y rows of each store_x row), or score them in memory with "
        f"align.pairwise(..., align_by_id=True)")


def default_chunk_rows(widths_x, widths_y) -> int:
    """Rows per chunk so that a chunk of both stores holds about :data:`CHUNK_BYTES` of float32 activations."""
    row_bytes = 4 * (sum(widths_x) + sum(widths_y))
    return max(CHUNK_QUANTUM, CHUNK_BYTES // row_bytes // CHUNK_QUANTUM * CHUNK_QUANTUM)


def store_chunks(store: ActivationStore, rows: int) -> Iterator[list[np.ndarray]]:
    """Every layer of one store, ``rows`` rows at a time (``[m, d_l]`` float32 arrays; the last chunk may be shorter).

    Reads Parquet record batches with pyarrow directly, without pre-buffering: ``ParquetFile.iter_batches`` with
    its default ``pre_buffer=True`` keeps every column chunk it has read cached until the file is closed (measured:
    the whole 780 MB store held by the end of one pass), which defeats streaming. Page checksums are verified.

    Raises:
      StoreFormatError: a damaged page or missing rows (names the file; delete it and re-extract).
    """
    names, widths = list(store.layer_names), list(store.widths)
    pending: list[list[np.ndarray]] = []
    held = 0
    try:
        reader = pq.ParquetFile(store.path, pre_buffer=False, page_checksum_verification=True)
        for batch in reader.iter_batches(batch_size=int(rows), columns=names, use_threads=False):
            pending.append([_values(store, batch.column(i), name, d)
                            for i, (name, d) in enumerate(zip(names, widths))])
            held += batch.num_rows
            while held >= rows:
                merged = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*pending)]
                yield [a[:rows] for a in merged]
                held -= rows
                pending = [[a[rows:] for a in merged]] if held else []
    except (pa.ArrowException, OSError) as e:
        raise StoreFormatError(f"{store.path}: the layers cannot be read ({e}); the file is damaged (e.g. a page "
                               "checksum mismatch), delete it and re-extract") from None
    if held:
        yield [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*pending)]


def _values(store: ActivationStore, column: pa.Array, name: str, width: int) -> np.ndarray:
    """``[m, width]`` float32 values of one fixed-size-list column of a record batch."""
    if column.null_count:
        raise StoreFormatError(f"{store.path}: layer {name!r} has {column.null_count} missing rows")
    x = column.flatten().to_numpy(zero_copy_only=True).reshape(len(column), width)
    return x.astype(np.float32) if x.dtype != np.float32 else x


def check_rows_y(rows_y, n_x: int, store_y: ActivationStore) -> list[np.ndarray]:
    """``rows_y`` as int64 arrays, one per x row, each non-empty and within ``store_y``'s rows."""
    out = [np.atleast_1d(np.asarray(r, dtype=np.int64)) for r in rows_y]
    if len(out) != n_x:
        raise ValueError(f"rows_y lists the store_y rows of {len(out)} stimuli, but store_x has {n_x} rows")
    for k, r in enumerate(out):
        if r.size == 0 or r.min() < 0 or r.max() >= store_y.n:
            raise ValueError(f"rows_y[{k}] = {r.tolist()[:5]} is empty or outside the {store_y.n} rows of "
                             f"{store_y.path}")
    return out


@dataclasses.dataclass(frozen=True)
class Pairing:
    """Two stores read together: row k of ``store_x`` with row k of ``store_y``, or with the mean of the rows
    ``rows_y[k]`` of ``store_y`` (e.g. the captions of image k in a caption store; one row: that row as it is)."""

    store_x: ActivationStore
    store_y: ActivationStore
    rows_y: list[np.ndarray] | None = None

    @property
    def n(self) -> int:
        return self.store_x.n

    def chunks(self, rows: int) -> Iterator[Chunk]:
        """Every layer of both sides, ``rows`` x rows at a time (the last chunk may be shorter)."""
        if self.rows_y is None:
            ys = store_chunks(self.store_y, rows)
        else:
            ys = _mapped_chunks(self.store_y, self.rows_y, rows)
        start = 0
        for xs, y in zip(store_chunks(self.store_x, rows), ys, strict=True):
            yield Chunk(start, xs, y)
            start += xs[0].shape[0]
        if start != self.store_x.n:
            raise StoreMismatchError(f"{self.store_x.path}: read {start} rows but the store lists {self.store_x.n} "
                                     "stimuli")


def _mapped_chunks(store_y: ActivationStore, rows_y: list[np.ndarray], rows: int) -> Iterator[list[np.ndarray]]:
    """The store_y layers of x rows ``k .. k + rows`` (each the mean of its ``rows_y[k]``), read in store order.

    A buffer holds the store_y rows from the lowest row any later x row still needs to the highest of the current
    chunk: about one chunk for a caption store in image order. Raises ValueError (before reading) when the order is
    so scattered that the buffer would exceed 8 chunks.
    """
    bounds = list(range(0, len(rows_y), rows))
    lows = [min(int(r.min()) for r in rows_y[b:b + rows]) for b in bounds]
    highs = [max(int(r.max()) for r in rows_y[b:b + rows]) for b in bounds]
    keep_from = np.minimum.accumulate(np.array(lows)[::-1])[::-1]  # the lowest row needed from chunk c on
    per_x = max(1, -(-store_y.n // max(1, len(rows_y))))  # store_y rows per x row, rounded up
    span = max(h - k + 1 for h, k in zip(highs, keep_from))
    if span > 8 * rows * per_x:
        raise ValueError(f"rows_y visits the rows of {store_y.path} out of order (a span of {span} rows would be "
                         f"held at once); stream stores whose rows are in the same order, or score in memory")
    reader = store_chunks(store_y, rows * per_x)
    buf: list[np.ndarray] | None = None
    buf_start = 0
    for c, b in enumerate(bounds):
        while buf is None or buf_start + buf[0].shape[0] <= highs[c]:
            new = next(reader)
            buf = new if buf is None else [np.concatenate([a, z]) for a, z in zip(buf, new)]
        drop = int(keep_from[c]) - buf_start
        if drop > 0:
            buf, buf_start = [a[drop:] for a in buf], buf_start + drop
        yield [_reduce(a, rows_y[b:b + rows], buf_start) for a in buf]


def _reduce(layer: np.ndarray, sel: list[np.ndarray], offset: int) -> np.ndarray:
    """``[m, d]`` float32: per x row, its one row of ``layer`` or the float64 mean of its rows."""
    flat = np.concatenate(sel) - offset
    if flat.size == len(sel):
        return layer[flat]
    lengths = np.array([r.size for r in sel])
    out = np.zeros((len(sel), layer.shape[1]), dtype=np.float64)
    np.add.at(out, np.repeat(np.arange(len(sel)), lengths), layer[flat])
    return (out / lengths[:, None]).astype(np.float32)


def check_chunk_rows(chunk_rows) -> None:
    """Refuse a ``chunk_rows`` that is not None or a positive integer."""
    if chunk_rows is not None and (not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool)
                                   or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
