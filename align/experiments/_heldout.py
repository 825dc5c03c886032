"""Paired statistics of linear predictivity computed on held-out predictions (no refit per draw).

Linear predictivity refits a cross-validated ridge model for every resample, which makes an exact permutation or
bootstrap over stimuli cost one ridge fit per draw. Here the out-of-fold predictions of each condition are
computed once (``ridge_cv_predict``, the same folds and alphas as the metric) and the draws act on them:

- score of a set of rows: per outer fold, the mean over target columns of the Pearson r between predictions and
  targets over that fold's rows in the set, then the mean over folds (the linear-predictivity score itself when
  every row is used once; with ``cv_score="pooled"`` one r over all the rows, as that option of the metric);
- bootstrap: stimuli resampled with replacement (the same rows for both conditions), the difference recomputed;
  percentile interval;
- paired permutation: for each stimulus, its (prediction, target) rows of condition A and B swapped with
  probability 1/2; two-sided ``p = (1 + #{|null| >= |observed|}) / (1 + n_perm)``.

Both are conditional on the fitted ridge maps (they ignore the variability of refitting), which is the usual
practice for encoding models evaluated on held-out stimuli; ``align.engine.paired_difference`` is the exact
(refitting) test and is used for every other metric.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import numpy as np

_PREDICTIONS: OrderedDict = OrderedDict()  # a few recent out-of-fold predictions, keyed by content (see _predict)
_CACHE_SIZE = 8


def _predict(X, Y, ridge_kwargs: dict) -> np.ndarray:
    """Out-of-fold predictions ``[n, q]`` of Y from X (``ridge_cv_predict``), memoised by content: a condition
    compared with several others (k = 1 against every k) is fitted once."""
    from align.metrics import ridge_cv_predict

    X, Y = np.ascontiguousarray(X, np.float32), np.ascontiguousarray(Y, np.float32)
    h = hashlib.sha256()
    for a in (X, Y):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps(ridge_kwargs, sort_keys=True, default=str).encode())
    key = h.hexdigest()
    if key not in _PREDICTIONS:
        _PREDICTIONS[key] = np.asarray(ridge_cv_predict(X, Y, **ridge_kwargs).predictions, np.float64)
        while len(_PREDICTIONS) > _CACHE_SIZE:
            _PREDICTIONS.popitem(last=False)
    return _PREDICTIONS[key]


def _fold_masks(n: int, ridge_kwargs: dict) -> np.ndarray:
    """``[F, n]`` 0/1 masks of the outer folds whose mean score the metric reports (one all-ones mask for
    ``cv_score="pooled"``)."""
    from align.metrics import kfold_ids

    if ridge_kwargs.get("cv_score", "fold_mean") == "pooled":
        return np.ones((1, n))
    ids = kfold_ids(n, ridge_kwargs.get("folds", 5), ridge_kwargs.get("seed", 0))
    return (ids[None, :] == np.arange(ids.max() + 1)[:, None]).astype(np.float64)


def _column_r(S: np.ndarray, P: np.ndarray, Y: np.ndarray, PY: np.ndarray, P2: np.ndarray, Y2: np.ndarray,
              valid: np.ndarray) -> np.ndarray:
    """Mean over valid columns of the weighted Pearson r for each row of weights ``S [B, n]`` -> ``[B]`` (NaN for a
    row of zero weights: a fold that a bootstrap draw left empty)."""
    total = S.sum(axis=1, keepdims=True)
    w = np.where(total > 0, total, 1.0)
    sp, sy = S @ P, S @ Y
    cov = S @ PY - sp * sy / w
    var_p = S @ P2 - sp * sp / w
    var_y = S @ Y2 - sy * sy / w
    denom = np.sqrt(np.clip(var_p, 0.0, None) * np.clip(var_y, 0.0, None))
    r = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(total[:, 0] > 0, r[:, valid].mean(axis=1), np.nan)


def _fold_r(S: np.ndarray, stats: tuple, valid: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Mean over the folds ``[F, n]`` of :func:`_column_r` on each fold's rows -> ``[B]`` (folds a draw left empty
    are skipped)."""
    per_fold = np.stack([_column_r(S * m, *stats, valid) for m in folds])
    counted = ~np.isnan(per_fold)
    return np.where(counted, per_fold, 0.0).sum(axis=0) / np.maximum(counted.sum(axis=0), 1)


