"""Paired differences: the change of every layer pair's score between two conditions on the same stimuli (e.g.
original vs perturbed images), with a condition-swap permutation null and a bootstrap interval.

The difference A − B per layer pair; its null swaps the A and B activations of each stimulus with probability 1/2
(all layers of both sides together), two-sided ``p = (1 + #{|null| >= |observed|}) / (1 + n_perm)``, with the
Benjamini-Hochberg and max-statistic adjustments over each direction's cells (two-sided, on ``|difference|``);
optionally a bootstrap interval of the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from align.engine._grid import check_counts
from align.engine._layergrid import LayerGrid
from align.engine._observed import grid_result
from align.engine._observed import observed
from align.engine._plan import make_plan
from align.engine._stats import bootstrap_rows
from align.engine._stats import condition_swaps
from align.engine._stats import difference_distribution
from align.engine._stats import interval_summary
from align.engine._stats import null_summary
from align.preprocess import DEFAULT_PREPROCESS


def paired_difference(metric, Xs_a, Ys_a, Xs_b, Ys_b, *, n_perm: int = 1000, n_boot: int = 0, ci: float = 0.95,
                      seed: int = 0, metric_kwargs: Mapping[str, Any] | None = None, direction: str | None = None,
                      chunk_size: int | None = None, batch_size: int | None = None,
                      preprocess: str = DEFAULT_PREPROCESS, progress: bool | None = None,
                      devices: int | str | None = None) -> LayerGrid:
    """Difference of scores between condition A and condition B on the same stimuli, per layer pair.

    Typical use: the same two models on original vs perturbed images. Rows of A and B must be the same stimuli in
    the same order, and the layers of A and B the same (count and widths), because the null swaps the A and B
    activations of each stimulus.

    Args:
      metric: as :func:`align.engine.pairwise`.
      Xs_a, Ys_a: layers of the two models under condition A.
      Xs_b, Ys_b: the same layers under condition B.
      n_perm: condition swaps for two-sided p-values (0: none).
      n_boot: bootstrap resamples for an interval of the difference (0: none).
      ci: coverage of that interval, in (0, 1).
      seed: NumPy seed of the swaps (the resamples use ``seed + 1``).
      metric_kwargs, direction, chunk_size, batch_size, preprocess, progress, devices: as
        :func:`align.engine.pairwise` (the preprocessing is fitted on each condition's layers separately; with
        several devices the swaps and resamples are sharded).

    Returns:
      A :class:`LayerGrid` with ``quantity="difference"``: scores are A − B; ``.stats`` holds ``score_a``,
      ``score_b`` and, when requested, ``p_value`` (two-sided), ``p_bh``, ``p_maxstat``, ``null_mean``,
      ``null_std`` and ``ci_low``/``ci_high`` per direction.

    Raises:
      ValueError: A and B differ in stimuli count, layer count or widths.
    """
    n_perm, n_boot, ci = check_counts(n_perm, n_boot, ci)
    plan_a, plan_b = (make_plan(metric, xs, ys, metric_kwargs=metric_kwargs, direction=direction,
                                chunk_size=chunk_size, preprocess=preprocess, devices=devices)
                      for xs, ys in ((Xs_a, Ys_a), (Xs_b, Ys_b)))
    for side in ("xs", "ys"):
        wa = [a.shape for a in getattr(plan_a, side).arrays]
        wb = [a.shape for a in getattr(plan_b, side).arrays]
        if wa != wb:
            raise ValueError(
                f"paired_difference: the {side[0].upper()} layers of conditions A and B differ in shape ({wa} vs {wb}); "
                "A and B must be the same models on the same stimuli under two conditions")
    score_a, score_b = observed(plan_a), observed(plan_b)
    diff = {d: score_a[d] - score_b[d] for d in score_a}
    stats = {d: {"score_a": score_a[d], "score_b": score_b[d]} for d in diff}
    if n_perm:
        swaps = condition_swaps(plan_a.n, n_perm, seed)
        null = difference_distribution(plan_a, plan_b, swaps, "swap", batch_size, progress)
        for d, s in null_summary(null, diff, True, two_sided=True).items():
            stats[d].update(s)
    if n_boot:
        rows = bootstrap_rows(plan_a.n, n_boot, seed + 1)
        dist = difference_distribution(plan_a, plan_b, rows, "boot", batch_size, progress)
        for d, s in interval_summary(dist, ci).items():
            stats[d].update(s)
    return grid_result(plan_a, diff, stats, quantity="difference", n_perm=n_perm, n_boot=n_boot, ci_level=ci)
