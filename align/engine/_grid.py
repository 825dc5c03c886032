"""The public grid functions: every (x layer, y layer) pair of two models (or of one model with itself) under one
metric, with optional permutation null and bootstrap interval.

They put the pieces together: the plan and the observed scores (:mod:`align.engine._pairwise`), the statistics
(:mod:`align.engine._stats`), constant layers scored NaN, and the metric's own check of its auxiliary outputs. This
module depends on both and neither depends on it, so the engine has no import cycle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from align.engine import _stats
from align.engine._pairwise import AUX_NAMES
from align.engine._pairwise import LayerGrid
from align.engine._pairwise import _grid_result
from align.engine._pairwise import _observed
from align.engine._pairwise import _plan
from align.engine._pairwise import _Plan
from align.metrics._validate import MetricInputError
from align.preprocess._steps import DEFAULT_PREPROCESS


def pairwise(metric, Xs, Ys, *, align_by_id: bool = False, direction: str | None = None,
             chunk_size: int | None = None, null: int = 0, ci: int = 0, ci_level: float = 0.95,
             stats_seed: int = 0, batch_size: int | None = None, batched: bool = True,
             constant_layers: str = "error", preprocess: str = DEFAULT_PREPROCESS, progress: bool | None = None,
             **kwargs) -> LayerGrid:
    """Score every (x layer, y layer) pair with one metric.

    Args:
      metric: a registered name (``"linear_cka"``), a spec string (``"rbf_cka(sigma_frac=0.5)"``) or a
        :class:`~align.metrics.Metric` (e.g. a custom probe).
      Xs: the x model's layers: a sequence of ``[n, d_l]`` arrays, a mapping layer name -> array, or an
        ``ActivationStore``. Widths may differ between layers.
      Ys: the y model's layers, rows paired with Xs by stimulus (same forms).
      align_by_id: when both sides are stores whose stimulus orders differ, compare the common stimuli instead of
        refusing.
      direction: for an asymmetric metric, ``"x_to_y"`` or ``"y_to_x"`` only (default both).
      chunk_size: layer pairs evaluated at once (vmapped) inside the compiled call; default the metric's
        ``grid_chunk`` (one pair for linear_predictivity), else one row of the grid (one x layer against every y layer). Lower it to bound memory for heavy metrics and large n (e.g.
        linear_predictivity holds about ``chunk * n * q`` floats per fold and alpha step).
      null: number of permutations for a permutation p-value (see :func:`align.engine.permutation_null`); 0: none.
      ci: number of bootstrap resamples for a confidence interval (see :func:`align.engine.bootstrap_ci`); 0: none.
      ci_level: coverage of the bootstrap interval.
      stats_seed: seed of the permutations and resamples (a metric's own ``seed``, e.g. linear_predictivity's fold
        shuffling, is a metric keyword).
      batch_size: permutations or resamples per compiled step (default 8).
      batched: False computes pair by pair in a Python loop (slow fallback for compares that cannot be vmapped).
      constant_layers: what to do with a layer whose rows are all identical (no metric is defined on it; e.g. a
        ViT's CLS token at the embedding layer is the same for every image): ``"error"`` (default) raises a
        MetricInputError naming it; ``"skip"`` scores it as NaN and lists it in ``constant_x``/``constant_y``.
      preprocess: per-layer preprocessing applied to every layer of both sides after input validation and before
        the metric (and before any permutation or resample, which re-use the preprocessed layers): ``"none"``
        (default, ``align.preprocess.DEFAULT_PREPROCESS``), ``"center"``, ``"zscore"``, ``"clip(q=0.95)"``,
        ``"l2"`` or ``"pca(k)"``; see :mod:`align.preprocess` for definitions and where each is fitted. For a metric
        with held-out rows (``Metric.fold_pca_kwarg``, e.g. linear predictivity), ``pca(k)`` is fitted on each
        training fold by the metric itself. Recorded as ``LayerGrid.preprocess``.
      progress: show a progress bar with the time left (scoring, permutations, resamples) on standard error;
        None (default): when standard error is a terminal or ``ALIGN_PROGRESS=1`` (see ``align.engine._progress``).
      **kwargs: the metric's keyword arguments (override those of a spec string).

    Returns:
      A :class:`LayerGrid`: ``scores[i, j]`` for x layer i and y layer j (a dict of two such arrays,
      ``"x_to_y"`` and ``"y_to_x"``, for an asymmetric metric), plus ``p_value``/``null_mean``/``null_std`` and
      ``ci_low``/``ci_high`` in ``.stats`` when requested, and any per-pair outputs the metric reports beside its
      score (linear predictivity: ``alpha_median``, ``alpha_low_share``, ``alpha_high_share``).

    Raises:
      MetricInputError: a layer with non-finite values, too few stimuli, or row counts that differ.
      StoreMismatchError: two stores with different stimulus orders and ``align_by_id=False``.
      ValueError: unknown metric or keyword argument, bad hyper-parameter, bad preprocessing spec (e.g.
        ``pca(k)`` with k above a layer's min(n, d); ``align.preprocess.PreprocessError``).
    """
    plan = _plan(metric, Xs, Ys, kwargs=kwargs, align_by_id=align_by_id, direction=direction,
                 chunk_size=chunk_size, preprocess=preprocess)
    constant = _constant_layers(plan, constant_layers)
    grid = _with_stats(plan, null=null, ci=ci, ci_level=ci_level, seed=stats_seed, batch_size=batch_size,
                       batched=batched, progress=progress)
    return _checked(plan, _mask_constant(grid, *constant))


def pairwise_within(metric, Xs, *, direction: str | None = None, chunk_size: int | None = None, null: int = 0,
                    ci: int = 0, ci_level: float = 0.95, stats_seed: int = 0, batch_size: int | None = None,
                    batched: bool = True, constant_layers: str = "error", preprocess: str = DEFAULT_PREPROCESS,
                    progress: bool | None = None, **kwargs) -> LayerGrid:
    """Every pair of layers of ONE model (``[L, L]``), preparing each layer once.

    Same arguments as :func:`pairwise` without ``Ys``. For an asymmetric metric ``y_to_x`` is the transpose of
    ``x_to_y`` (the same numbers; nothing is filled in by symmetry).
    """
    plan = _plan(metric, Xs, None, kwargs=kwargs, direction=direction, chunk_size=chunk_size, within=True,
                 preprocess=preprocess)
    constant = _constant_layers(plan, constant_layers)
    grid = _with_stats(plan, null=null, ci=ci, ci_level=ci_level, seed=stats_seed, batch_size=batch_size,
                       batched=batched, progress=progress)
    return _checked(plan, _mask_constant(grid, *constant))


def _constant_layers(plan: _Plan, mode: str) -> tuple[list[int], list[int]]:
    """Indices of the x and y layers whose rows are all identical; raises for ``mode="error"``."""
    if mode not in ("error", "skip"):
        raise ValueError(f"constant_layers must be 'error' or 'skip', got {mode!r}")
    found = []
    for side, label in ((plan.xs, "Xs"), (plan.ys, "Ys")):
        idx = [i for i, a in enumerate(side.arrays) if not np.any(a != a[:1])]
        if idx and mode == "error":
            names = [side.names[i] for i in idx]
            raise MetricInputError(
                f"layer(s) {names} of {label} are constant: every stimulus has the same activation vector, so no "
                "alignment is defined on them (e.g. a ViT's CLS token at the embedding layer, before any attention); "
                "drop them or pass constant_layers='skip' to score them as NaN")
        found.append(idx)
    return found[0], found[1]


def _checked(plan: _Plan, grid: LayerGrid) -> LayerGrid:
    """``grid``, after the metric's ``check_outputs`` saw its auxiliary outputs (constant layers already NaN, so
    they raise no warning)."""
    aux = {name: {d: per[name] for d, per in grid.stats.items() if name in per} for name in AUX_NAMES}
    aux = {name: per for name, per in aux.items() if per}
    if aux and plan.metric.check_outputs is not None:
        plan.metric.check_outputs(aux, plan.xs.names, plan.ys.names, plan.kw.merged)
    return grid


def _mask_constant(grid: LayerGrid, cx: list[int], cy: list[int]) -> LayerGrid:
    """Set every score and statistic involving a constant layer to NaN and record those layers on the grid."""
    if not cx and not cy:
        return grid

    def masked(a):
        a = np.array(a, dtype=float, copy=True)
        a[cx, ...] = np.nan
        a[:, cy, ...] = np.nan
        return a

    scores = {d: masked(v) for d, v in grid.scores.items()} if isinstance(grid.scores, dict) else masked(grid.scores)
    stats = {d: {k: masked(v) for k, v in per.items()} for d, per in grid.stats.items()}
    return dataclasses.replace(grid, scores=scores, stats=stats,
                               constant_x=tuple(grid.layers_x[i] for i in cx),
                               constant_y=tuple(grid.layers_y[i] for i in cy))


def _with_stats(plan: _Plan, *, null, ci, ci_level, seed, batch_size, batched, progress=None) -> LayerGrid:
    aux: dict = {}
    scores = _observed(plan, batched=batched, aux=aux, progress=progress)
    stats: dict[str, dict[str, np.ndarray]] = {d: {} for d in scores}
    for name, per_direction in aux.items():
        for d, grid in per_direction.items():
            stats[d][name] = grid
    if null:
        for d, s in _stats.null_summary(plan, scores, int(null), seed, batch_size, progress).items():
            stats[d].update(s)
    if ci:
        for d, s in _stats.bootstrap_summary(plan, int(ci), ci_level, seed, batch_size, progress).items():
            stats[d].update(s)
    return _grid_result(plan, scores, stats, n_perm=int(null or 0), n_boot=int(ci or 0), ci_level=ci_level)


def permutation_null(metric, Xs, Ys, n_perm: int = 1000, seed: int = 0, *, align_by_id: bool = False,
                     direction: str | None = None, chunk_size: int | None = None, batch_size: int | None = None,
                     progress: bool | None = None, **kwargs) -> LayerGrid:
    """Permutation test of every layer pair: how often a random re-pairing of stimuli scores as high.

    Args:
      metric, Xs, Ys, align_by_id, direction, chunk_size, progress: as :func:`align.engine.pairwise`.
      n_perm: number of random permutations of the stimulus pairing (the rows of Y; for an asymmetric metric the
        rows of each direction's target), the same permutations for every layer pair.
      seed: NumPy seed of the permutations. (A metric's own ``seed`` -- linear_predictivity's fold shuffling --
        goes in the spec string, e.g. ``"linear_predictivity(seed=1)"``.)
      batch_size: permutations per compiled step (vmapped; memory grows with it). Default 8.
      **kwargs: the metric's keyword arguments.

    Returns:
      A :class:`LayerGrid` with the observed scores and, per direction, ``p_value`` (one-sided,
      ``(1 + #{null >= observed}) / (1 + n_perm)``), ``null_mean`` and ``null_std`` in ``.stats``.
    """
    return pairwise(metric, Xs, Ys, align_by_id=align_by_id, direction=direction, chunk_size=chunk_size,
                    null=n_perm, stats_seed=seed, batch_size=batch_size, progress=progress, **kwargs)


def bootstrap_ci(metric, Xs, Ys, n_boot: int = 1000, ci: float = 0.95, seed: int = 0, *, align_by_id: bool = False,
                 direction: str | None = None, chunk_size: int | None = None, batch_size: int | None = None,
                 progress: bool | None = None, **kwargs) -> LayerGrid:
    """Bootstrap confidence interval of every layer pair's score (stimuli resampled with replacement).

    Args:
      metric, Xs, Ys, align_by_id, direction, chunk_size, progress: as :func:`align.engine.pairwise`.
      n_boot: number of resamples (the same resampled rows for X and Y, and for every layer pair).
      ci: coverage of the percentile interval.
      seed: NumPy seed of the resamples.
      batch_size: resamples per compiled step. Default 8.
      **kwargs: the metric's keyword arguments.

    Returns:
      A :class:`LayerGrid` with the observed scores and ``ci_low``/``ci_high`` per direction in ``.stats``.
      Duplicated stimuli bias kNN metrics and cross-validated ones (see the module docstring).
    """
    return pairwise(metric, Xs, Ys, align_by_id=align_by_id, direction=direction, chunk_size=chunk_size,
                    ci=n_boot, ci_level=ci, stats_seed=seed, batch_size=batch_size, progress=progress, **kwargs)
