"""Bootstrap intervals of a metric scored on held-out predictions (``Metric.paired_statistic = "heldout_ridge"``:
linear predictivity), resampling stimuli over the fixed out-of-fold predictions of every layer pair.

Refitting a cross-validated ridge on each resample is biased both ways: copies of a stimulus in a training and a
held-out fold reward memorisation (upward), and with the folds grouped by stimulus the alpha choice (leave-one-out
or GCV over the training rows) still sees the copies as distinct rows, picks too weak a penalty and the held-out
score collapses (downward: on COCO, DINOv2-S layer 9 -> MiniLM layer 6, score 0.258, refit interval [0.10, 0.14]).
So these metrics take the interval the perturbation and aggregation experiments already use for them
(``align.stats.heldout_interval``): the predictions of the observed fit, resampled. It is conditional on the fitted
predictions (it leaves out the variability of refitting), the usual practice for encoding models scored on held-out
stimuli.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from align.engine._plan import Plan


def heldout_intervals(plan: Plan, n_boot: int, ci: float, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per direction, ``ci_low``/``ci_high`` ``[n_x, n_y]`` of every layer pair (NaN where a pair cannot be fitted,
    e.g. a constant layer, which the grid masks anyway)."""
    from align.metrics import heldout_predictions
    from align.metrics import ridge_cv_predict
    from align.stats import heldout_interval

    allowed = set(inspect.signature(ridge_cv_predict).parameters) - {"X", "Y"}
    kwargs = {k: v for k, v in plan.kw.merged.items() if k in allowed}
    xs, ys = plan.xs.arrays, plan.ys.arrays
    out = {}
    for d in plan.directions:
        low = np.full((len(xs), len(ys)), np.nan)
        high = np.full_like(low, np.nan)
        for i, x in enumerate(xs):
            for j, y in enumerate(ys):
                src, tgt = (x, y) if d == "x_to_y" else (y, x)
                try:
                    with warnings.catch_warnings():  # the observed pass already warned about the alpha grid
                        warnings.simplefilter("ignore")
                        pred, fold_ids = heldout_predictions(src, tgt, **kwargs)
                except ValueError:
                    continue
                low[i, j], high[i, j] = heldout_interval(pred, tgt, fold_ids, n_boot=n_boot, ci=ci, seed=seed)
        out[d] = {"ci_low": low, "ci_high": high}
    return out
