"""Held-out predictions, streamed: a pass over the rows that scores every fold's model on its held-out rows.

Each row is held out by exactly one fold; it is predicted by that fold's model of every source layer, and the
per-fold sums that Pearson r (or R²) needs are accumulated per target column in float64: ``Σ p``, ``Σ y``,
``Σ p²``, ``Σ y²``, ``Σ p y`` and ``Σ (y − p)²``, with ``p`` and ``y`` taken relative to the fold's training
target mean (the model's intercept), so no large offset cancels. The scores then follow the in-memory definition
(``align.metrics.linear_predictivity``): per held-out fold, r per target column that varies within the fold,
averaged over those columns, then over the folds (``cv_score="fold_mean"``); or one r per column over all folds
together (``"pooled"``, the sums moved to a common origin).
"""

from __future__ import annotations

import numpy as np

from align.stats import correlation
from align.stats import mean_valid
from align.streaming._fold_fit import FoldModel

SUMS = ("p", "y", "pp", "yy", "py", "ee")


class ScoreAccumulator:
    """Per-fold prediction sums ``[F, Q]`` of every source layer of one direction.

    Args:
      models: ``models[l][f]`` fold models.
      chosen: ``chosen[l][f]`` ``[Q]`` the alpha of every target column.
    """

    def __init__(self, models: list[list[FoldModel]], chosen: list[list[np.ndarray]]):
        self.models = models
        F, Q = len(models[0]), models[0][0].z.shape[1]
        self.weights = [[_weights(m, a) for m, a in zip(per, alphas)] for per, alphas in zip(models, chosen)]
        self.sums = [{k: np.zeros((F, Q)) for k in SUMS} for _ in models]
        self.counts = np.zeros(F)

    def add(self, sources: list[np.ndarray], targets: np.ndarray, folds: np.ndarray) -> None:
        """Add one chunk (as :meth:`align.streaming._loo.LooAccumulator.add`)."""
        for f in np.unique(folds):
            rows = np.flatnonzero(folds == f)
            self.counts[f] += rows.size
            Y = targets[rows].astype(np.float64)
            for l, per in enumerate(self.models):
                m = per[f]
                mu, inv_sd, W = self.weights[l][f]
                p = ((sources[l][rows] - mu) * inv_sd @ W).astype(np.float64) * m.sd_y
                y = Y - m.mu_y
                s = self.sums[l]
                s["p"][f] += p.sum(axis=0)
                s["y"][f] += y.sum(axis=0)
                s["pp"][f] += np.einsum("ij,ij->j", p, p)
                s["yy"][f] += np.einsum("ij,ij->j", y, y)
                s["py"][f] += np.einsum("ij,ij->j", p, y)
                s["ee"][f] += np.einsum("ij,ij->j", y - p, y - p)


def _weights(m: FoldModel, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (mean, 1 / std, ``[p, Q]`` weights) of one fold model: held-out predictions of the scaled targets are
    ``((x − mean) / std) @ weights``, with weights ``proj · (s² / (s² + α)) z`` per target column."""
    s2 = m.basis.s2[:, None]
    W = m.basis.proj @ (s2 / (s2 + alphas[None, :]) * m.z)
    return (m.centring.mu.astype(np.float32), (1.0 / m.centring.sd).astype(np.float32), W.astype(np.float32))


def column_scores(s: dict, counts: np.ndarray, score: str) -> np.ndarray:
    """``[..., Q]`` Pearson r or R² per column from sums of shape ``[..., Q]`` over ``counts`` ``[..., 1]`` rows."""
    n = np.maximum(counts, 1.0)
    var_y = s["yy"] - s["y"] ** 2 / n
    if score == "pearson":
        return correlation(s["py"] - s["p"] * s["y"] / n, s["pp"] - s["p"] ** 2 / n, var_y)
    return 1.0 - s["ee"] / np.where(var_y > 0, var_y, 1.0)


def pooled_sums(s: dict, counts: np.ndarray, offsets: np.ndarray) -> dict:
    """Per-fold sums ``[F, Q]`` moved by ``offsets`` ``[F, Q]`` (both p and y) and added over the folds."""
    n = counts[:, None]
    d = offsets
    return {"p": np.sum(s["p"] + n * d, axis=0), "y": np.sum(s["y"] + n * d, axis=0),
            "pp": np.sum(s["pp"] + 2 * d * s["p"] + n * d * d, axis=0),
            "yy": np.sum(s["yy"] + 2 * d * s["y"] + n * d * d, axis=0),
            "py": np.sum(s["py"] + d * (s["p"] + s["y"]) + n * d * d, axis=0), "ee": np.sum(s["ee"], axis=0)}


def layer_score(s: dict, counts: np.ndarray, cols: slice, fold_valid: np.ndarray, all_valid: np.ndarray,
                offsets: np.ndarray, score: str, cv_score: str) -> float:
    """The linear-predictivity score of one target layer (its columns ``cols`` of the sums).

    Args:
      s: per-fold sums ``[F, Q]``; counts: ``[F]`` held-out rows per fold.
      fold_valid: ``[F, q]`` the layer's columns that vary within each held-out fold.
      all_valid: ``[q]`` the columns that vary over all rows.
      offsets: ``[F, q]`` each fold's training target mean minus a common origin (for ``"pooled"``).
      score, cv_score: as ``align.metrics.linear_predictivity``.
    """
    part = {k: v[:, cols] for k, v in s.items()}
    if cv_score == "pooled":
        pooled = pooled_sums(part, counts, offsets)
        return float(mean_valid(column_scores(pooled, np.asarray(counts.sum()), score), all_valid))
    per_fold = mean_valid(column_scores(part, counts[:, None], score), fold_valid, axis=1)  # [F]
    return float(mean_valid(per_fold, ~np.isnan(per_fold)))


def alpha_summary(chosen: np.ndarray, alphas: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """(median, share at the smallest alpha, share at the largest) of ``chosen`` ``[F, q]`` over the columns
    ``valid`` ``[q]`` (NaN when none is valid), as the in-memory path reports them."""
    cells = chosen[:, valid]
    if cells.size == 0:
        return float("nan"), float("nan"), float("nan")
    return (float(np.median(cells)), float(np.mean(cells <= alphas.min())), float(np.mean(cells >= alphas.max())))
