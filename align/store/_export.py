"""Export an activation store to formats other tools read: a folder of ``.npy`` files, one HDF5 file, or a
PyTorch ``.pt`` file. Each carries the stimulus ids (row order), the layer names (depth order) and the provenance."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from align.store._format import atomic_path
from align.store._reader import open_store

#: Formats :func:`export_store` writes.
EXPORT_FORMATS = ("npy", "h5", "pt")


def _file_stem(index: int, name: str) -> str:
    """A file-system-safe, order-preserving stem for layer ``index`` named ``name`` (``003_encoder.layer.2``)."""
    return f"{index:03d}_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer")


def _write_npy_folder(store, out: Path) -> None:
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        layers = []
        for i, name in enumerate(store.layer_names):
            x = np.asarray(store.layer(i), dtype=np.float32)
            np.save(tmp / f"{_file_stem(i, name)}.npy", x)
            layers.append({"name": name, "file": f"{_file_stem(i, name)}.npy", "shape": list(x.shape)})
        (tmp / "stimulus_ids.json").write_text(json.dumps(store.stimulus_ids))
        (tmp / "layers.json").write_text(json.dumps(layers, indent=1))
        (tmp / "meta.json").write_text(json.dumps({**store.meta, "group_ids": store.groups}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_h5(store, out: Path) -> None:
    try:
        import h5py
    except ImportError as e:
        raise ImportError("export to .h5 needs h5py: pip install 'align[interop]' (or pip install h5py)") from e
    text = h5py.string_dtype("utf-8")
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("stimulus_ids", data=np.asarray(store.stimulus_ids, dtype=object), dtype=text)
            if store.groups is not None:
                f.create_dataset("group_ids", data=np.asarray(store.groups, dtype=object), dtype=text)
            group = f.create_group("layers")
            for i, name in enumerate(store.layer_names):
                ds = group.create_dataset(name.replace("/", "_"), data=np.asarray(store.layer(i), dtype=np.float32))
                ds.attrs["layer_name"] = name
                ds.attrs["layer_index"] = i
            f.attrs["layer_names"] = json.dumps(store.layer_names)
            f.attrs["meta"] = json.dumps(store.meta)


def _write_pt(store, out: Path) -> None:
    try:
        import torch
    except ImportError as e:
        raise ImportError("export to .pt needs torch (the extract extra; see the Makefile for the CPU build)") from e
    payload = {
        "layers": {name: torch.from_numpy(np.array(store.layer(i), dtype=np.float32))
                   for i, name in enumerate(store.layer_names)},
        "stimulus_ids": list(store.stimulus_ids),
        "group_ids": None if store.groups is None else list(store.groups),
        "meta": json.dumps(store.meta),
    }
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)


def export_store(store, out, *, format: str, overwrite: bool = False) -> Path:
    """Write an activation store's layers to ``out`` in another format (atomically: a failed export leaves nothing).

    Formats:
      ``"npy"``: a folder with one ``NNN_<layer>.npy`` file per layer (``[n, d]`` float32, rows in stimulus order),
        ``stimulus_ids.json`` (the row ids, a JSON list), ``layers.json`` (ordered ``{"name", "file", "shape"}``
        records) and ``meta.json`` (the store's provenance plus ``group_ids``).
      ``"h5"``: one HDF5 file with dataset ``stimulus_ids`` (utf-8 strings), ``group_ids`` when the store has them,
        and one ``[n, d]`` float32 dataset per layer under ``layers/`` (named by the layer, ``/`` replaced by ``_``;
        attrs ``layer_name`` and ``layer_index``); file attrs ``layer_names`` and ``meta`` (JSON strings).
      ``"pt"``: a ``torch.save`` dict: ``"layers"`` (layer name -> ``[n, d]`` float32 tensor, in depth order),
        ``"stimulus_ids"``, ``"group_ids"`` (list or None) and ``"meta"`` (JSON string); loads with
        ``torch.load(path, weights_only=True)``.

    Args:
      store: an :class:`align.store.ActivationStore` or the path of a finished store.
      out: the folder (npy) or file (h5, pt) to write.
      format: one of :data:`EXPORT_FORMATS`.
      overwrite: replace ``out`` if it exists.

    Returns:
      ``out`` as a Path.

    Raises:
      ValueError: unknown ``format``.
      FileExistsError: ``out`` exists and ``overwrite`` is False.
      FileNotFoundError: no store at ``store``; ``out``'s parent folder does not exist.
      ImportError: the format's library (h5py, torch) is not installed.
    """
    writers = {"npy": _write_npy_folder, "h5": _write_h5, "pt": _write_pt}
    if format not in writers:
        raise ValueError(f"unknown export format {format!r}; choose one of {list(EXPORT_FORMATS)}")
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (align export --force) to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {out.parent} does not exist")
    if not hasattr(store, "layer_names"):
        store = open_store(store, cache=False)  # one layer in memory at a time
    writers[format](store, out)
    return out