def _mixed_r(S: np.ndarray, a: tuple, b: tuple, valid: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Score of condition A with the rows where ``S`` is 1 taken from condition B (mean over folds) -> ``[B]``."""
    return np.mean([_mixed_fold_r(S, a, b, valid, m) for m in folds], axis=0)


def _mixed_fold_r(S: np.ndarray, a: tuple, b: tuple, valid: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Column-mean r over the rows with ``rows`` = 1, of A with the rows where ``S`` is 1 taken from B."""
    keep = (1.0 - S) * rows
    S = S * rows
    (Pa, Ya), (Pb, Yb) = a, b
    w = np.full((S.shape[0], 1), float(rows.sum()))
    sp, sy = keep @ Pa + S @ Pb, keep @ Ya + S @ Yb
    cov = keep @ (Pa * Ya) + S @ (Pb * Yb) - sp * sy / w
    var_p = keep @ (Pa * Pa) + S @ (Pb * Pb) - sp * sp / w
    var_y = keep @ (Ya * Ya) + S @ (Yb * Yb) - sy * sy / w
    denom = np.sqrt(np.clip(var_p, 0.0, None) * np.clip(var_y, 0.0, None))
    r = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return r[:, valid].mean(axis=1)


def heldout_paired_difference(X_a, Y_a, X_b, Y_b, *, n_perm: int = 1000, n_boot: int = 1000, ci: float = 0.95,
                              seed: int = 0, **ridge_kwargs) -> dict:
    """Linear predictivity (X -> Y) of condition A minus condition B on the same stimuli, with held-out statistics.

    Args:
      X_a, Y_a: ``[n, p]`` predictors and ``[n, q]`` targets under condition A (e.g. perturbed images).
      X_b, Y_b: the same stimuli under condition B (e.g. the originals); widths may differ from A's.
      n_perm: paired swaps for the two-sided p-value (0: none).
      n_boot: bootstrap resamples of stimuli for the interval of the difference (0: none).
      ci: interval coverage.
      seed: NumPy seed of the swaps and resamples.
      **ridge_kwargs: arguments of ``linear_predictivity`` (alphas, folds, seed, alpha_selection, ...).

    Returns:
      dict with ``score`` (A − B), ``score_a``, ``score_b``, ``p_value``, ``null_mean``, ``ci_low``, ``ci_high``
      (NaN where not computed) and ``n``.
    """
    n = len(X_a)
    if not (len(Y_a) == len(X_b) == len(Y_b) == n):
        raise ValueError(f"heldout_paired_difference: conditions must have the same stimuli; got row counts "
                         f"{len(X_a)}, {len(Y_a)}, {len(X_b)}, {len(Y_b)}")
    Ya, Yb = np.asarray(Y_a, np.float64), np.asarray(Y_b, np.float64)
    if Ya.shape[1] != Yb.shape[1]:
        raise ValueError("heldout_paired_difference: the targets of A and B must have the same width")
    Pa, Pb = _predict(X_a, Y_a, ridge_kwargs), _predict(X_b, Y_b, ridge_kwargs)
    valid = (np.ptp(Ya, axis=0) > 0) & (np.ptp(Yb, axis=0) > 0)
    if not valid.any():
        raise ValueError("heldout_paired_difference: every target column is constant")
    ones = np.ones((1, n))
    folds = _fold_masks(n, ridge_kwargs)
    a, b = (Pa, Ya), (Pb, Yb)
    stats_a = (Pa, Ya, Pa * Ya, Pa * Pa, Ya * Ya)
    stats_b = (Pb, Yb, Pb * Yb, Pb * Pb, Yb * Yb)
    score_a = float(_fold_r(ones, stats_a, valid, folds)[0])
    score_b = float(_fold_r(ones, stats_b, valid, folds)[0])
    out = {"score": score_a - score_b, "score_a": score_a, "score_b": score_b, "p_value": np.nan,
           "null_mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    rng = np.random.default_rng(seed)
    if n_perm:
        null = []
        for start in range(0, n_perm, 256):
            S = (rng.random((min(256, n_perm - start), n)) < 0.5).astype(np.float64)
            null.append(_mixed_r(S, a, b, valid, folds) - _mixed_r(S, b, a, valid, folds))
        null = np.concatenate(null)
        observed = out["score"]
        out["p_value"] = float((1 + np.sum(np.abs(null) >= np.abs(observed) - 1e-12)) / (1 + n_perm))
        out["null_mean"] = float(null.mean())
    if n_boot:
        diffs = []
        for start in range(0, n_boot, 256):
            rows = rng.integers(0, n, size=(min(256, n_boot - start), n))
            S = np.zeros((len(rows), n))
            np.add.at(S, (np.repeat(np.arange(len(rows)), n), rows.ravel()), 1.0)
            diffs.append(_fold_r(S, stats_a, valid, folds) - _fold_r(S, stats_b, valid, folds))
        diffs = np.concatenate(diffs)
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(diffs, [(1 - ci) / 2, 1 - (1 - ci) / 2]))
    return out
