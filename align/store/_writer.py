"""Write a store in resumable parts, then merge the parts into one Parquet file.

Progress lives in ``<path>.parts/part-XXXXX.parquet``; each part holds its own stimulus ids and the identity of the
run (config fingerprint, stimulus order hash, layer names, dtype). Every file is written atomically (temporary name in
the same folder, fsync, rename, fsync of the folder), so a kill -9 at any point leaves only complete parts and a
stray ``*.tmp`` that the next writer removes; re-creating the writer resumes from the complete parts.

One process at a time may write a store: ``extract`` holds the store's lock (``<path>.lock``, ``align._locks``) from
before it opens the writers until they are finalized, and a second run waits for it, then finds the store finished.
Temporaries are removed only while that lock is free or held by this process (``remove_store_leftovers``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align._locks import lock_if_free
from align._version import __version__
from align.data import order_hash
from align.data import repeated
from align.store._errors import NonFiniteActivationError
from align.store._errors import StoreFormatError
from align.store._errors import StoreMismatchError
from align.store._format import ID_COLUMN
from align.store._format import READ_OPTIONS
from align.store._format import RESERVED_COLUMNS
from align.store._format import ROW_GROUP_BYTES
from align.store._format import STORE_DTYPES
from align.store._format import atomic_path
from align.store._format import created_time
from align.store._format import fsync_dir
from align.store._format import layer_type
from align.store._format import read_meta
from align.store._format import store_schema
from align.store._format import write_options

_PART_GLOB = "part-*.parquet"


def _preview(items: Sequence, k: int = 5) -> str:
    """``['a', 'b', 'c']`` or ``['a', 'b', 'c', ...]`` for error messages."""
    head = ", ".join(repr(i) for i in list(items)[:k])
    return f"[{head}{', ...' if len(items) > k else ''}]"


class StoreWriter:
    """Writes the activations of one (stimulus set, condition, model, pooling) in parts; resumable after a kill.

    Example::

        w = StoreWriter(path, stimulus_ids=ids, layer_names=names, meta=meta)
        for batch in chunks(w.pending_ids(), 32):
            w.write_part(batch, [h[l] for l in range(len(names))])   # each [len(batch), d_l]
        w.finalize()

    Args:
      path: the finished store file (see ``store_path``). If it exists the writer is ``complete`` and refuses
        writes; otherwise progress is kept in ``<path>.parts/`` and a new writer on the same path resumes it.
      stimulus_ids: row ids in their final order (unique strings).
      layer_names: one name per layer, index 0 first (e.g. the embedding output for transformer hidden states).
      meta: provenance supplied by the caller (model, model_source, revision, architecture, modality, pooling,
        dtype, stimulus_set, condition, config_fingerprint); JSON-serialisable. The writer adds n_layers,
        layer_names, widths, n_stimuli, stimulus_order_hash, store_dtype, align_version and created (UTC ISO).
      groups: optional group id per stimulus (e.g. the image id of each caption), stored as column ``group_id``.
      dtype: storage dtype, ``"float32"`` (default) or ``"float16"`` (half the size; values beyond +-65504 are
        refused as non-finite). Readers always get float32.

    Raises:
      StoreMismatchError: ``<path>.parts/`` holds parts of a run with another config fingerprint, stimulus order,
        layer names, groups or dtype.
      StoreFormatError: a part file cannot be read.
    """

    def __init__(self, path, *, stimulus_ids: Sequence[str], layer_names: Sequence[str], meta: dict,
                 groups: Sequence[str] | None = None, dtype: str = "float32"):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.stimulus_ids = _check_ids(stimulus_ids)
        self.layer_names = _check_layer_names(layer_names)
        self.groups = _check_groups(groups, self.stimulus_ids)
        if dtype not in STORE_DTYPES:
            raise ValueError(f"StoreWriter: dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        if not isinstance(meta, dict):
            raise ValueError(f"StoreWriter: meta must be a dict, got {type(meta).__name__}")
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise ValueError(f"StoreWriter: meta must be JSON-serialisable ({e}); convert paths and numpy scalars "
                             "to str / int / float") from None
        self.meta = dict(meta)
        self._index = {sid: i for i, sid in enumerate(self.stimulus_ids)}
        self._identity = {
            "config_fingerprint": self.meta.get("config_fingerprint", ""),
            "stimulus_order_hash": order_hash(self.stimulus_ids),
            "layer_names": list(self.layer_names),
            "groups_hash": order_hash(self.groups) if self.groups is not None else None,
            "store_dtype": dtype,
        }
        self.widths: list[int] | None = None  # known after the first part
        self._stored: dict[str, tuple[int, int]] = {}  # stimulus id -> (part number, row in part)
        self._parts: dict[int, Path] = {}
        self.complete = self.path.exists()
        if not self.complete:
            self._resume()

    # -- resume ---------------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Remove stray temporary files (unless another process holds the store's lock), then index the complete
        parts (and check they belong to this run)."""
        with lock_if_free(self.path) as free:
            if free:
                for tmp in _store_temporaries(self.path):
                    tmp.unlink(missing_ok=True)
        if not self.parts_dir.is_dir():
            return
        for part in sorted(self.parts_dir.glob(_PART_GLOB)):
            try:
                number = int(part.stem.removeprefix("part-"))
            except ValueError:
                continue
            meta = read_meta(part)
            self._check_part_identity(part, meta)
            widths = meta.get("widths")
            if self.widths is None:
                self.widths = list(widths)
            elif list(widths) != self.widths:
                raise StoreFormatError(f"part {part} has layer widths {widths} but earlier parts have {self.widths}; "
                                       f"delete {self.parts_dir} and extract again")
            try:
                ids = pq.read_table(part, columns=[ID_COLUMN], **READ_OPTIONS).column(ID_COLUMN).to_pylist()
            except (pa.ArrowException, OSError, KeyError) as e:
                raise StoreFormatError(f"part {part} cannot be read ({e}); delete it (its stimuli will be "
                                       "extracted again) and rerun") from None
            for row, sid in enumerate(ids):
                if sid in self._stored:
                    other = self._parts[self._stored[sid][0]]
                    raise StoreFormatError(f"stimulus {sid!r} is stored twice, in {other.name} and {part.name} "
                                           f"(two writers ran at once?); delete {self.parts_dir} and extract again")
                self._stored[sid] = (number, row)
            self._parts[number] = part

    def _check_part_identity(self, part: Path, meta: dict) -> None:
        stored = meta.get("identity", {})
        for key, now in self._identity.items():
            then = stored.get(key)
            if then != now:
                if key == "layer_names":
                    then = f"{len(then or [])} layers {_preview(then or [], 3)}"
                    now = f"{len(now)} layers {_preview(now, 3)}"
                raise StoreMismatchError(
                    f"{self.parts_dir} holds parts of an interrupted run with a different {key} ({then!r}, now "
                    f"{now!r}; first differing part {part.name}); rerun with the same config to resume, or delete "
                    f"{self.parts_dir} to start over")

    # -- progress -------------------------------------------------------------------------------------------------

    def pending_ids(self) -> list[str]:
        """Ids not yet stored, in stimulus order (empty when the store is complete)."""
        if self.complete:
            return []
        return [sid for sid in self.stimulus_ids if sid not in self._stored]

    @property
    def n_stored(self) -> int:
        """Number of stimuli stored so far (all of them when complete)."""
        return len(self.stimulus_ids) if self.complete else len(self._stored)

    # -- writing --------------------------------------------------------------------------------------------------

    def write_part(self, ids: Sequence[str], layers: Sequence[np.ndarray]) -> None:
        """Store one batch of stimuli as a new part file (atomically).

        Args:
          ids: the stimulus ids of the batch rows (known, not yet stored, no repeats).
          layers: one array per layer, in ``layer_names`` order, each ``[len(ids), d_l]``; anything
            ``np.asarray`` accepts (CPU torch tensors included). Cast to the store dtype.

        Raises:
          ValueError: store already finished, wrong number of layers, wrong shapes or widths, unknown or repeated ids.
          NonFiniteActivationError: NaN or inf values (or float16 overflow); names the layer and stimuli.
        """
        if self.complete:
            raise ValueError(f"{self.path} is already finished; delete it to extract again")
        ids = list(ids)
        if not ids:
            return
        self._check_batch_ids(ids)
        if len(layers) != len(self.layer_names):
            raise ValueError(f"write_part got {len(layers)} layer arrays but the store has {len(self.layer_names)} "
                             f"layers {_preview(self.layer_names, 3)}; pass one [batch, width] array per layer")
        np_dtype = STORE_DTYPES[self.dtype][0]
        arrays, widths = [], []
        for l, (name, x) in enumerate(zip(self.layer_names, layers)):
            x = np.asarray(x)
            if x.ndim != 2 or x.shape[0] != len(ids):
                raise ValueError(f"layer {name!r} (index {l}) has shape {x.shape}; expected [{len(ids)}, width] "
                                 f"(one row per id)")
            if x.dtype.kind not in "fiu":
                raise ValueError(f"layer {name!r} (index {l}) has dtype {x.dtype}; expected real numbers")
            if x.shape[1] < 1:
                raise ValueError(f"layer {name!r} (index {l}) has width 0")
            if self.widths is not None and x.shape[1] != self.widths[l]:
                raise ValueError(f"layer {name!r} (index {l}) has width {x.shape[1]} but the first part stored "
                                 f"width {self.widths[l]}; every batch must have the same layer widths")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _check_finite
                y = np.ascontiguousarray(x, dtype=np_dtype)
            _check_finite(name, l, x, y, ids, self.dtype)
            arrays.append(y)
            widths.append(x.shape[1])
        self._write(ids, arrays, widths)

    def _check_batch_ids(self, ids: list[str]) -> None:
        unknown = [sid for sid in ids if sid not in self._index]
        if unknown:
            raise ValueError(f"write_part: {len(unknown)} ids are not in this store's stimulus list, e.g. "
                             f"{_preview(unknown)}")
        twice = repeated(ids)
        if twice:
            raise ValueError(f"write_part: ids repeated within the batch: {_preview(twice)}")
        done = [sid for sid in ids if sid in self._stored]
        if done:
            raise ValueError(f"write_part: {len(done)} ids are already stored, e.g. {_preview(done)}; write only "
                             "pending_ids()")

    def _write(self, ids: list[str], arrays: list[np.ndarray], widths: list[int]) -> None:
        number = max(self._parts, default=0) + 1
        part = self.parts_dir / f"part-{number:05d}.parquet"
        meta = {**self.meta, "identity": self._identity, "widths": widths, "part": number}
        schema = store_schema(self.layer_names, widths, self.dtype, self.groups is not None, meta)
        columns = [pa.array(ids, pa.string())]
        if self.groups is not None:
            columns.append(pa.array([self.groups[self._index[sid]] for sid in ids], pa.string()))
        for y, d in zip(arrays, widths):
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), type=layer_type(d, self.dtype)))
        table = pa.Table.from_arrays(columns, schema=schema)
        if not self.parts_dir.is_dir():
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.parts_dir.parent)
        with atomic_path(part) as tmp:
            pq.write_table(table, tmp, row_group_size=len(ids), **write_options(self.layer_names))
        self._parts[number] = part
        for row, sid in enumerate(ids):
            self._stored[sid] = (number, row)
        if self.widths is None:
            self.widths = widths

    # -- finishing ------------------------------------------------------------------------------------------------

    def finalize(self) -> Path:
        """Merge the parts, in stimulus order, into one Parquet file (atomically), then delete ``<path>.parts/``.

        Idempotent: on a finished store it only removes leftover parts and returns the path.

        Returns:
          The path of the finished store.

        Raises:
          ValueError: some stimuli are not stored yet (says how many and which).
        """
        if self.complete:
            if self.parts_dir.exists():
                shutil.rmtree(self.parts_dir)
                fsync_dir(self.parts_dir.parent)
            return self.path
        missing = self.pending_ids()
        if missing:
            raise ValueError(f"cannot finalize {self.path}: {len(missing)} of {len(self.stimulus_ids)} stimuli are "
                             f"not stored yet, e.g. {_preview(missing)}; write them first (see pending_ids())")
        meta = {
            **self.meta,
            "n_layers": len(self.layer_names),
            "layer_names": list(self.layer_names),
            "widths": list(self.widths),
            "n_stimuli": len(self.stimulus_ids),
            "stimulus_order_hash": self._identity["stimulus_order_hash"],
            "store_dtype": self.dtype,
            "align_version": __version__,
            "created": created_time(),  # SOURCE_DATE_EPOCH pins it (reproducible bytes)
        }
        meta.setdefault("dtype", self.dtype)
        schema = store_schema(self.layer_names, self.widths, self.dtype, self.groups is not None, meta)
        row_bytes = sum(self.widths) * np.dtype(STORE_DTYPES[self.dtype][0]).itemsize
        rows_per_group = max(1, ROW_GROUP_BYTES // row_bytes)
        with atomic_path(self.path) as tmp:
            with pq.ParquetWriter(tmp, schema, **write_options(self.layer_names)) as writer:
                for table in self._ordered_tables(rows_per_group, schema):
                    writer.write_table(table, row_group_size=rows_per_group)
        self.complete = True
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        fsync_dir(self.parts_dir.parent)
        return self.path

    def _ordered_tables(self, rows_per_group: int, schema: pa.Schema):
        """Tables of at most ``rows_per_group`` rows in stimulus order, reading each part once (if parts were
        written in order, about one part is held in memory at a time)."""
        rows_left = {number: 0 for number in self._parts}
        for number, _ in self._stored.values():
            rows_left[number] += 1
        cache: dict[int, pa.Table] = {}
        for start in range(0, len(self.stimulus_ids), rows_per_group):
            runs: list[tuple[int, list[int]]] = []
            for sid in self.stimulus_ids[start:start + rows_per_group]:
                number, row = self._stored[sid]
                if runs and runs[-1][0] == number:
                    runs[-1][1].append(row)
                else:
                    runs.append((number, [row]))
            pieces = []
            for number, rows in runs:
                if number not in cache:
                    cache[number] = self._read_part(number, schema)
                pieces.append(cache[number].take(pa.array(rows, pa.int64())))
                rows_left[number] -= len(rows)
                if rows_left[number] == 0:
                    del cache[number]
            yield pa.concat_tables(pieces)

    def _read_part(self, number: int, schema: pa.Schema) -> pa.Table:
        part = self._parts[number]
        try:
            table = pq.read_table(part, **READ_OPTIONS)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"part {part} cannot be read ({e}); delete it and rerun to extract its stimuli "
                                   "again") from None
        if table.schema.remove_metadata() != schema.remove_metadata():
            raise StoreFormatError(f"part {part} has columns {table.schema.names} with types that differ from "
                                   f"the other parts; delete {self.parts_dir} and extract again")
        return table.replace_schema_metadata(None).cast(schema.remove_metadata())

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.n_stored}/{len(self.stimulus_ids)} stored"
        return f"StoreWriter({str(self.path)!r}, {len(self.layer_names)} layers, {state})"


