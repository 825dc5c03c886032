"""A paired difference of two conditions' held-out prediction scores, with draws over the fixed predictions.

Given out-of-fold predictions ``P`` of targets ``Y`` under two conditions A and B on the same stimuli (e.g. linear
predictivity's cross-validated ridge predictions), the score of a set of rows is, per outer fold, the mean over
target columns of the Pearson r between predictions and targets over that fold's rows in the set, then the mean
over folds (one fold of every row: one r over all the rows). Draws reuse the predictions (no refit per draw):

- paired permutation: each stimulus's (prediction, target) rows of A and B swapped with probability 1/2; two-sided
  p-value (``align.stats.permutation_p``);
- bootstrap: stimuli resampled with replacement (the same rows for both conditions), the difference recomputed;
  percentile interval (``align.stats.percentile_interval``).

Both are conditional on the fitted predictions (they ignore the variability of refitting), the usual practice for
encoding models evaluated on held-out stimuli.
"""

from __future__ import annotations

import numpy as np

from align.stats._correlation import pearson_from_sums
from align.stats._folds import fold_masks
from align.stats._inference import percentile_interval
from align.stats._inference import permutation_p

_DRAWS_PER_STEP = 256


def _sums(S: np.ndarray, P: np.ndarray, Y: np.ndarray) -> tuple:
    """Weighted sums (Σw, Σw p, Σw y, Σw p y, Σw p², Σw y²) over rows, for each row of weights ``S [B, n]``."""
    return S.sum(axis=1, keepdims=True), S @ P, S @ Y, S @ (P * Y), S @ (P * P), S @ (Y * Y)


