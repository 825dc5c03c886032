"""A layer grid (:class:`align.engine.LayerGrid`) as a labelled ``xarray.Dataset``.

xarray is an optional dependency (the ``interop`` extra); it is imported only when a grid is converted.
"""

from __future__ import annotations

import json

import numpy as np


def _rel_depth(n_layers: int) -> np.ndarray:
    """Relative depth of each of ``n_layers`` layers: index / last index (``[1.0]`` for a single layer)."""
    return np.arange(n_layers) / (n_layers - 1) if n_layers > 1 else np.ones(1)


def grid_to_xarray(grid):
    """A layer grid as an ``xarray.Dataset`` with dims ``layer_x`` (rows) and ``layer_y`` (columns).

    Coordinates: ``layer_x``/``layer_y`` hold the layer names (select with ``ds.sel(layer_x="blocks.3")``),
    ``layer_index_x``/``layer_index_y`` the layer indices and ``rel_depth_x``/``rel_depth_y`` the relative depth
    (index / last index; 1.0 for a single layer).

    Data variables, each ``[Lx, Ly]`` float64, named ``{quantity}_{direction}``: ``score_symmetric`` for a
    symmetric metric, ``score_x_to_y`` (x layer predicts y layer) and/or ``score_y_to_x`` for an asymmetric one,
    plus every statistic the grid carries for that direction (``p_value_x_to_y``, ``p_bh_symmetric``,
    ``ci_low_symmetric``, ...; see :data:`align.engine.STAT_NAMES`). Each variable has attrs ``direction`` and
    ``statistic``.

    Dataset attrs (netCDF-safe types): ``metric``; ``kwargs`` (the metric keyword arguments as a JSON string);
    ``n`` (stimuli compared); ``preprocess`` (canonical per-layer preprocessing spec, e.g. ``"zscore"``);
    ``higher_is_more_aligned`` (1 or 0: 0 for distances, where lower scores are more aligned); ``quantity``
    (``"score"``, or ``"difference"`` for scores A − B); ``directions`` (comma-separated); ``symmetric`` (1/0);
    ``n_perm``, ``n_boot`` (0 when not computed) and ``ci_level``; ``constant_x``/``constant_y`` (JSON lists of
    layers scored NaN because they were constant).

    Args:
      grid: an :class:`align.engine.LayerGrid`.

    Returns:
      The ``xarray.Dataset``; its ``score_*`` values equal ``grid.score(direction)``.

    Raises:
      ImportError: xarray is not installed (``pip install 'align[interop]'``).
    """
    try:
        import xarray as xr
    except ImportError as e:
        raise ImportError("LayerGrid.to_xarray needs xarray: pip install 'align[interop]' (or pip install "
                          "xarray)") from e

    lx, ly = len(grid.layers_x), len(grid.layers_y)
    coords = {
        "layer_x": ("layer_x", np.asarray(grid.layers_x, dtype=str)),
        "layer_y": ("layer_y", np.asarray(grid.layers_y, dtype=str)),
        "layer_index_x": ("layer_x", np.arange(lx)),
        "layer_index_y": ("layer_y", np.arange(ly)),
        "rel_depth_x": ("layer_x", _rel_depth(lx)),
        "rel_depth_y": ("layer_y", _rel_depth(ly)),
    }
    data = {}
    for direction in grid.directions:
        arrays = {"score": grid.score(direction), **dict(grid.stats.get(direction, {}))}
        for name, values in arrays.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (lx, ly):
                raise ValueError(f"{name} of direction {direction!r} has shape {values.shape}, expected "
                                 f"({lx}, {ly}) (layers_x x layers_y)")
            data[f"{name}_{direction}"] = xr.Variable(("layer_x", "layer_y"), values,
                                                      attrs={"direction": direction, "statistic": name})
    attrs = {
        "metric": grid.metric,
        "kwargs": json.dumps(dict(grid.kwargs), sort_keys=True, default=str),
        "n": int(grid.n),
        "preprocess": grid.preprocess,
        "higher_is_more_aligned": int(bool(grid.higher_is_more_aligned)),
        "quantity": grid.quantity,
        "directions": ",".join(grid.directions),
        "symmetric": int(bool(grid.symmetric)),
        "n_perm": int(grid.n_perm),
        "n_boot": int(grid.n_boot),
        "ci_level": float(grid.ci_level),
        "constant_x": json.dumps(list(grid.constant_x)),
        "constant_y": json.dumps(list(grid.constant_y)),
    }
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)
