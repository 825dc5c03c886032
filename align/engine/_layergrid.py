"""The engine's result: :class:`LayerGrid`, the scores of every (x layer, y layer) pair, labelled, per direction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from align.preprocess import DEFAULT_PREPROCESS

#: Direction labels of results: one grid for a symmetric metric, two for an asymmetric one.
SYMMETRIC = "symmetric"
X_TO_Y = "x_to_y"
Y_TO_X = "y_to_x"

#: Statistics a grid may carry, per direction, as ``[Lx, Ly]`` arrays (columns of ``to_frame``, in this order).
STAT_NAMES = ("p_value", "p_bh", "p_maxstat", "null_mean", "null_std", "ci_low", "ci_high", "score_a", "score_b")

#: Per-pair outputs a metric's compare may return beside ``"score"`` (e.g. linear predictivity's chosen ridge
#: penalties); the engine keeps them in ``LayerGrid.stats`` and ``to_frame`` writes them as columns.
AUX_NAMES = ("alpha_median", "alpha_low_share", "alpha_high_share")


@dataclasses.dataclass(frozen=True)
class LayerGrid:
    """Scores of every (x layer, y layer) pair, labelled.

    Attributes:
      metric: registry name of the metric.
      kwargs: the metric keyword arguments given (from the spec string and ``metric_kwargs``; defaults not
        repeated).
      layers_x: names of the x layers (rows), in depth order.
      layers_y: names of the y layers (columns).
      scores: always a dict direction -> ``[Lx, Ly]`` array, indexed ``[x layer, y layer]``: ``{"symmetric": ...}``
        for a symmetric metric; for an asymmetric one ``"x_to_y"`` (row layer predicts column layer:
        ``compare(X_i, Y_j)``) and/or ``"y_to_x"`` (``compare(Y_j, X_i)``).
      n: number of stimuli (rows) compared.
      symmetric: whether the metric is symmetric.
      higher_is_more_aligned: False for distances.
      stats: per direction, optional ``[Lx, Ly]`` statistics: ``p_value`` (per-cell permutation p), ``p_bh``
        (Benjamini-Hochberg adjusted over the direction's cells), ``p_maxstat`` (family-wise, max-statistic over
        the direction's cells), ``null_mean``, ``null_std`` (permutation null), ``ci_low``, ``ci_high``
        (bootstrap), ``score_a``, ``score_b`` (paired differences); see :mod:`align.stats`.
      quantity: ``"score"``, or ``"difference"`` for :func:`align.engine.paired_difference` (scores are A − B).
      n_perm: permutations behind the p-values (0 if none).
      n_boot: bootstrap resamples behind the CI (0 if none).
      ci_level: coverage of ``ci_low``/``ci_high``.
      constant_x, constant_y: names of layers that were constant across stimuli (scored NaN; only with
        ``constant_layers="skip"``).
      preprocess: canonical spec of the per-layer preprocessing applied before the metric (``"none"``,
        ``"zscore"``, ``"clip(q=0.95)"``, ``"pca(k=50)"``, ...; see :mod:`align.preprocess`).
    """

    metric: str
    kwargs: Mapping[str, Any]
    layers_x: tuple[str, ...]
    layers_y: tuple[str, ...]
    scores: dict[str, np.ndarray]
    n: int
    symmetric: bool
    higher_is_more_aligned: bool = True
    stats: Mapping[str, Mapping[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    quantity: str = "score"
    n_perm: int = 0
    n_boot: int = 0
    ci_level: float = 0.95
    constant_x: tuple[str, ...] = ()
    constant_y: tuple[str, ...] = ()
    preprocess: str = DEFAULT_PREPROCESS

    @property
    def directions(self) -> tuple[str, ...]:
        """``("symmetric",)`` or the asymmetric directions computed (``"x_to_y"``, ``"y_to_x"``)."""
        return tuple(self.scores)

    def score(self, direction: str | None = None) -> np.ndarray:
        """The ``[Lx, Ly]`` score array of one direction (the only one when ``direction`` is None)."""
        return self._get(None, direction)

    def stat(self, name: str, direction: str | None = None) -> np.ndarray:
        """The ``[Lx, Ly]`` array of one statistic (e.g. ``"p_value"``) for one direction."""
        return self._get(name, direction)

    def _get(self, name, direction):
        dirs = self.directions
        if direction is None:
            if len(dirs) != 1:
                raise ValueError(f"{self.metric} is asymmetric; name a direction, one of {dirs}")
            direction = dirs[0]
        if direction not in dirs:
            raise ValueError(f"direction {direction!r} was not computed; available: {dirs}")
        if name is None:
            return self.scores[direction]
        try:
            return self.stats[direction][name]
        except KeyError:
            have = sorted(self.stats.get(direction, {}))
            raise ValueError(f"statistic {name!r} was not computed (have {have}); pass n_perm=/n_boot= to "
                             "pairwise") from None

    def to_frame(self):
        """Long form, one row per (direction, x layer, y layer).

        Columns: ``layer_x``, ``layer_y`` (layer indices), ``layer_name_x``, ``layer_name_y``, ``rel_depth_x``,
        ``rel_depth_y`` (index / last index; 1.0 for a single layer), ``metric``, ``preprocess`` (the canonical
        preprocessing spec), ``direction`` (``"symmetric"``, ``"x_to_y"`` or ``"y_to_x"``),
        ``higher_is_more_aligned``, ``score``, ``n``, then any statistics computed (:data:`STAT_NAMES` in that
        order: ``p_value``, ``p_bh``, ``p_maxstat``, ``null_mean``, ``null_std``, ``ci_low``, ``ci_high``,
        ``score_a``, ``score_b``) and the metric's per-pair outputs (:data:`AUX_NAMES`).
        """
        import pandas as pd

        lx, ly = len(self.layers_x), len(self.layers_y)
        ix, iy = np.meshgrid(np.arange(lx), np.arange(ly), indexing="ij")
        frames = []
        for d in self.directions:
            cols = {
                "layer_x": ix.ravel(), "layer_y": iy.ravel(),
                "layer_name_x": np.asarray(self.layers_x, dtype=object)[ix.ravel()],
                "layer_name_y": np.asarray(self.layers_y, dtype=object)[iy.ravel()],
                "rel_depth_x": rel_depth(lx)[ix.ravel()], "rel_depth_y": rel_depth(ly)[iy.ravel()],
                "metric": self.metric, "preprocess": self.preprocess, "direction": d,
                "higher_is_more_aligned": bool(self.higher_is_more_aligned),
                "score": np.asarray(self.score(d), dtype=np.float64).ravel(), "n": self.n,
            }
            for name in STAT_NAMES + AUX_NAMES:
                if name in self.stats.get(d, {}):
                    cols[name] = np.asarray(self.stats[d][name], dtype=np.float64).ravel()
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)

    def to_xarray(self):
        """The grid as an ``xarray.Dataset`` (see :func:`align.results.grid_to_xarray`)."""
        from align.results import grid_to_xarray

        return grid_to_xarray(self)

    def summary(self, top: int = 5) -> str:
        """A short text summary with the ``top`` most aligned layer pairs (see :func:`align.results.grid_summary`)."""
        from align.results import grid_summary

        return grid_summary(self, top=top)


def rel_depth(n_layers: int) -> np.ndarray:
    """Relative depth of each of ``n_layers`` layers: index / last index (``[1.0]`` for a single layer)."""
    return np.arange(n_layers) / (n_layers - 1) if n_layers > 1 else np.ones(1)
