"""The public grid functions: every (x layer, y layer) pair of two models (or of one model with itself) under one
metric, with optional permutation null (per-cell, Benjamini-Hochberg and max-statistic p-values) and bootstrap
interval.

They put the pieces together: the plan (:mod:`align.engine._plan`), the observed scores
(:mod:`align.engine._observed`), the distributions (:mod:`align.engine._stats`), constant layers scored NaN, and the
metric's own check of its auxiliary outputs. Engine options are keyword arguments of these functions; the metric's
own keyword arguments go in ``metric_kwargs`` (or in a spec string such as ``"rbf_cka(sigma_frac=0.5)"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from align.engine._heldout_ci import heldout_intervals
from align.engine._layergrid import AUX_NAMES
from align.engine._layergrid import LayerGrid
from align.engine._observed import grid_result
from align.engine._observed import observed
from align.engine._plan import Plan
from align.engine._plan import make_plan
from align.engine._stats import bootstrap_distribution
from align.engine._stats import bootstrap_rows
from align.engine._stats import interval_summary
from align.engine._stats import null_distribution
from align.engine._stats import null_summary
from align.engine._stats import permutations
from align.metrics import MetricInputError
from align.preprocess import DEFAULT_PREPROCESS


def pairwise(metric, Xs, Ys, *, metric_kwargs: Mapping[str, Any] | None = None, n_perm: int = 0, n_boot: int = 0,
             ci: float = 0.95, seed: int = 0, align_by_id: bool = False, direction: str | None = None,
             chunk_size: int | None = None, batch_size: int | None = None, batched: bool = True,
             constant_layers: str = "error", preprocess: str = DEFAULT_PREPROCESS,
             progress: bool | None = None, devices: int | str | None = None) -> LayerGrid:
    """Score every (x layer, y layer) pair with one metric.

    Args:
      metric: a registered name (``"linear_cka"``), a spec string (``"rbf_cka(sigma_frac=0.5)"``) or a
        :class:`~align.metrics.Metric` (e.g. a custom probe).
      Xs: the x model's layers: a sequence of ``[n, d_l]`` arrays, a mapping layer name -> array, or an
        ``ActivationStore``. Widths may differ between layers.
      Ys: the y model's layers, rows paired with Xs by stimulus (same forms).
      metric_kwargs: the metric's keyword arguments, e.g. ``{"sigma_frac": 0.5}`` (override those of a spec
        string). A name the metric does not take is a ValueError listing the ones it does. The metric's own seed
        (linear predictivity's fold shuffling) is ``metric_kwargs={"seed": ...}``, not ``seed``.
      n_perm: permutations of the stimulus pairing for permutation p-values (see
        :func:`align.engine.permutation_null`); 0: none.
      n_boot: bootstrap resamples of the stimuli for a percentile interval (see :func:`align.engine.bootstrap_ci`);
        0: none.
      ci: coverage of the bootstrap interval, in (0, 1).
      seed: NumPy seed of the permutations and resamples.
      align_by_id: when both sides are stores whose stimulus orders differ, compare the common stimuli instead of
        refusing.
      direction: for an asymmetric metric, ``"x_to_y"`` or ``"y_to_x"`` only (default both).
      chunk_size: layer pairs evaluated at once (vmapped) inside the compiled call; default the metric's
        ``grid_chunk`` (one pair for linear_predictivity), else one row of the grid (one x layer against every y
        layer). Lower it to bound memory for heavy metrics and large n (e.g. linear_predictivity holds about
        ``chunk * n * q`` floats per fold and alpha step).
      batch_size: permutations or resamples per compiled step (default 8).
      batched: False computes pair by pair in a Python loop (slow fallback for compares that cannot be vmapped).
      constant_layers: what to do with a layer whose rows are all identical (no metric is defined on it; e.g. a
        ViT's CLS token at the embedding layer is the same for every image): ``"error"`` (default) raises a
        MetricInputError naming it; ``"skip"`` scores it as NaN (every statistic too; its cells take no part in
        ``p_bh``/``p_maxstat``) and lists it in ``constant_x``/``constant_y``.
      preprocess: per-layer preprocessing applied to every layer of both sides after input validation and before
        the metric (and before any permutation or resample, which re-use the preprocessed layers): ``"none"``
        (default, ``align.preprocess.DEFAULT_PREPROCESS``), ``"center"``, ``"zscore"``, ``"clip(q=0.95)"``,
        ``"l2"`` or ``"pca(k)"``; see :mod:`align.preprocess` for definitions and where each is fitted. For a metric
        with held-out rows (``Metric.fold_pca_kwarg``, e.g. linear predictivity), ``pca(k)`` is fitted on each
        training fold by the metric itself. Recorded as ``LayerGrid.preprocess``.
      progress: show a progress bar with the time left (scoring, permutations, resamples) on standard error;
        None (default): when standard error is a terminal or ``ALIGN_PROGRESS=1`` (see ``align.engine._progress``).
      devices: local JAX devices to spread the grid over: None or 1 (default: one device, the unsharded path), an
        integer N (the first N of ``jax.local_devices()``) or ``"all"``. Layer preparation is split over the
        devices, the pair comparisons sharded along the pairs axis and permutation/bootstrap draws along the draws
        axis (``jax.shard_map`` over a one-axis mesh); results equal the one-device run up to float32 rounding.

    Returns:
      A :class:`LayerGrid`: ``scores[direction][i, j]`` for x layer i and y layer j (direction ``"symmetric"``, or
      ``"x_to_y"`` and ``"y_to_x"`` for an asymmetric metric); with ``n_perm``, ``p_value``, ``p_bh``,
      ``p_maxstat``, ``null_mean``, ``null_std`` in ``.stats[direction]``; with ``n_boot``, ``ci_low``/``ci_high``;
      and any per-pair outputs the metric reports beside its score (linear predictivity: ``alpha_median``,
      ``alpha_low_share``, ``alpha_high_share``).

    Raises:
      MetricInputError: a layer with non-finite values, too few stimuli, or row counts that differ.
      StoreMismatchError: two stores with different stimulus orders and ``align_by_id=False``.
      ValueError: unknown metric or keyword argument, bad hyper-parameter, ``ci`` outside (0, 1), a negative count,
        bad preprocessing spec (e.g. ``pca(k)`` with k above a layer's min(n, d);
        ``align.preprocess.PreprocessError``), ``devices`` above the number of local devices (before any work).
    """
    return _score_grid(metric, Xs, Ys, within=False, metric_kwargs=metric_kwargs, n_perm=n_perm, n_boot=n_boot,
                       ci=ci, seed=seed, align_by_id=align_by_id, direction=direction, chunk_size=chunk_size,
                       batch_size=batch_size, batched=batched, constant_layers=constant_layers,
                       preprocess=preprocess, progress=progress, devices=devices)


def pairwise_within(metric, Xs, *, metric_kwargs: Mapping[str, Any] | None = None, n_perm: int = 0, n_boot: int = 0,
                    ci: float = 0.95, seed: int = 0, direction: str | None = None, chunk_size: int | None = None,
                    batch_size: int | None = None, batched: bool = True, constant_layers: str = "error",
                    preprocess: str = DEFAULT_PREPROCESS, progress: bool | None = None,
                    devices: int | str | None = None) -> LayerGrid:
    """Every pair of layers of ONE model (``[L, L]``), preparing each layer once.

    Same arguments as :func:`pairwise` without ``Ys`` and ``align_by_id`` (the same function with the model against
    itself). For an asymmetric metric ``y_to_x`` is the transpose of ``x_to_y`` (the same numbers; nothing is
    filled in by symmetry). ``p_bh`` and ``p_maxstat`` are taken over every cell of the ``[L, L]`` grid, diagonal
    and both triangles included.
    """
    return _score_grid(metric, Xs, None, within=True, metric_kwargs=metric_kwargs, n_perm=n_perm, n_boot=n_boot,
                       ci=ci, seed=seed, align_by_id=False, direction=direction, chunk_size=chunk_size,
                       batch_size=batch_size, batched=batched, constant_layers=constant_layers,
                       preprocess=preprocess, progress=progress, devices=devices)


def permutation_null(metric, Xs, Ys, *, n_perm: int = 1000, seed: int = 0,
                     metric_kwargs: Mapping[str, Any] | None = None, align_by_id: bool = False,
                     direction: str | None = None, chunk_size: int | None = None, batch_size: int | None = None,
                     constant_layers: str = "error", preprocess: str = DEFAULT_PREPROCESS,
                     progress: bool | None = None, return_null: bool = False, devices: int | str | None = None):
    """Permutation test of every layer pair: how often a random re-pairing of stimuli scores as high.

    Args:
      metric, Xs, Ys, metric_kwargs, align_by_id, direction, chunk_size, constant_layers, preprocess, progress,
        devices: as :func:`align.engine.pairwise` (with several devices the permutations are sharded).
      n_perm: number of random permutations of the stimulus pairing (the rows of Y; for an asymmetric metric the
        rows of each direction's target), the same permutations for every layer pair.
      seed: NumPy seed of the permutations: permutation k re-orders the rows by
        ``np.random.default_rng(seed).permuted(np.tile(np.arange(n), (n_perm, 1)), axis=1)[k]``. (A metric's own
        ``seed`` -- linear_predictivity's fold shuffling -- goes in ``metric_kwargs``.)
      batch_size: permutations per compiled step (vmapped; memory grows with it). Default 8.
      return_null: also return the null samples.

    Returns:
      A :class:`LayerGrid` with the observed scores and, per direction in ``.stats``: ``p_value`` (one-sided,
      ``(1 + #{null >= observed}) / (1 + n_perm)``, ``<=`` for distances), ``p_bh`` (Benjamini-Hochberg adjusted
      over the direction's cells), ``p_maxstat`` (family-wise: the max, for distances the min, over the direction's
      cells of each permutation's null, compared with each cell), ``null_mean`` and ``null_std``
      (:mod:`align.stats`). With ``return_null``, ``(grid, null)`` where ``null`` is ``{direction: [n_perm, Lx,
      Ly]}``, the statistic of every cell under each permutation (NaN at constant layers), from which every p above
      is computed.
    """
    null: dict = {}
    grid = _score_grid(metric, Xs, Ys, within=False, metric_kwargs=metric_kwargs, n_perm=n_perm, n_boot=0,
                       ci=0.95, seed=seed, align_by_id=align_by_id, direction=direction, chunk_size=chunk_size,
                       batch_size=batch_size, batched=True, constant_layers=constant_layers, preprocess=preprocess,
                       progress=progress, null_out=null, devices=devices)
    return (grid, null) if return_null else grid


def bootstrap_ci(metric, Xs, Ys, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                 metric_kwargs: Mapping[str, Any] | None = None, align_by_id: bool = False,
                 direction: str | None = None, chunk_size: int | None = None, batch_size: int | None = None,
                 constant_layers: str = "error", preprocess: str = DEFAULT_PREPROCESS,
                 progress: bool | None = None, devices: int | str | None = None) -> LayerGrid:
    """Bootstrap confidence interval of every layer pair's score (stimuli resampled with replacement).

    Args:
      metric, Xs, Ys, metric_kwargs, align_by_id, direction, chunk_size, constant_layers, preprocess, progress,
        devices: as :func:`align.engine.pairwise` (with several devices the resamples are sharded).
      n_boot: number of resamples (the same resampled rows for X and Y, and for every layer pair).
      ci: coverage of the percentile interval, in (0, 1).
      seed: NumPy seed of the resamples.
      batch_size: resamples per compiled step. Default 8.

    Returns:
      A :class:`LayerGrid` with the observed scores and ``ci_low``/``ci_high`` per direction in ``.stats``.
      Duplicated stimuli bias kNN metrics and cross-validated ones (see :mod:`align.engine._stats`).
    """
    return _score_grid(metric, Xs, Ys, within=False, metric_kwargs=metric_kwargs, n_perm=0, n_boot=n_boot, ci=ci,
                       seed=seed, align_by_id=align_by_id, direction=direction, chunk_size=chunk_size,
                       batch_size=batch_size, batched=True, constant_layers=constant_layers, preprocess=preprocess,
                       progress=progress, devices=devices)


def check_counts(n_perm, n_boot, ci) -> tuple[int, int, float]:
    """``(n_perm, n_boot, ci)`` checked: non-negative integer counts, ``ci`` a coverage level in (0, 1)."""
    for name, v in (("n_perm", n_perm), ("n_boot", n_boot)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0 (0: none), got {v!r}")
    if isinstance(ci, bool) or not isinstance(ci, (float, int, np.floating, np.integer)) or not 0.0 < ci < 1.0:
        raise ValueError(f"ci is the coverage of the bootstrap interval, in (0, 1) (e.g. 0.95), got {ci!r}; the "
                         "number of resamples is n_boot")
    return int(n_perm), int(n_boot), float(ci)


def _score_grid(metric, Xs, Ys, *, within, metric_kwargs, n_perm, n_boot, ci, seed, align_by_id, direction,
                chunk_size, batch_size, batched, constant_layers, preprocess, progress, null_out=None,
                devices=None) -> LayerGrid:
    """The one body of :func:`pairwise` (``within=False``) and :func:`pairwise_within` (``within=True``)."""
    n_perm, n_boot, ci = check_counts(n_perm, n_boot, ci)
    plan = make_plan(metric, Xs, Ys, metric_kwargs=metric_kwargs, align_by_id=align_by_id, direction=direction,
                     chunk_size=chunk_size, within=within, preprocess=preprocess, devices=devices)
    cx, cy = _constant_layers(plan, constant_layers)
    aux: dict = {}
    scores = {d: _masked(v, cx, cy) for d, v in observed(plan, batched=batched, aux=aux, progress=progress).items()}
    stats: dict[str, dict[str, np.ndarray]] = {d: {} for d in scores}
    for name, per_direction in aux.items():
        for d, grid in per_direction.items():
            stats[d][name] = grid
    if n_perm:
        null = null_distribution(plan, permutations(plan.n, n_perm, seed), batch_size, progress)
        null = {d: _masked(v, cx, cy) for d, v in null.items()}  # constant cells take no part in p_bh, p_maxstat
        for d, s in null_summary(null, scores, plan.metric.higher_is_more_aligned).items():
            stats[d].update(s)
        if null_out is not None:
            null_out.update(null)
    if n_boot and plan.metric.paired_statistic == "heldout_ridge":  # resample the held-out predictions, no refit
        for d, s in heldout_intervals(plan, n_boot, ci, seed).items():
            stats[d].update(s)
    elif n_boot:
        dist = bootstrap_distribution(plan, bootstrap_rows(plan.n, n_boot, seed), batch_size, progress)
        for d, s in interval_summary(dist, ci).items():
            stats[d].update(s)
    grid = grid_result(plan, scores, stats, n_perm=n_perm, n_boot=n_boot, ci_level=ci)
    return _checked(plan, _mask_constant(grid, cx, cy))


def _constant_layers(plan: Plan, mode: str) -> tuple[list[int], list[int]]:
    """Indices of the x and y layers whose rows are all identical; raises for ``mode="error"``."""
    if mode not in ("error", "skip"):
        raise ValueError(f"constant_layers must be 'error' or 'skip', got {mode!r}")
    found = []
    for side, label in ((plan.xs, "Xs"), (plan.ys, "Ys")):
        idx = [i for i, a in enumerate(side.arrays) if not np.any(a != a[:1])]
        if idx and mode == "error":
            raise constant_layer_error([side.names[i] for i in idx], label)
        found.append(idx)
    return found[0], found[1]


def constant_layer_error(names: list[str], label: str) -> MetricInputError:
    """The error for constant layers ``names`` of one side (``label``, e.g. ``"Xs"`` or a store's path)."""
    return MetricInputError(
        f"layer(s) {names} of {label} are constant: every stimulus has the same activation vector, so no alignment "
        "is defined on them (e.g. a ViT's CLS token at the embedding layer, before any attention); drop them or pass "
        "constant_layers='skip' to score them as NaN")


def _checked(plan: Plan, grid: LayerGrid) -> LayerGrid:
    """``grid``, after the metric's ``check_outputs`` saw its auxiliary outputs (constant layers already NaN, so
    they raise no warning)."""
    aux = {name: {d: per[name] for d, per in grid.stats.items() if name in per} for name in AUX_NAMES}
    aux = {name: per for name, per in aux.items() if per}
    if aux and plan.metric.check_outputs is not None:
        plan.metric.check_outputs(aux, plan.xs.names, plan.ys.names, plan.kw.merged)
    return grid


def _masked(a, cx: list[int], cy: list[int]) -> np.ndarray:
    """``a`` (``[..., Lx, Ly]``) with every cell of a constant layer set to NaN (a copy when there are any)."""
    if not cx and not cy:
        return a
    a = np.array(a, dtype=float, copy=True)
    a[..., cx, :] = np.nan
    a[..., cy] = np.nan
    return a


def _mask_constant(grid: LayerGrid, cx: list[int], cy: list[int]) -> LayerGrid:
    """Set every score and statistic involving a constant layer to NaN and record those layers on the grid."""
    if not cx and not cy:
        return grid
    scores = {d: _masked(v, cx, cy) for d, v in grid.scores.items()}
    stats = {d: {k: _masked(v, cx, cy) for k, v in per.items()} for d, per in grid.stats.items()}
    return dataclasses.replace(grid, scores=scores, stats=stats,
                               constant_x=tuple(grid.layers_x[i] for i in cx),
                               constant_y=tuple(grid.layers_y[i] for i in cy))
