"""``align experiment CONFIG``: run the experiment named by the config's ``[experiment] kind``.

- ``layerwise``: what ``align run`` does (every layer grid, heatmaps), plus a shuffled-pairing permutation null
  at the peak layer pair of every (model pair, metric, direction) with ``experiment.n_perm`` permutations
  (``align.engine.permutation_null``), written to ``<output>/peak_null.parquet`` (``quantity = "peak_null"``).
  (``score.null`` > 0 computes the null at every layer pair instead, in the main table.)
- ``perturbation``, ``aggregation``, ``preference``: see their modules.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from align.config import RunConfig
from align.experiments._jobs import JobClock
from align.experiments._jobs import cached_job
from align.experiments._jobs import job_key
from align.experiments._jobs import peak_pairs
from align.experiments._jobs import relative_depth
from align.experiments._jobs import store_identity


def _log_default(msg: str) -> None:
    print(msg, flush=True)


def layerwise_peak_null(cfg: RunConfig, stores: dict, results: Path, *,
                        log: Callable[[str], None] = _log_default) -> Path:
    """Permutation null (shuffled image–caption pairing) at each peak layer pair of a layerwise results table."""
    from align.engine import permutation_null
    from align.experiments._jobs import open_stores
    from align.experiments._jobs import pair_key
    from align.experiments._layerwise import label_grid
    from align.experiments._pairing import paired_layers
    from align.results import read_results
    from align.results import write_results

    ex = cfg.experiment
    table = read_results(results)
    options = cfg.score.preprocess_options
    # peaks per preprocessing option (each option is its own layer grid)
    peaks_of = {o: peak_pairs(table[table["preprocess"] == o] if "preprocess" in table.columns else table)
                for o in options}
    vision, language = open_stores(stores)
    frames = []
    clock = JobClock(len(vision) * len(language) * len(cfg.score.metrics) * len(options))
    for vs in vision.values():
        for ls in language.values():
            loaded = {}
            for metric, preprocess in itertools.product(cfg.score.metrics, options):
                peaks = peaks_of[preprocess]
                at = {k[5]: v for k, v in peaks.items() if k[:5] == pair_key(vs, ls, metric)}
                key = job_key(kind="peak_null", x=store_identity(vs), y=store_identity(ls), metric=metric,
                              caption=cfg.score.caption, at=sorted(at.items()), n_perm=ex.n_perm, seed=ex.seed,
                              preprocess=preprocess)

                def compute(vs=vs, ls=ls, metric=metric, at=at, preprocess=preprocess):
                    if not loaded:
                        loaded["layers"] = paired_layers(vs, ls, cfg.score.caption)[1:]
                    xs, ys = loaded["layers"]
                    rows = []
                    for d, (i, j) in sorted(at.items()):
                        grid = permutation_null(metric, [xs[i]], [ys[j]], n_perm=ex.n_perm, seed=ex.seed,
                                                direction=None if d == "symmetric" else d, preprocess=preprocess)
                        row = grid.to_frame().iloc[0].to_dict()
                        row.update(layer_x=i, layer_y=j, rel_depth_x=relative_depth(i, vs.n_layers),
                                   rel_depth_y=relative_depth(j, ls.n_layers))
                        rows.append(row)
                    return label_grid(pd.DataFrame(rows), vs, ls, metric, caption=cfg.score.caption,
                                      extra={"quantity": "peak_null", "n_perm": ex.n_perm})

                label = f"peak null: {vs.meta.get('model')} x {ls.meta.get('model')} {metric} ({preprocess})"
                frames.append(cached_job(cfg.output_dir / "peak_null" / f"{key}.parquet", compute, label=label,
                                         log=log, clock=clock))
    return write_results(pd.concat(frames, ignore_index=True), cfg.output_dir / "peak_null.parquet")


def run_experiment(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = _log_default) -> Path:
    """Run ``cfg`` according to ``cfg.experiment.kind``; returns the results table it wrote."""
    kind = cfg.experiment.kind
    if kind == "layerwise":
        from align.experiments._layerwise import run

        outputs = run(cfg, progress=progress, log=log)
        if cfg.experiment.n_perm:
            log("peak null:")
            layerwise_peak_null(cfg, outputs.stores, outputs.results, log=log)
        return outputs.results
    if kind == "perturbation":
        from align.experiments._perturbation import run_perturbation

        return run_perturbation(cfg, progress=progress, log=log)
    if kind == "aggregation":
        from align.experiments._aggregation import run_aggregation

        return run_aggregation(cfg, progress=progress, log=log)
    if kind == "preference":
        from align.experiments._preference import run_preference

        return run_preference(cfg, progress=progress, log=log)
    raise ValueError(f"unknown experiment kind {kind!r}")  # validated by align.config
