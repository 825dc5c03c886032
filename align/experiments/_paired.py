"""The paired statistic of a metric at one layer pair: condition A − condition B on the same stimuli, with a
p-value and an interval, chosen by the metric's declaration (``Metric.paired_statistic``)."""

from __future__ import annotations

import numpy as np

STAT_COLUMNS = ("score", "score_a", "score_b", "p_value", "null_mean", "ci_low", "ci_high")


def peak_statistic(metric: str, xs_a, ys_a, xs_b, ys_b, i: int, j: int, direction: str, *, n_perm: int,
                   n_boot: int, ci: float, seed: int, preprocess: str | None = None) -> dict:
    """Condition A − condition B at layer pair (i, j) in one direction, with p-value and interval.

    Args:
      metric: a metric spec.
      xs_a, ys_a: the two models' layers under condition A; ``xs_b``, ``ys_b`` under condition B (same stimuli).
      i, j: the layer pair.
      direction: ``"symmetric"``, ``"x_to_y"`` or ``"y_to_x"``.
      n_perm, n_boot, ci, seed: condition swaps behind the two-sided p-value, bootstrap resamples behind the
        interval of coverage ``ci`` (0: none), and their seed.
      preprocess: applied to each of the four layers on its own first (``align.preprocess``).

    A metric with ``paired_statistic=None`` is recomputed under every swap and resample
    (``align.engine.paired_difference``). One with ``"heldout_ridge"`` (linear predictivity) is fitted once per
    condition and the draws act on its held-out predictions (``align.experiments.heldout_paired_difference``);
    ``pca(k)`` then goes to the ridge's own per-fold PCA (``Metric.fold_pca_kwarg``) and is refused when the metric
    has none (PCA fitted on held-out rows would leak).

    Returns:
      dict with ``score`` (A − B), ``score_a``, ``score_b``, ``p_value``, ``null_mean``, ``ci_low``, ``ci_high``
      (NaN where not computed) and ``n``.
    """
    from align.engine import paired_difference
    from align.engine import resolve_metric
    from align.preprocess import parse_preprocess

    m, kwargs = resolve_metric(metric)
    step = parse_preprocess(preprocess)
    if m.paired_statistic == "heldout_ridge":
        from align.experiments._heldout import heldout_paired_difference

        if step.name == "pca":
            if not m.fold_pca_kwarg:
                raise ValueError(f"preprocess {step.spec!r} with {metric}: the held-out peak statistic cannot fit "
                                 "PCA on training folds only for this metric; use another preprocess option")
            kwargs = {**kwargs, m.fold_pca_kwarg: step.k}
        xa, ya, xb, yb = xs_a[i], ys_a[j], xs_b[i], ys_b[j]
        if step.name != "pca":  # each layer of each condition on its own, as the engine does
            xa, xb = (step.apply(a, layer=f"x layer {i}") for a in (xa, xb))
            ya, yb = (step.apply(a, layer=f"y layer {j}") for a in (ya, yb))
        a, b = ((xa, ya), (xb, yb)) if direction == "x_to_y" else ((ya, xa), (yb, xb))
        return heldout_paired_difference(*a, *b, n_perm=n_perm, n_boot=n_boot, ci=ci, seed=seed,
                                         metric_kwargs=kwargs)
    grid = paired_difference(metric, [xs_a[i]], [ys_a[j]], [xs_b[i]], [ys_b[j]], n_perm=n_perm, n_boot=n_boot,
                             ci=ci, seed=seed, direction=None if direction == "symmetric" else direction,
                             preprocess=step.spec)
    row = grid.to_frame().iloc[0]
    return {k: float(row[k]) if k in row else np.nan for k in STAT_COLUMNS} | {"n": grid.n}
