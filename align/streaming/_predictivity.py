"""Linear predictivity of every layer pair of two stores, streamed: two or three passes over the rows.

1. :func:`align.streaming._moments.accumulate` per fold (the fold ids of ``align.stats.kfold_ids`` with the
   metric's ``folds`` and ``seed``, the same splitter and seed as the in-memory path): counts, column sums, Grams,
   cross products, column ranges. Then per (source layer, fold) an eigendecomposition of the ``[p, p]`` training
   Gram and the projected targets (:mod:`align.streaming._fold_fit`). GCV chooses the alphas from these alone.
2. Exact LOO only (the default): the training rows again, for the per-row leverages (:mod:`align.streaming._loo`).
3. The held-out rows, predicted and scored per fold (:mod:`align.streaming._predict`).

Both directions share each pass. Memory: the statistics (``F (Σ p² + Σ q² + Σ p q)`` float64), the fold models
(``F L p (p + Q)``), and one chunk of rows.
"""

from __future__ import annotations

import numpy as np

from align.stats import kfold_ids
from align.streaming._fold_fit import FoldModel
from align.streaming._fold_fit import choose_alphas
from align.streaming._fold_fit import fold_models
from align.streaming._fold_fit import gcv_errors
from align.streaming._loo import BLOCK_ROWS
from align.streaming._loo import LooAccumulator
from align.streaming._moments import Moments
from align.streaming._moments import accumulate
from align.streaming._predict import ScoreAccumulator
from align.streaming._predict import alpha_summary
from align.streaming._predict import layer_score
from align.streaming._rows import Pairing

#: Which side is the source and which the target in each direction.
SIDES = {"x_to_y": ("x", "y"), "y_to_x": ("y", "x")}


def _pass(pairing: Pairing, rows, fold_ids, accumulators: dict, bar) -> None:
    """One read of both stores, each chunk handed to every direction's accumulator."""
    for chunk in pairing.chunks(rows):
        folds = fold_ids[chunk.start:chunk.start + chunk.rows]
        sides = {"x": chunk.xs, "y": chunk.ys}
        for direction, acc in accumulators.items():
            source, target = SIDES[direction]
            acc.add(sides[source], np.concatenate(sides[target], axis=1), folds)
        bar.update(chunk.rows)


def predictivity_moments(pairing: Pairing, kw: dict, chunk_rows: int, bar) -> tuple[Moments, np.ndarray]:
    """Pass 1: the per-fold moments and the fold id of every row (``kw``: the metric's keywords, defaults merged)."""
    fold_ids = kfold_ids(pairing.n, kw["folds"], kw["seed"])
    m = accumulate(pairing.chunks(chunk_rows), fold_ids, int(fold_ids.max()) + 1, progress=bar)
    return m, fold_ids


def predictivity_grid(pairing: Pairing, m: Moments, fold_ids: np.ndarray,
                      kw: dict, directions: tuple[str, ...], chunk_rows: int, bar
                      ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Passes 2 and 3: scores and chosen-alpha summaries of every (x layer, y layer) pair in each direction.

    Args:
      pairing: the two stores, rows paired.
      m, fold_ids: :func:`predictivity_moments`.
      kw: every keyword of ``linear_predictivity`` (defaults merged).
      directions: ``"x_to_y"`` and/or ``"y_to_x"``.
      chunk_rows: rows per read chunk.
      bar: a progress bar counting rows read.

    Returns:
      ``({direction: [Lx, Ly]}, {direction: {"alpha_median" | "alpha_low_share" | "alpha_high_share": [Lx, Ly]}})``.
    """
    alphas = np.asarray(kw["alphas"], np.float64)
    models = {d: fold_models(m, *SIDES[d], scale=bool(kw["scale"]), pca_components=int(kw["pca_components"]))
              for d in directions}
    widths = {d: [g.shape[1] for g in getattr(m, SIDES[d][1]).sums] for d in directions}
    if kw["alpha_selection"] == "loo":
        loo = {d: LooAccumulator(models[d], alphas, block_rows=min(chunk_rows, BLOCK_ROWS)) for d in directions}
        _pass(pairing, chunk_rows, fold_ids, loo, bar)
        errors = {d: [[loo[d].errors(l, f) for f in range(len(per))] for l, per in enumerate(models[d])]
                  for d in directions}
    else:
        errors = {d: [[gcv_errors(fm.basis, fm.z, fm.yy, fm.centring.n_t, alphas) for fm in per]
                      for per in models[d]] for d in directions}
    chosen = {d: [[choose_alphas(e, alphas, widths[d], bool(kw["alpha_per_target"])) for e in per]
                  for per in errors[d]] for d in directions}
    scorers = {d: ScoreAccumulator(models[d], chosen[d]) for d in directions}
    _pass(pairing, chunk_rows, fold_ids, scorers, bar)
    scores, aux = {}, {}
    for d in directions:
        grid, summary = _direction_scores(m, d, models[d], chosen[d], scorers[d], alphas, kw)
        scores[d], aux[d] = grid, summary
    return scores, aux


def _direction_scores(m: Moments, direction: str, models: list[list[FoldModel]], chosen, acc: ScoreAccumulator,
                      alphas: np.ndarray, kw: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``[Lx, Ly]`` scores and alpha summaries of one direction (rows x layers, columns y layers)."""
    target = getattr(m, SIDES[direction][1])
    bounds = np.cumsum([0] + [g.shape[1] for g in target.sums])
    L_src, L_tgt = len(models), len(bounds) - 1
    grid = np.full((L_src, L_tgt), np.nan)
    summary = {k: np.full((L_src, L_tgt), np.nan) for k in ("alpha_median", "alpha_low_share", "alpha_high_share")}
    for j in range(L_tgt):
        cols = slice(bounds[j], bounds[j + 1])
        fold_valid = target.hi[j] > target.lo[j]                     # [F, q]
        all_valid = target.hi[j].max(axis=0) > target.lo[j].min(axis=0)
        for i, per in enumerate(models):
            offsets = np.stack([fm.mu_y[cols] - target.shift[j] for fm in per])
            grid[i, j] = layer_score(acc.sums[i], acc.counts, cols, fold_valid, all_valid, offsets, kw["score"],
                                     kw["cv_score"])
            med, low, high = alpha_summary(np.stack([a[cols] for a in chosen[i]]), alphas, all_valid)
            summary["alpha_median"][i, j], summary["alpha_low_share"][i, j] = med, low
            summary["alpha_high_share"][i, j] = high
    if direction == "y_to_x":
        grid = grid.T
        summary = {k: v.T for k, v in summary.items()}
    return grid, summary
