"""Read a finished store: a read-only mapping layer name -> ``[n, d]`` float32 array, one column read per layer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align.data import order_hash
from align.data import repeated
from align.store._errors import StoreFormatError
from align.store._errors import StoreMismatchError
from align.store._format import GROUP_COLUMN
from align.store._format import ID_COLUMN
from align.store._format import READ_OPTIONS
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
        try:
            ids = pq.read_table(self.path, columns=[ID_COLUMN, GROUP_COLUMN] if has_groups else [ID_COLUMN],
                                **READ_OPTIONS)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{self.path}: the stimulus ids cannot be read ({e}); the file is damaged, "
                                   "delete it and re-extract") from None
        self.stimulus_ids: list[str] = ids.column(ID_COLUMN).to_pylist()
        self.groups: list[str] | None = ids.column(GROUP_COLUMN).to_pylist() if has_groups else None
        twice = repeated(self.stimulus_ids)
        if twice:
            raise StoreFormatError(
                f"{self.path}: {len(twice)} stimulus id(s) occur more than once, e.g. {_examples(twice, 5)}; a store "
                f"holds each stimulus once (StoreWriter refuses repeats), so this file was edited or merged by hand: "
                f"delete it and re-extract")
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

    def iter_chunks(self, layers: int | str | Sequence[int | str] | None = None, *,
                    rows: int = 65536) -> Iterator[list[np.ndarray]]:
        """Stream layers in row chunks without reading whole layers: for n larger than memory.

        Reads Parquet record batches (a finished store holds row groups of about 64 MB of activations,
        ``ROW_GROUP_BYTES``), so the memory held is about one row group of the requested columns plus one chunk.
        Nothing is cached.

        Args:
          layers: one layer (index or name), a sequence of layers, or None for every layer.
          rows: rows per chunk (every chunk has exactly ``rows`` rows except the last).

        Yields:
          Per chunk, a list with one ``[m, d_l]`` float32 array per requested layer, rows in store order.

        Raises:
          ValueError: ``rows`` is not a positive integer.
          StoreFormatError: a damaged page (checksum mismatch) or missing rows.
        """
        if not isinstance(rows, (int, np.integer)) or isinstance(rows, bool) or rows < 1:
            raise ValueError(f"iter_chunks: rows must be a positive number of rows, got {rows!r}")
        keys = range(self.n_layers) if layers is None else [layers] if isinstance(layers, (str, int, np.integer)) \
            else layers
        names = [self._name(k) for k in keys]
        widths = [self.widths[self.layer_names.index(name)] for name in names]
        pending: list[list[np.ndarray]] = []
        held = 0
        try:
            # pre_buffer=False: pyarrow's default keeps every row group read until the file closes, so one pass
            # over a store would hold all of it
            reader = pq.ParquetFile(self.path, pre_buffer=False, **READ_OPTIONS)
            for batch in reader.iter_batches(batch_size=int(rows), columns=names, use_threads=False):
                pending.append([self._column_values(batch.column(i), name, d)
                                for i, (name, d) in enumerate(zip(names, widths))])
                held += batch.num_rows
                while held >= rows:
                    chunk, pending, held = _split_rows(pending, int(rows))
                    yield chunk
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{self.path}: layers {names} cannot be read ({e}); the file is damaged (e.g. a "
                                   f"page checksum mismatch), delete it and re-extract") from None
        if held:
            yield [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*pending)]

    def _column_values(self, column: pa.Array, name: str, width: int) -> np.ndarray:
        """``[m, width]`` float32 values of one fixed-size-list column of a record batch."""
        if column.null_count:
            raise StoreFormatError(f"{self.path}: layer {name!r} has {column.null_count} missing rows")
        x = column.flatten().to_numpy(zero_copy_only=True).reshape(len(column), width)
        return x.astype(np.float32) if x.dtype != np.float32 else x

    def clear_cache(self) -> None:
        """Forget the layers read so far (frees their memory once no one else holds them)."""
        self._cache.clear()

    def _read(self, name: str) -> np.ndarray:
        d = self.widths[self.layer_names.index(name)]
        try:
            column = pq.read_table(self.path, columns=[name], **READ_OPTIONS).column(0)
        except (pa.ArrowException, OSError) as e:
            raise StoreFormatError(f"{self.path}: layer {name!r} cannot be read ({e}); the file is damaged (e.g. a "
                                   f"page checksum mismatch), delete it and re-extract") from None
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
      StoreFormatError: the file is not an align store, repeats a stimulus id (names them), or is damaged (a page
        whose checksum does not match; raised by the read that meets it, so possibly on a later ``store[layer]``).
        The message names the file and says to delete it and re-extract.
    """
    return ActivationStore(path, cache=cache)


