"""Scoring jobs of the experiments: deterministic keys, one results file per job, skipped when it exists.

A job is a pure function of its inputs (store fingerprints and row orders, the metric, the experiment's
parameters); its key is a hash of those, its output ``<output>/<folder>/<key>.parquet`` is written atomically
(``align.results.write_results``), so a rerun skips finished jobs and an interrupted run resumes. A job runs under
its lock (``<key>.parquet.lock``), so two runs of one config share the work instead of racing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from align._locks import output_lock
from align._locks import remove_leftovers
from align.config import RunConfig
from align.results import LayerPair


def job_key(**content) -> str:
    """16 hex chars: SHA-256 of the JSON of ``content`` (keys sorted)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_identity(store) -> list:
    """What identifies a store's content for a job key: its config fingerprint, row order, pooling, condition."""
    meta = store.meta
    return [meta.get("config_fingerprint"), store.order_hash, meta.get("pooling"), meta.get("condition")]


class JobClock:
    """Counts a known number of jobs and estimates the time left from the mean time of those computed so far
    (skipped jobs cost nothing): ``clock.done(seconds)`` -> ``"[3/12, about 2 min left]"``."""

    def __init__(self, total: int):
        self.total, self.count, self.computed, self.seconds = int(total), 0, 0, 0.0

    def done(self, seconds: float | None = None) -> str:
        """Record one job (``seconds`` None: skipped) and return its progress tag."""
        self.count += 1
        if seconds is not None:
            self.computed += 1
            self.seconds += seconds
        left = self.total - self.count
        if not left:
            return f"[{self.count}/{self.total}]"
        if not self.computed:
            return f"[{self.count}/{self.total}]"
        eta = left * self.seconds / self.computed
        when = f"{eta:.0f} s" if eta < 120 else f"{eta / 60:.0f} min"
        return f"[{self.count}/{self.total}, about {when} left]"


def cached_job(path: Path, compute: Callable[[], pd.DataFrame], *, label: str,
               log: Callable[[str], None], clock: JobClock | None = None) -> pd.DataFrame:
    """Read ``path`` if it exists, else compute the rows, write them atomically and return them. With a ``clock``
    the log line says how many jobs are done and about how long the rest will take.

    The job is computed under its lock (``<path>.lock``): a second process running the same job waits, then reads
    the rows the first wrote. Temporaries that killed jobs left in ``path``'s folder are removed (those of jobs no
    live process holds)."""
    from align.results import read_results, write_results

    remove_leftovers(path.parent, pattern="*.tmp")
    if not path.exists():
        with output_lock(path, log=log):
            if not path.exists():  # else another process finished it while we waited
                t0 = time.perf_counter()
                frame = compute()
                write_results(frame, path)
                seconds = time.perf_counter() - t0
                tag = f"{clock.done(seconds)} " if clock else ""
                log(f"  {tag}{label}: {seconds:.1f} s")
                return read_results(path)
    tag = f"{clock.done()} " if clock else ""
    log(f"  {tag}{label}: exists, skipped")
    return read_results(path)


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


def rows_by_id(store, ids) -> np.ndarray:
    """Row indices of ``ids`` in ``store`` (raises naming the first missing ids)."""
    index = {sid: i for i, sid in enumerate(store.stimulus_ids)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise ValueError(f"{store.path} lacks {len(missing)} of the requested stimuli, e.g. {missing[:3]}; "
                         f"re-extract it on the same stimulus set")
    return np.asarray([index[i] for i in ids], dtype=np.int64)


def relative_depth(layer: int, n_layers: int) -> float:
    """layer / last layer index (1.0 for a one-layer model), as in the results tables."""
    return layer / (n_layers - 1) if n_layers > 1 else 1.0


def pair_key(vision, language, metric: str) -> tuple:
    """(model_x, pooling_x, model_y, pooling_y, metric) of a (vision store, caption store) pair, as in results."""
    return (vision.meta.get("model"), vision.meta.get("pooling"), language.meta.get("model"),
            language.meta.get("pooling"), metric)


def peak_pairs(table: pd.DataFrame) -> dict[tuple, LayerPair]:
    """(model_x, pooling_x, model_y, pooling_y, metric, direction) -> LayerPair(layer_x, layer_y) of the most
    aligned score (the lowest for a lower-is-better metric; ``align.results.peak_rows``)."""
    from align.results import peak_layer_pairs

    return peak_layer_pairs(table, ["model_x", "pooling_x", "model_y", "pooling_y", "metric", "direction"])


def direction_peaks(grid: pd.DataFrame) -> dict[str, LayerPair]:
    """direction -> LayerPair of the most aligned score in the rows of ONE (model pair, metric) layer grid (the
    lowest for a lower-is-better metric; ``align.results.peak_rows``).

    Raises:
      ValueError: a direction of ``grid`` has no defined score (every layer pair NaN).
    """
    from align.results import peak_layer_pairs

    found = {d: pair for (d,), pair in peak_layer_pairs(grid, ["direction"]).items()}
    undefined = sorted(set(grid["direction"]) - set(found))
    if undefined:
        raise ValueError(f"no peak layer pair in direction(s) {undefined}: every score of that layer grid is NaN "
                         f"(constant or undefined layers, see its `undefined` column); check the activations")
    return found


def read_peaks(path: str | Path, dataset: str | None, *, log: Callable[[str], None],
               preprocess: str | None = None) -> dict:
    """Peak layer pairs from a layerwise results table (a results.parquet or the folder holding it).

    Rows of ``dataset`` are used when the table has them; otherwise all rows, and the log says so. With
    ``preprocess`` (a canonical spec), only the rows scored under that preprocessing option, when the table has
    them (a table written before the ``preprocess`` column was scored on raw features, i.e. ``"none"``).
    """
    from align.results import read_results

    path = Path(path)
    if path.is_dir() and (path / "results.parquet").exists():
        path = path / "results.parquet"
    if not path.exists():
        raise FileNotFoundError(f"experiment.peaks_from = {str(path)!r} does not exist; run that layerwise config "
                                f"first (`align experiment CONFIG`) or leave peaks_from out to compute the grids here")
    table = read_results(path)
    table = table[table["experiment"] == "layerwise"] if "experiment" in table.columns else table
    if dataset is not None and (table["dataset"] == dataset).any():
        table = table[table["dataset"] == dataset]
    else:
        log(f"  peak layers from {path} (datasets {sorted(table['dataset'].dropna().unique())}; none is {dataset!r})")
    if preprocess is not None:
        options = table["preprocess"].fillna("none") if "preprocess" in table.columns else pd.Series("none", table.index)
        if not (options == preprocess).any():
            raise ValueError(f"experiment.peaks_from = {str(path)!r} has no rows scored with preprocess "
                             f"{preprocess!r} (it has {sorted(options.unique())}); score the layerwise config with it")
        table = table[options == preprocess]
    return peak_pairs(table)


def write_exclusions(cfg: RunConfig, exclusions: dict) -> Path:
    """Write what an experiment left out to ``<output>/exclusions.json``, atomically (never half-written)."""
    from align.store._format import atomic_path

    path = cfg.output_dir / "exclusions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(exclusions, indent=1))
    return path
