"""Read a finished store: a read-only mapping layer name -> ``[n, d]`` float32 array, one column read per layer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align.data._stimuli import order_hash
from align.store._errors import StoreFormatError
from align.store._errors import StoreMismatchError
from align.store._format import GROUP_COLUMN
from align.store._format import ID_COLUMN
from align.store._format import STORE_DTYPES
from align.store._format import layer_type
from align.store._format import read_meta


class ActivationStore(Mapping):
    """A finished store, opened read-only. ``store[layer_name]`` is that layer as a ``[n, d]`` float32 array.

    Each layer is read on first use (a Parquet column projection) and cached; the arrays are read-only views of
    Arrow memory (float32 stores: no copy after decoding; float16 stores: one conversion to float32). Copy an array
    (``np.array(x)``) before changing it in place.

    Attributes:
      path: the Parquet file.
      meta: provenance (model, revision, pooling, layer names, widths, stimulus order hash, ...).
      stimulus_ids: row ids, ``n`` strings in row order.
      groups: group id per row (e.g. the image of each caption), or None.
      layer_names: layer names, index 0 first.
      widths: width ``d_l`` of each layer.
      order_hash: hash of the ordered stimulus ids; two stores with equal hashes are row-aligned.
      dtype: storage dtype (``"float32"`` or ``"float16"``); arrays come back as float32 either way.
    """

    def __init__(self, path, *, cache: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            parts = self.path.with_name(self.path.name + ".parts")
            hint = (f"; {parts} holds an unfinished extraction: rerun it to resume and finish the store"
                    if parts.is_dir() else "; run the extraction first")
            raise FileNotFoundError(f"no activation store at {self.path}{hint}")
        try:
            schema = pq.read_schema(self.path)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{self.path} is not a readable Parquet file ({e}); delete it and re-extract") \
                from None
        self.meta: dict = read_meta(self.path, schema)
        try:
            self.layer_names: list[str] = list(self.meta["layer_names"])
            self.widths: list[int] = [int(d) for d in self.meta["widths"]]
            self.order_hash: str = self.meta["stimulus_order_hash"]
            self.dtype: str = self.meta.get("store_dtype", "float32")
        except (KeyError, TypeError) as e:
            raise StoreFormatError(f"{self.path}: the align metadata lacks {e}; it is not a finished store") from None
        if self.dtype not in STORE_DTYPES or len(self.widths) != len(self.layer_names):
            raise StoreFormatError(f"{self.path}: inconsistent align metadata (dtype {self.dtype!r}, "
                                   f"{len(self.layer_names)} layer names, {len(self.widths)} widths)")
        for name, d in zip(self.layer_names, self.widths):
            field = schema.field(name) if name in schema.names else None
            if field is None or field.type != layer_type(d, self.dtype):
                found = "missing" if field is None else str(field.type)
                raise StoreFormatError(f"{self.path}: layer column {name!r} is {found}; the metadata says "
                                       f"fixed_size_list<{self.dtype}>[{d}]")
        if ID_COLUMN not in schema.names:
            raise StoreFormatError(f"{self.path} has no {ID_COLUMN!r} column")
        has_groups = GROUP_COLUMN in schema.names
        ids = pq.read_table(self.path, columns=[ID_COLUMN, GROUP_COLUMN] if has_groups else [ID_COLUMN])
        self.stimulus_ids: list[str] = ids.column(ID_COLUMN).to_pylist()
        self.groups: list[str] | None = ids.column(GROUP_COLUMN).to_pylist() if has_groups else None
        if order_hash(self.stimulus_ids) != self.order_hash:
            raise StoreFormatError(f"{self.path}: the stimulus ids do not match the recorded order hash; the file is "
                                   "damaged or was edited, delete it and re-extract")
        self._cache_enabled = cache
        self._cache: dict[str, np.ndarray] = {}

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def n(self) -> int:
        """Number of rows (stimuli)."""
        return len(self.stimulus_ids)

    def _name(self, key: int | str) -> str:
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if not -self.n_layers <= i < self.n_layers:
                raise IndexError(f"layer index {i} out of range: {self.path} has {self.n_layers} layers")
            return self.layer_names[i]
        if isinstance(key, str):
            if key not in self.layer_names:
                raise KeyError(f"{self.path} has no layer {key!r}; layers are {self.layer_names}")
            return key
        raise TypeError(f"a layer is named by its index or name, got {type(key).__name__}")

    def layer(self, key: int | str) -> np.ndarray:
        """One layer as a read-only ``[n, d]`` float32 array (column projection; cached; zero-copy for float32).

        Args:
          key: layer index (negative counts from the end) or layer name.
        """
        name = self._name(key)
        x = self._cache.get(name)
        if x is None:
            x = self._read(name)
            if self._cache_enabled:
                self._cache[name] = x
        return x

    def layers(self, indices: Sequence[int | str] | None = None) -> list[np.ndarray]:
        """Several layers (all by default) as ``[n, d_l]`` float32 arrays."""
        keys = range(self.n_layers) if indices is None else indices
        return [self.layer(k) for k in keys]

    def clear_cache(self) -> None:
        """Forget the layers read so far (frees their memory once no one else holds them)."""
        self._cache.clear()

    def _read(self, name: str) -> np.ndarray:
        d = self.widths[self.layer_names.index(name)]
        try:
            column = pq.read_table(self.path, columns=[name]).column(0)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{self.path}: layer {name!r} cannot be read ({e}); delete it and re-extract") \
                from None
        if column.null_count:
            raise StoreFormatError(f"{self.path}: layer {name!r} has {column.null_count} missing rows")
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        values = chunk.flatten().to_numpy(zero_copy_only=True)
        x = values.reshape(len(chunk), d)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
            x.flags.writeable = False
        return x

    # Mapping interface: keys are layer names.
    def __getitem__(self, name: str) -> np.ndarray:
        if not isinstance(name, str):
            raise KeyError(f"store keys are layer names; use store.layer({name!r}) to index by position")
        return self.layer(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layer_names)

    def __len__(self) -> int:
        return self.n_layers

    def __contains__(self, name) -> bool:
        return name in self.layer_names

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, model={self.meta.get('model')!r}, "
                f"pooling={self.meta.get('pooling')!r}, n={self.n}, {self.n_layers} layers, {self.dtype})")


def open_store(path, *, cache: bool = True) -> ActivationStore:
    """Open a finished store read-only.

    Args:
      path: the store file (see ``store_path``).
      cache: keep layers in memory after the first read (turn off to stream through a large store).

    Raises:
      FileNotFoundError: no finished store at ``path`` (says whether an unfinished extraction is there).
      StoreFormatError: the file is not an align store.
    """
    return ActivationStore(path, cache=cache)


def align_rows(a: ActivationStore, b: ActivationStore, align_by_id: bool = False
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """How to pair the rows of two stores before comparing them.

    Args:
      a, b: the stores.
      align_by_id: if the stimulus orders differ, pair the common ids instead of refusing.

    Returns:
      None when both stores list the same ids in the same order (use rows as they are); otherwise, with
      ``align_by_id``, ``(rows_a, rows_b)``: int64 index arrays such that ``a.stimulus_ids[rows_a[k]] ==
      b.stimulus_ids[rows_b[k]]``, for the common ids in the order of ``a``.

    Raises:
      StoreMismatchError: the orders differ and ``align_by_id`` is False (says how many ids differ), or the stores
        share no id.
    """
    if a.order_hash == b.order_hash and a.stimulus_ids == b.stimulus_ids:
        return None
    in_b = {sid: i for i, sid in enumerate(b.stimulus_ids)}
    rows_a = [i for i, sid in enumerate(a.stimulus_ids) if sid in in_b]
    only_a = len(a.stimulus_ids) - len(rows_a)
    only_b = len(b.stimulus_ids) - len(rows_a)
    if not rows_a:
        raise StoreMismatchError(f"stores {a.path} and {b.path} share no stimulus id (e.g. {a.stimulus_ids[:2]} vs "
                                 f"{b.stimulus_ids[:2]}); were they extracted on the same stimulus set?")
    if not align_by_id:
        if only_a or only_b:
            what = f"{only_a} ids of A are not in B and {only_b} ids of B are not in A"
        else:
            what = "they hold the same ids in a different order"
        raise StoreMismatchError(
            f"stores A={a.path} and B={b.path} do not list the same stimuli in the same order ({what}); re-extract "
            f"both on the same stimulus set, or pass align_by_id=True to compare the {len(rows_a)} common stimuli")
    rows_b = [in_b[a.stimulus_ids[i]] for i in rows_a]
    return np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)