def _label(source, fallback: str) -> str:
    """How an error names one side: a store's path, else ``fallback``."""
    path = getattr(source, "path", None)
    return f"{fallback}={path}" if path is not None else fallback


def _examples(ids: Sequence[str], k: int = 3) -> str:
    return "[" + ", ".join(repr(i) for i in list(ids)[:k]) + (", ...]" if len(ids) > k else "]")


def caption_image_id(stimulus_id: str) -> str | None:
    """The image id of a caption id ``<image_id>#<k>`` (k a non-negative integer), or None for any other id.

    Caption ids are what language stores hold (``StimulusSet.caption_table``: caption k of image ``i`` has id
    ``f"{i}#{k}"``); the image id is everything before the last ``#``.
    """
    image_id, hash_, k = stimulus_id.rpartition("#")
    return image_id if hash_ and image_id and k.isdigit() else None


def _caption_pairing(ids_a: list[str], ids_b: list[str], label_a: str, label_b: str):
    """Rows pairing an image side with a caption side by image id, or None when neither side pairs that way.

    Exactly one side must hold only caption ids whose image ids meet the other side's ids. Each image must have one
    caption row: a caption store of several captions per image is refused (see ``match_rows``).
    """
    for captions, images, cap_label, img_label, caption_side in ((ids_b, ids_a, label_b, label_a, "b"),
                                                                 (ids_a, ids_b, label_a, label_b, "a")):
        owners = [caption_image_id(sid) for sid in captions]
        if any(o is None for o in owners):
            continue
        image_rows = {sid: i for i, sid in enumerate(images)}
        if not any(o in image_rows for o in owners):
            continue
        per_image: dict[str, list[str]] = {}
        for sid, owner in zip(captions, owners):
            per_image.setdefault(owner, []).append(sid)
        several = {img: cids for img, cids in per_image.items() if len(cids) > 1}
        if several:
            img, cids = next(iter(several.items()))
            raise StoreMismatchError(
                f"{cap_label} holds several captions per image ({len(several)} of its {len(per_image)} images, e.g. "
                f"{img!r}: {_examples(cids)}), so pairing it with the image rows of {img_label} by image id is "
                f"ambiguous. align pairs one caption row with each image, as the rest of the project does (score."
                f"caption = \"first\" uses caption 0, k caption k, \"mean\" the mean of an image's captions) and never "
                f"repeats an image row (copies of one image would sit in both the training and the held-out folds of "
                f"linear predictivity, and at distance 0 in RDMs and kNN sets). Extract one caption per image "
                f"(extract(..., captions=k), or [score] caption = k in a config), or pair the stores with "
                f"align.experiments.paired_layers(image_store, caption_store, caption=\"first\" | \"mean\" | k)")
        caption_rows = {owner: i for i, owner in enumerate(owners)}
        if caption_side == "b":
            rows_a = [i for i, sid in enumerate(ids_a) if sid in caption_rows]
            rows_b = [caption_rows[ids_a[i]] for i in rows_a]
        else:
            rows_a = [i for i, owner in enumerate(owners) if owner in image_rows]
            rows_b = [image_rows[owners[i]] for i in rows_a]
        return np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)
    return None