def _store_temporaries(path: Path) -> list[Path]:
    """Temporary files of the store ``path`` and of its parts (left by a killed writer)."""
    parts_dir = path.with_name(path.name + ".parts")
    # <store>.<pid>.tmp only: <store>.diagnostics.json.<pid>.tmp belongs to another writer (not under this lock)
    found = [p for p in path.parent.glob(f"{path.name}.*.tmp") if p.name[len(path.name) + 1:-4].isdigit()]
    if parts_dir.is_dir():
        found += parts_dir.glob("*.tmp")
    return found


def remove_store_leftovers(path) -> list[Path]:
    """Remove what killed writers of the store ``path`` left behind, unless another process is writing it.

    Temporary files (``<path>.<pid>.tmp``, ``<path>.parts/*.tmp``) are always leftovers; ``<path>.parts/`` is one
    only beside a finished store (otherwise it is the progress a rerun resumes, and is kept).

    Returns:
      The paths removed.
    """
    path = Path(path)
    parts_dir = path.with_name(path.name + ".parts")
    if not path.parent.is_dir():
        return []
    with lock_if_free(path) as free:
        if not free:
            return []
        removed = _store_temporaries(path)
        for tmp in removed:
            tmp.unlink(missing_ok=True)
        if path.exists() and parts_dir.exists():
            shutil.rmtree(parts_dir, ignore_errors=True)
            removed = [p for p in removed if p.parent != parts_dir] + [parts_dir]
        if removed:
            fsync_dir(path.parent)
    return removed


