"""Paired statistics of linear predictivity on its held-out predictions (no refit per draw).

Linear predictivity refits a cross-validated ridge model for every resample, which makes an exact permutation or
bootstrap over stimuli cost one ridge fit per draw. Here the out-of-fold predictions of each condition are computed
once (``align.metrics.ridge_cv_predict``, the same folds and alphas as the metric) and the draws act on them
(``align.stats.heldout_difference``). This is the paired statistic of every metric that declares
``paired_statistic="heldout_ridge"``; ``align.engine.paired_difference`` (refitting per draw) is that of the others.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

_PREDICTIONS: OrderedDict = OrderedDict()  # a few recent out-of-fold predictions, keyed by content (see _predict)
_CACHE_SIZE = 8


def _predict(X, Y, ridge_kwargs: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Out-of-fold predictions ``[n, q]`` of Y from X and the fold ids of the score
    (``align.metrics.heldout_predictions``), memoised by content: a condition compared with several others (k = 1
    against every k) is fitted once."""
    from align.metrics import heldout_predictions

    X, Y = np.ascontiguousarray(X, np.float32), np.ascontiguousarray(Y, np.float32)
    h = hashlib.sha256()
    for a in (X, Y):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps(ridge_kwargs, sort_keys=True, default=str).encode())
    key = h.hexdigest()
    if key not in _PREDICTIONS:
        _PREDICTIONS[key] = heldout_predictions(X, Y, **ridge_kwargs)
        while len(_PREDICTIONS) > _CACHE_SIZE:
            _PREDICTIONS.popitem(last=False)
    return _PREDICTIONS[key]


def heldout_paired_difference(X_a, Y_a, X_b, Y_b, *, n_perm: int = 1000, n_boot: int = 1000, ci: float = 0.95,
                              seed: int = 0, metric_kwargs: Mapping[str, Any] | None = None) -> dict:
    """Linear predictivity (X -> Y) of condition A minus condition B on the same stimuli, with held-out statistics.

    Args:
      X_a, Y_a: ``[n, p]`` predictors and ``[n, q]`` targets under condition A (e.g. perturbed images).
      X_b, Y_b: the same stimuli under condition B (e.g. the originals); widths may differ from A's.
      n_perm: paired swaps for the two-sided p-value (0: none).
      n_boot: bootstrap resamples of stimuli for the interval of the difference (0: none).
      ci: interval coverage.
      seed: NumPy seed of the swaps and resamples.
      metric_kwargs: arguments of ``linear_predictivity`` (alphas, folds, seed, alpha_selection, cv_score, ...).

    Returns:
      dict with ``score`` (A − B), ``score_a``, ``score_b`` (each the metric's own score), ``p_value``,
      ``null_mean``, ``ci_low``, ``ci_high`` (NaN where not computed) and ``n``.
    """
    from align.stats import heldout_difference

    kwargs = dict(metric_kwargs or {})
    n = len(X_a)
    if not (len(Y_a) == len(X_b) == len(Y_b) == n):
        raise ValueError(f"heldout_paired_difference: conditions must have the same stimuli; got row counts "
                         f"{len(X_a)}, {len(Y_a)}, {len(X_b)}, {len(Y_b)}")
    if np.shape(Y_a)[1] != np.shape(Y_b)[1]:
        raise ValueError("heldout_paired_difference: the targets of A and B must have the same width")
    (P_a, fold_ids), (P_b, _) = _predict(X_a, Y_a, kwargs), _predict(X_b, Y_b, kwargs)  # same n, same folds
    return heldout_difference(P_a, Y_a, P_b, Y_b, fold_ids,
                              n_perm=n_perm, n_boot=n_boot, ci=ci, seed=seed)
