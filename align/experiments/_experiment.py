"""``align experiment CONFIG``: run the experiment named by the config's ``[experiment] kind``.

- ``layerwise``: what ``align run`` does (every layer grid, heatmaps), plus a shuffled-pairing permutation null
  at the peak layer pair of every (model pair, metric, preprocess, direction) with ``experiment.n_perm``
  permutations (``align.engine.permutation_null``), written to ``<output>/peak_null.parquet``
  (``quantity = "peak_null"``). (``score.null`` > 0 computes the null at every layer pair instead, in the main
  table.)
- ``perturbation``, ``aggregation``, ``preference``: see their modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from align.config import RunConfig
from align.experiments._driver import Plan
from align.experiments._driver import print_log
from align.experiments._driver import run_plans
from align.experiments._driver import scoring_executor
from align.experiments._driver import store_identity


def layerwise_peak_null(cfg: RunConfig, stores: dict, results: Path, *,
                        log: Callable[[str], None] = print_log) -> Path:
    """Permutation null (shuffled image–caption pairing) at each peak layer pair of a layerwise results table."""
    from align.engine import permutation_null
    from align.experiments._pairing import paired_layers
    from align.experiments._peaks import find_peaks
    from align.experiments._peaks import peaks_of
    from align.experiments._rows import label_rows
    from align.experiments._stores import open_stores
    from align.experiments._stores import store_pairs
    from align.results import read_results
    from align.results import write_results

    ex = cfg.experiment
    peaks = find_peaks(read_results(results))

    def at(cell) -> dict:
        found = peaks_of(peaks, cell.pair.vision, cell.pair.language, cell.metric, cell.preprocess)
        return {d: p.layers for d, p in found.items()}

    def key(cell, done):
        return dict(kind="peak_null", x=store_identity(cell.pair.vision), y=store_identity(cell.pair.language),
                    metric=cell.metric, caption=cfg.score.caption, at=sorted(at(cell).items()), n_perm=ex.n_perm,
                    seed=ex.seed, preprocess=cell.preprocess)

    def compute(cell, done):
        vs, ls = cell.pair.vision, cell.pair.language
        xs, ys = cell.pair.load("layers", lambda: paired_layers(vs, ls, cfg.score.caption)[1:])
        rows = []
        for d, (i, j) in sorted(at(cell).items()):
            grid = permutation_null(cell.metric, [xs[i]], [ys[j]], n_perm=ex.n_perm, seed=ex.seed,
                                    direction=None if d == "symmetric" else d, preprocess=cell.preprocess)
            row = grid.to_frame().iloc[0].to_dict()
            row.update(layer_x=i, layer_y=j)
            rows.append(row)
        return label_rows(rows, vs, ls, cell.metric, caption=cfg.score.caption, experiment="layerwise",
                          extra={"quantity": "peak_null", "n_perm": ex.n_perm})

    plan = Plan("peak_null", "peak_null", key, compute,
                label=lambda cell: f"peak null: {cell.pair.label} {cell.metric} ({cell.preprocess})")
    done = run_plans([plan], store_pairs(*open_stores(stores)), cfg.score.metrics, cfg.score.preprocess_options,
                     out=cfg.output_dir, log=log, executor=scoring_executor(cfg.execution, log=log))
    return write_results(pd.concat(done.values(), ignore_index=True), cfg.output_dir / "peak_null.parquet")


def run_experiment(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print_log) -> Path:
    """Run ``cfg`` according to ``cfg.experiment.kind``; returns the results table it wrote."""
    kind = cfg.experiment.kind
    if kind == "layerwise":
        from align.experiments._layerwise import run

        scoring_executor(cfg.execution, log=log)  # a Ray run fails here, before any work, when Ray cannot be used
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
