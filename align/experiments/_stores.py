"""The stores an experiment works on: models split by modality, finished stores opened by side, rows by id."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from align.config import RunConfig


def split_by_modality(cfg: RunConfig) -> tuple[RunConfig, RunConfig]:
    """(the config with its vision models only, the config with its language models only)."""
    from align.extract import resolve_model

    sides = {"vision": [], "language": []}
    for m in cfg.models:
        spec = resolve_model(m.name, modality=m.modality) if m.modality else resolve_model(m.name)
        sides[spec.modality].append(m)
    if not sides["vision"] or not sides["language"]:
        raise ValueError(f"experiment {cfg.name!r} needs at least one vision and one language model; got vision "
                         f"{[m.name for m in sides['vision']]}, language {[m.name for m in sides['language']]}")
    return (dataclasses.replace(cfg, models=tuple(sides["vision"])),
            dataclasses.replace(cfg, models=tuple(sides["language"])))


def open_stores(stores: dict[tuple[str, str], Path]) -> tuple[dict, dict]:
    """Open finished stores; returns (vision stores, language stores), each keyed (model name, pooling)."""
    from align.store import open_store

    vision, language = {}, {}
    for key, path in stores.items():
        s = open_store(path)
        (vision if s.meta.get("modality", "vision") == "vision" else language)[key] = s
    return vision, language


def store_pairs(vision: dict, language: dict) -> list:
    """Every (vision store, caption store) :class:`~align.experiments._driver.Pair`, vision-major."""
    from align.experiments._driver import Pair

    return [Pair(vs, ls) for vs in vision.values() for ls in language.values()]


def rows_by_id(store, ids) -> np.ndarray:
    """Row indices of ``ids`` in ``store`` (raises naming the first missing ids)."""
    index = {sid: i for i, sid in enumerate(store.stimulus_ids)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise ValueError(f"{store.path} lacks {len(missing)} of the requested stimuli, e.g. {missing[:3]}; "
                         f"re-extract it on the same stimulus set")
    return np.asarray([index[i] for i in ids], dtype=np.int64)
