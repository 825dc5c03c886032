"""Where a store lives: one file per (stimulus set, condition, model, pooling, ordered stimulus ids)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from align.data import order_hash


def _component(value: str, what: str) -> str:
    """One path component; ``/`` becomes ``__`` so that HF ids (``org/name``) and local paths stay one folder."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"store_path: {what} must be a non-empty string, got {value!r}")
    safe = value.replace("/", "__").replace(os.sep, "__")
    if safe in (".", ".."):
        raise ValueError(f"store_path: {what} {value!r} is not a usable folder name")
    return safe


def store_path(root: str | os.PathLike, stimulus_set: str, condition: str, model: str, pooling: str, *,
               stimulus_ids: Sequence[str]) -> Path:
    """Path of the finished store
    ``root/activations/<stimulus_set>/<condition>/<model>/<pooling>-<order hash>.parquet``.

    The one function that says where a store lives: extraction writes there and everything that reads a store
    gets its path from extraction. The file name carries the hash of the ordered row ids (``order_hash``, recorded
    in the store's metadata as ``stimulus_order_hash``), so two stores of different stimuli (another ``n``, another
    caption selection, a changed captions file) never share a path: changing ``n`` writes a new store next to the
    old one, which stays valid.

    Args:
      root: output root (e.g. ``results``).
      stimulus_set: name of the stimulus set (``StimulusSet.name``).
      condition: perturbation condition, e.g. ``"original"``.
      model: model name as the user gave it; ``/`` is replaced by ``__`` (``facebook/dinov2-small`` ->
        ``facebook__dinov2-small``).
      pooling: pooling name, e.g. ``"cls"`` or ``"mean"``.
      stimulus_ids: the store's row ids in row order (image ids for a vision store, caption ids
        ``<image_id>#<k>`` for a language store).

    Returns:
      The path; nothing is created. Progress of an unfinished store lives next to it in ``<path>.parts/``.
    """
    ids = [] if isinstance(stimulus_ids, str) else list(stimulus_ids)
    if not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"store_path: stimulus_ids must be a non-empty sequence of strings, got {ids[:3]!r}")
    return (Path(root) / "activations" / _component(stimulus_set, "stimulus_set") / _component(condition, "condition")
            / _component(model, "model") / f"{_component(pooling, 'pooling')}-{order_hash(ids)}.parquet")
