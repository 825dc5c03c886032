"""Where a store lives: one file per (stimulus set, condition, model, pooling)."""

from __future__ import annotations

import os
from pathlib import Path


def _component(value: str, what: str) -> str:
    """One path component; ``/`` becomes ``__`` so that HF ids (``org/name``) and local paths stay one folder."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"store_path: {what} must be a non-empty string, got {value!r}")
    safe = value.replace("/", "__").replace(os.sep, "__")
    if safe in (".", ".."):
        raise ValueError(f"store_path: {what} {value!r} is not a usable folder name")
    return safe


def store_path(root: str | os.PathLike, stimulus_set: str, condition: str, model: str, pooling: str) -> Path:
    """Path of the finished store ``root/activations/<stimulus_set>/<condition>/<model>/<pooling>.parquet``.

    Args:
      root: output root (e.g. ``results``).
      stimulus_set: name of the stimulus set (``StimulusSet.name``).
      condition: perturbation condition, e.g. ``"original"``.
      model: model name as the user gave it; ``/`` is replaced by ``__`` (``facebook/dinov2-small`` ->
        ``facebook__dinov2-small``).
      pooling: pooling name, e.g. ``"cls"`` or ``"mean"``.

    Returns:
      The path; nothing is created. Progress of an unfinished store lives next to it in ``<path>.parts/``.
    """
    return (Path(root) / "activations" / _component(stimulus_set, "stimulus_set") / _component(condition, "condition")
            / _component(model, "model") / f"{_component(pooling, 'pooling')}.parquet")