def _check_ids(ids: Sequence[str]) -> list[str]:
    ids = list(ids)
    if not ids:
        raise ValueError("StoreWriter: stimulus_ids is empty")
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise ValueError(f"StoreWriter: stimulus ids must be strings, got {_preview(bad)}")
    twice = repeated(ids)
    if twice:
        raise ValueError(f"StoreWriter: stimulus ids repeat: {_preview(twice)}")
    return ids


def _check_layer_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ValueError("StoreWriter: layer_names is empty")
    for n in names:
        if not isinstance(n, str) or not n:
            raise ValueError(f"StoreWriter: layer names must be non-empty strings, got {n!r}")
        if n in RESERVED_COLUMNS:
            raise ValueError(f"StoreWriter: {n!r} cannot be a layer name (reserved column)")
    if len(set(names)) != len(names):
        raise ValueError(f"StoreWriter: layer names repeat: {_preview([n for n in names if names.count(n) > 1])}")
    return names


def _check_groups(groups: Sequence[str] | None, ids: list[str]) -> list[str] | None:
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != len(ids):
        raise ValueError(f"StoreWriter: {len(groups)} groups for {len(ids)} stimulus ids; give one group per id")
    bad = [g for g in groups if not isinstance(g, str)]
    if bad:
        raise ValueError(f"StoreWriter: groups must be strings, got {_preview(bad)}")
    return groups


def _check_finite(name: str, index: int, x: np.ndarray, y: np.ndarray, ids: list[str], dtype: str) -> None:
    """Raise NonFiniteActivationError if ``y`` (``x`` cast to the store dtype) has NaN or inf values."""
    finite = np.isfinite(y)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    count = int(finite.size - np.count_nonzero(finite))
    where = f"{len(bad_rows)} of {len(ids)} stimuli, e.g. {_preview([ids[r] for r in bad_rows])}"
    if x.dtype.kind == "f" and np.isfinite(x).all():
        peak, limit = float(np.max(np.abs(x))), float(np.finfo(y.dtype).max)
        suggestion = "store with dtype='float32'" if dtype == "float16" else "rescale the activations"
        raise NonFiniteActivationError(
            f"layer {name!r} (index {index}) has {count} values beyond the {dtype} range (largest |value| "
            f"{peak:.4g} > {limit:.4g}) in {where}; {suggestion}")
    raise NonFiniteActivationError(
        f"layer {name!r} (index {index}) has {count} non-finite values (NaN or inf) in {where}; re-extract with "
        f"dtype='float32' (half-precision models overflow) or check these inputs")
