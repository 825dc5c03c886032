"""``align.load_activations``: the public way to read a store."""

from __future__ import annotations

from pathlib import Path

from align.store._reader import ActivationStore, open_store


def load_activations(path: str | Path) -> ActivationStore:
    """Open an activation store for reading.

    Args:
      path: a finished store file (``.../activations/<set>/<condition>/<model>/<pooling>-<order hash>.parquet``,
        see ``align.store.store_path``).

    Returns:
      A read-only mapping layer name -> ``[n, d]`` float32 array (layers are read on first access, zero-copy where
      possible), with ``.stimulus_ids``, ``.layer_names``, ``.widths`` and provenance in ``.meta``. Pass it straight
      to ``align.pairwise``; stores whose stimulus order differs are refused unless ``align_by_id=True`` (which also
      pairs an image store with its caption store by image id).
    """
    return open_store(path)