def _fold_scores(S: np.ndarray, P: np.ndarray, Y: np.ndarray, valid: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Score ``[B]`` of each row of weights ``S [B, n]``: per fold ``[F, n]``, the mean r over the ``valid``
    columns, then the mean over the folds a draw did not leave empty."""
    per_fold = []
    for m in folds:
        sums = _sums(S * m, P, Y)
        r = pearson_from_sums(*sums)[:, valid].mean(axis=1)
        per_fold.append(np.where(sums[0][:, 0] > 0, r, np.nan))
    per_fold = np.stack(per_fold)
    counted = ~np.isnan(per_fold)
    return np.where(counted, per_fold, 0.0).sum(axis=0) / np.maximum(counted.sum(axis=0), 1)


def _swapped_scores(S: np.ndarray, a: tuple, b: tuple, valid: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Score ``[B]`` of condition A with the rows where ``S [B, n]`` is 1 taken from condition B."""
    scores = []
    for m in folds:
        keep, swap = (1.0 - S) * m, S * m
        sums_a, sums_b = _sums(keep, *a), _sums(swap, *b)
        w = np.full((S.shape[0], 1), float(m.sum()))
        r = pearson_from_sums(w, *(x + y for x, y in zip(sums_a[1:], sums_b[1:])))
        scores.append(r[:, valid].mean(axis=1))
    return np.mean(scores, axis=0)


def heldout_difference(P_a, Y_a, P_b, Y_b, fold_ids: np.ndarray | None = None, *, n_perm: int = 1000,
                       n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """Held-out score of condition A minus condition B on the same stimuli, with a paired permutation p-value and a
    bootstrap interval.

    Args:
      P_a, Y_a: ``[n, q]`` out-of-fold predictions and targets under condition A.
      P_b, Y_b: the same stimuli under condition B.
      fold_ids: ``[n]`` outer fold of each stimulus (the score is the mean of per-fold scores); None: one score
        over all rows (pooled).
      n_perm: paired swaps for the two-sided p-value (0: none).
      n_boot: bootstrap resamples of stimuli for the interval of the difference (0: none).
      ci: interval coverage.
      seed: NumPy seed of the swaps, then the resamples.

    Returns:
      dict with ``score`` (A − B), ``score_a``, ``score_b``, ``p_value``, ``null_mean``, ``ci_low``, ``ci_high``
      (NaN where not computed) and ``n``.

    Raises:
      ValueError: the conditions differ in stimuli or target width, or every target column is constant.
    """
    Pa, Pb = np.asarray(P_a, np.float64), np.asarray(P_b, np.float64)
    Ya, Yb = np.asarray(Y_a, np.float64), np.asarray(Y_b, np.float64)
    n = len(Pa)
    if not (len(Ya) == len(Pb) == len(Yb) == n):
        raise ValueError(f"heldout_difference: conditions must have the same stimuli; got row counts {len(Pa)}, "
                         f"{len(Ya)}, {len(Pb)}, {len(Yb)}")
    if Ya.shape[1] != Yb.shape[1]:
        raise ValueError("heldout_difference: the targets of A and B must have the same width")
    valid = (np.ptp(Ya, axis=0) > 0) & (np.ptp(Yb, axis=0) > 0)
    if not valid.any():
        raise ValueError("heldout_difference: every target column is constant")
    folds = np.ones((1, n)) if fold_ids is None else fold_masks(np.asarray(fold_ids))
    ones = np.ones((1, n))
    score_a = float(_fold_scores(ones, Pa, Ya, valid, folds)[0])
    score_b = float(_fold_scores(ones, Pb, Yb, valid, folds)[0])
    out = {"score": score_a - score_b, "score_a": score_a, "score_b": score_b, "p_value": np.nan,
           "null_mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    rng = np.random.default_rng(seed)
    if n_perm:
        null = []
        for start in range(0, n_perm, _DRAWS_PER_STEP):
            S = (rng.random((min(_DRAWS_PER_STEP, n_perm - start), n)) < 0.5).astype(np.float64)
            null.append(_swapped_scores(S, (Pa, Ya), (Pb, Yb), valid, folds)
                        - _swapped_scores(S, (Pb, Yb), (Pa, Ya), valid, folds))
        null = np.concatenate(null)
        out["p_value"] = float(permutation_p(null, np.asarray(out["score"]), True, two_sided=True))
        out["null_mean"] = float(null.mean())
    if n_boot:
        diffs = []
        for start in range(0, n_boot, _DRAWS_PER_STEP):
            rows = rng.integers(0, n, size=(min(_DRAWS_PER_STEP, n_boot - start), n))
            S = np.zeros((len(rows), n))
            np.add.at(S, (np.repeat(np.arange(len(rows)), n), rows.ravel()), 1.0)
            diffs.append(_fold_scores(S, Pa, Ya, valid, folds) - _fold_scores(S, Pb, Yb, valid, folds))
        low, high = percentile_interval(np.concatenate(diffs), ci)
        out["ci_low"], out["ci_high"] = float(low), float(high)
    return out


def heldout_interval(P, Y, fold_ids: np.ndarray | None = None, *, n_boot: int = 1000, ci: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of one held-out prediction score, resampling stimuli over fixed predictions.

    The score is the one :func:`heldout_difference` uses (per outer fold, the mean over target columns of the
    Pearson r between predictions and targets; then the mean over folds). Resample b draws n stimuli with
    replacement (``np.random.default_rng(seed).integers(0, n, n)``, so every layer pair given the same seed sees
    the same stimuli); the predictions are not refitted, so copies of a stimulus never sit in a training and a
    held-out fold and the alpha choice is not fooled by duplicated rows (both bias a refit bootstrap of a
    cross-validated score: upward, then downward). The interval is conditional on the fitted predictions.

    Args:
      P, Y: ``[n, q]`` out-of-fold predictions and targets.
      fold_ids: ``[n]`` outer fold of each stimulus; None: one score over all rows (pooled).
      n_boot: resamples (>= 1).
      ci: coverage.
      seed: NumPy seed of the resamples.

    Returns:
      ``(low, high)``; NaN when every target column is constant.
    """
    P, Y = np.asarray(P, np.float64), np.asarray(Y, np.float64)
    n = len(P)
    if len(Y) != n or P.shape != Y.shape:
        raise ValueError(f"heldout_interval: predictions {P.shape} and targets {Y.shape} must have the same shape")
    if int(n_boot) < 1:
        raise ValueError(f"heldout_interval: n_boot must be a positive number of resamples, got {n_boot!r}")
    valid = np.ptp(Y, axis=0) > 0
    if not valid.any():
        return float("nan"), float("nan")
    folds = np.ones((1, n)) if fold_ids is None else fold_masks(np.asarray(fold_ids))
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_boot, _DRAWS_PER_STEP):
        rows = rng.integers(0, n, size=(min(_DRAWS_PER_STEP, n_boot - start), n))
        S = np.zeros((len(rows), n))
        np.add.at(S, (np.repeat(np.arange(len(rows)), n), rows.ravel()), 1.0)
        draws.append(_fold_scores(S, P, Y, valid, folds))
    low, high = percentile_interval(np.concatenate(draws), ci)
    return float(low), float(high)