def match_rows(ids_a: Sequence[str], ids_b: Sequence[str], *, align_by_id: bool = False, source_a=None,
               source_b=None) -> tuple[np.ndarray, np.ndarray] | None:
    """How to pair two lists of stimulus ids (the rows of two stores), by id.

    Same ids in the same order: the rows pair as they are (None). Otherwise, with ``align_by_id``:

    - the ids both sides hold, in the order of side A;
    - when the sides share no id but one side holds caption ids ``<image_id>#<k>`` (a language store) whose
      image ids are ids of the other side (an image store): each image row is paired with its caption row, in the
      order of side A. A caption side must hold one caption per image (e.g. extracted with ``captions=k``, as
      ``score.caption = "first"`` or ``k`` does); several captions per image are refused with an error saying how
      to pick one, because repeating image rows would put copies of one image in both the training and the held-out
      folds of linear predictivity.

    Args:
      ids_a, ids_b: row ids of the two sides.
      align_by_id: pair by id when the orders differ, instead of refusing.
      source_a, source_b: the stores (or anything with a ``.path``), named in errors.

    Returns:
      None, or ``(rows_a, rows_b)``: int64 index arrays of the paired rows (``rows_a[k]`` of A with ``rows_b[k]``
      of B).

    Raises:
      StoreMismatchError: the orders differ and ``align_by_id`` is False (says how they differ and that
        ``align_by_id=True`` pairs them); no id is common to both sides, even after reading caption ids as their
        image ids (names both sides and example ids of each); a caption side with several captions per image.
    """
    ids_a, ids_b = list(ids_a), list(ids_b)
    if ids_a == ids_b:
        return None
    label_a, label_b = _label(source_a, "A"), _label(source_b, "B")
    in_b = {sid: i for i, sid in enumerate(ids_b)}
    rows_a = [i for i, sid in enumerate(ids_a) if sid in in_b]
    if rows_a:
        if not align_by_id:
            only_a, only_b = len(ids_a) - len(rows_a), len(ids_b) - len(rows_a)
            if only_a or only_b:
                what = f"{only_a} ids of A are not in B and {only_b} ids of B are not in A"
            else:
                what = "they hold the same ids in a different order"
            raise StoreMismatchError(
                f"stores {label_a} and {label_b} do not list the same stimuli in the same order ({what}); re-extract "
                f"both on the same stimulus set, or pass align_by_id=True to compare the {len(rows_a)} common "
                f"stimuli")
        rows_b = [in_b[ids_a[i]] for i in rows_a]
        return np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)
    rows = _caption_pairing(ids_a, ids_b, label_a, label_b)
    if rows is None:
        raise StoreMismatchError(
            f"stores {label_a} and {label_b} share no stimulus id, not even after reading caption ids "
            f"'<image_id>#<k>' as their image ids (A holds e.g. {_examples(ids_a)}, B e.g. {_examples(ids_b)}); "
            f"were they extracted on the same stimulus set?")
    if not align_by_id:
        raise StoreMismatchError(
            f"stores {label_a} and {label_b} hold images and their captions ({len(rows[0])} images in common, e.g. "
            f"{ids_a[rows[0][0]]!r} and {ids_b[rows[1][0]]!r}); pass align_by_id=True to pair each image with its "
            f"caption")
    return rows


def align_rows(a: ActivationStore, b: ActivationStore, align_by_id: bool = False
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """How to pair the rows of two stores before comparing them (``match_rows`` on their stimulus ids).

    Args:
      a, b: the stores.
      align_by_id: if the stimulus orders differ, pair the common ids instead of refusing; an image store and a
        caption store (ids ``<image_id>#<k>``, one caption per image) are paired by image id.

    Returns:
      None when both stores list the same ids in the same order (use rows as they are); otherwise, with
      ``align_by_id``, ``(rows_a, rows_b)``: int64 index arrays of the paired rows, in the order of ``a``
      (``a.stimulus_ids[rows_a[k]] == b.stimulus_ids[rows_b[k]]``, or its image id for a caption row).

    Raises:
      StoreMismatchError: the orders differ and ``align_by_id`` is False (says how many ids differ), the stores
        share no id (names both stores and example ids of each), or a caption store holds several captions per
        image.
    """
    if a.order_hash == b.order_hash and a.stimulus_ids == b.stimulus_ids:
        return None
    return match_rows(a.stimulus_ids, b.stimulus_ids, align_by_id=align_by_id, source_a=a, source_b=b)


def _split_rows(pending: list[list[np.ndarray]], rows: int) -> tuple[list[np.ndarray], list[list[np.ndarray]], int]:
    """The first ``rows`` rows of the buffered per-layer pieces as one chunk, and what is left (pieces, row count)."""
    merged = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*pending)]
    chunk = [a[:rows] for a in merged]
    rest = merged[0].shape[0] - rows
    return chunk, ([[a[rows:] for a in merged]] if rest else []), rest
