"""``stream_pairwise``: every layer pair of two stores scored from row chunks, for n larger than memory.

The streamed path reads the stores in row chunks and never holds a whole layer or an ``[n, n]`` matrix: metrics with
a feature-space (primal) form accumulate ``Xᵀ X``, ``Xᵀ Y`` and column sums (see :data:`STREAMABLE`). It gives the
in-memory numbers (``align.pairwise``) up to rounding (float64 statistics here, float32 there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from align.engine import SYMMETRIC
from align.engine import LayerGrid
from align.engine import constant_layer_error
from align.engine import directions_of
from align.engine import resolve_metric
from align.engine import progress_bar
from align.metrics import MetricInputError
from align.streaming._cka import cka_grid
from align.streaming._cka import constant_layers as constant_of
from align.streaming._moments import Moments
from align.streaming._moments import accumulate
from align.streaming._predictivity import predictivity_grid
from align.streaming._predictivity import predictivity_moments
from align.streaming._rows import as_store
from align.streaming._rows import check_chunk_rows
from align.streaming._rows import check_paired
from align.streaming._rows import default_chunk_rows
from align.streaming._rows import Pairing
from align.streaming._rows import check_rows_y

#: Metrics with a streamed (feature-space) form, and the keywords that form supports (all of the metric's).
STREAMABLE = ("linear_cka", "linear_predictivity")


def stream_pairwise(metric, store_x, store_y, *, metric_kwargs: Mapping[str, Any] | None = None,
                    chunk_rows: int | None = None, direction: str | None = None, constant_layers: str = "error",
                    rows_y: Sequence[Sequence[int]] | None = None, progress: bool | None = None) -> LayerGrid:
    """Score every (x layer, y layer) pair of two stores from row chunks (n larger than memory).

    - ``linear_cka`` (biased, or ``debiased=True``): one pass accumulating ``Xᵀ X``, ``Yᵀ Y``, ``Xᵀ Y``, column
      sums and, for the debiased estimator, sums with the squared row norms (:mod:`align.streaming._cka`).
    - ``linear_predictivity`` (its keywords: ``alphas``, ``folds`` as a count with ``seed`` or as fold ids,
      ``alpha_selection`` ``"loo"`` or ``"gcv"``, ``alpha_per_target``, ``scale``, ``score`` ``"pearson"`` or
      ``"r2"``, ``cv_score`` ``"fold_mean"`` or ``"pooled"``, ``pca_components``; either or both directions): pass
      1 per fold (the same fold ids as the in-memory path), a ``[p, p]`` eigendecomposition per (source layer,
      fold), with LOO a pass for the per-row leverages, then a pass predicting the held-out rows
      (:mod:`align.streaming._predictivity`).

    Statistics are float64 (the in-memory engine computes in float32), so the two agree to about 1e-6 on
    well-conditioned layers; where float32 loses digits (e.g. ``scale=True`` with fewer stimuli than features) the
    streamed value is the closer one to a float64 computation. No permutation nulls, bootstrap intervals or
    per-layer preprocessing: score those in memory.

    Args:
      metric: ``"linear_cka"``, ``"linear_predictivity"``, a spec string of one (``"linear_cka(debiased=True)"``)
        or its :class:`~align.metrics.Metric`.
      store_x, store_y: ``ActivationStore`` objects or paths of finished stores with the same stimuli in the same
        order (or see ``rows_y``).
      metric_kwargs: the metric's keyword arguments (override those of a spec string).
      chunk_rows: rows read at a time (default: about 32 MB of both stores' float32 activations per chunk).
      direction: for linear predictivity, ``"x_to_y"`` or ``"y_to_x"`` only (default both).
      constant_layers: ``"error"`` (default) or ``"skip"`` (score NaN and list in ``constant_x``/``constant_y``), as
        ``align.pairwise``.
      rows_y: per row of ``store_x``, the rows of ``store_y`` that stand for it (their mean; one row: that row),
        e.g. a caption store's captions of each image, in about the same order as the x rows; default None: row k
        with row k, and the stores must list the same stimuli in the same order.
      progress: show a progress bar of the rows read (None: when standard error is a terminal or
        ``ALIGN_PROGRESS=1``).

    Returns:
      A :class:`~align.engine.LayerGrid` as ``align.pairwise`` returns it (``scores`` keyed by direction; for
      linear predictivity ``stats`` holds ``alpha_median``, ``alpha_low_share``, ``alpha_high_share``).

    Raises:
      ValueError: a metric without a streamed form (names those that have one), bad keyword arguments,
        ``chunk_rows`` or ``rows_y``.
      StoreMismatchError: the stores do not list the same stimuli in the same order.
      MetricInputError: too few stimuli, or a constant layer with ``constant_layers="error"``.
    """
    m, kwargs = resolve_metric(metric, metric_kwargs)
    if m.name not in STREAMABLE:
        raise ValueError(f"metric {m.name!r} has no streamed (feature-space) form; the metrics that stream are "
                         f"{list(STREAMABLE)}; score {m.name!r} in memory with align.pairwise")
    if constant_layers not in ("error", "skip"):
        raise ValueError(f"constant_layers must be 'error' or 'skip', got {constant_layers!r}")
    check_chunk_rows(chunk_rows)
    sx, sy = as_store(store_x, "store_x"), as_store(store_y, "store_y")
    if rows_y is None:
        check_paired(sx, sy)
        pairing = Pairing(sx, sy)
    else:
        pairing = Pairing(sx, sy, check_rows_y(rows_y, sx.n, sy))
    n = sx.n
    m.split_kwargs(kwargs)  # unknown keyword names raise here
    merged = {**m.defaults, **kwargs}
    if n < m.min_n:
        raise MetricInputError(f"{m.name} needs at least {m.min_n} stimuli; the stores hold {n}")
    if m.validate is not None:
        m.validate(n, list(sx.widths) + list(sy.widths), **merged)
    directions = directions_of(m, direction)
    rows = int(chunk_rows) if chunk_rows is not None else default_chunk_rows(sx.widths, sy.widths)
    passes = 1 if m.name == "linear_cka" else (3 if merged["alpha_selection"] == "loo" else 2)
    with progress_bar(passes * n, f"stream {m.name}", "row", progress) as bar:
        if m.name == "linear_cka":
            debiased = bool(merged["debiased"])
            moments = accumulate(pairing.chunks(rows), row_norms=debiased, progress=bar)
            cx, cy = _constant(moments, sx, sy, constant_layers)
            scores, stats = {SYMMETRIC: cka_grid(moments, debiased)}, {}
        else:
            moments, fold_ids = predictivity_moments(pairing, merged, rows, bar)
            cx, cy = _constant(moments, sx, sy, constant_layers)
            scores, stats = predictivity_grid(pairing, moments, fold_ids, merged, directions, rows, bar)
    scores = {d: _masked(v, cx, cy) for d, v in scores.items()}
    stats = {d: {k: _masked(v, cx, cy) for k, v in per.items()} for d, per in stats.items()}
    grid = layer_grid(m, kwargs, sx.layer_names, sy.layer_names, n, scores, stats, cx, cy)
    if m.check_outputs is not None and stats:
        aux = {name: {d: per[name] for d, per in stats.items()} for name in next(iter(stats.values()))}
        m.check_outputs(aux, sx.layer_names, sy.layer_names, merged)
    return grid


def layer_grid(metric, kwargs: dict, layers_x, layers_y, n: int, scores: dict[str, np.ndarray],
               stats: dict[str, dict[str, np.ndarray]], cx: list[int], cy: list[int]) -> LayerGrid:
    """The :class:`~align.engine.LayerGrid` of a streamed grid (scores keyed by direction, as the engine's)."""
    return LayerGrid(metric=metric.name, kwargs=dict(kwargs), layers_x=tuple(layers_x), layers_y=tuple(layers_y),
                     scores=scores, n=n, symmetric=metric.symmetric,
                     higher_is_more_aligned=metric.higher_is_more_aligned, stats=stats,
                     constant_x=tuple(layers_x[i] for i in cx), constant_y=tuple(layers_y[j] for j in cy))


def _constant(m: Moments, sx, sy, mode: str) -> tuple[list[int], list[int]]:
    """Indices of the constant x and y layers (every row equal); raises for ``mode="error"``."""
    found = []
    for side, store, label in (("x", sx, "store_x"), ("y", sy, "store_y")):
        idx = constant_of(m, side)
        if idx and mode == "error":
            raise constant_layer_error([store.layer_names[i] for i in idx], f"{label} ({store.path})")
        found.append(idx)
    return found[0], found[1]


def _masked(a: np.ndarray, cx: list[int], cy: list[int]) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a[cx, :] = np.nan
    a[:, cy] = np.nan
    return a
