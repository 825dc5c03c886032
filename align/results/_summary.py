"""A printable text summary of a layer grid (:class:`align.engine.LayerGrid`): its most aligned layer pairs."""

from __future__ import annotations

import numpy as np

_DIRECTION_TEXT = {
    "symmetric": "symmetric",
    "x_to_y": "x_to_y (x layer predicts y layer)",
    "y_to_x": "y_to_x (y layer predicts x layer)",
}


def _rel_depth(i: int, n_layers: int) -> float:
    return i / (n_layers - 1) if n_layers > 1 else 1.0


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "nan"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def best_cells(scores: np.ndarray, *, higher_is_more_aligned: bool, top: int) -> list[tuple[int, int]]:
    """The ``top`` most aligned ``(x layer, y layer)`` cells of a ``[Lx, Ly]`` score array, best first: the highest
    scores where higher is more aligned, the lowest where lower is (distances). NaN cells are skipped; ties keep
    row-major order.

    Raises:
      ValueError: ``top`` < 1.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    flat = np.asarray(scores, dtype=np.float64).ravel()
    key = -flat if higher_is_more_aligned else flat
    order = [int(k) for k in np.argsort(key, kind="stable") if np.isfinite(flat[k])]
    ly = np.shape(scores)[1]
    return [divmod(k, ly) for k in order[:top]]


def grid_summary(grid, top: int = 5) -> str:
    """A printable summary of a layer grid: what was compared and its ``top`` most aligned layer pairs.

    The header gives the metric with its keyword arguments, ``n`` (stimuli compared), the per-layer preprocessing
    and which way scores point ("higher = more aligned", or "lower = more aligned" for distances), and the
    permutations / bootstrap resamples behind any p-values and CIs. Then, per direction (``symmetric``, or
    ``x_to_y`` / ``y_to_x`` for an asymmetric metric), the best pairs ranked by that direction (highest score
    first, or lowest for a distance), each with layer names, indices, relative depths, the score and, when
    computed, the bootstrap CI and the p-values (``p``: per-pair permutation; ``p_bh``: Benjamini-Hochberg over the
    direction's pairs; ``p_maxstat``: family-wise max-statistic).

    Args:
      grid: an :class:`align.engine.LayerGrid`.
      top: how many pairs to list per direction (fewer when the grid has fewer non-NaN cells).

    Returns:
      The text (lines joined with newlines, no trailing newline).

    Raises:
      ValueError: ``top`` < 1.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    kwargs = ", ".join(f"{k}={v}" for k, v in sorted(dict(grid.kwargs).items()))
    metric = f"{grid.metric}({kwargs})" if kwargs else grid.metric
    better = "higher = more aligned" if grid.higher_is_more_aligned else "lower = more aligned"
    lx, ly = len(grid.layers_x), len(grid.layers_y)
    what = "difference A - B of " if grid.quantity == "difference" else ""
    lines = [f"{what}{metric}: {lx} x {ly} layer pairs, n = {grid.n} stimuli, preprocessing: {grid.preprocess}, "
             f"{better}"]
    extra = []
    if grid.n_perm:
        extra.append(f"{grid.n_perm} permutations")
    if grid.n_boot:
        extra.append(f"{grid.n_boot} bootstrap resamples ({grid.ci_level:.0%} CI)")
    if grid.constant_x or grid.constant_y:
        extra.append(f"constant layers scored NaN: x {list(grid.constant_x)}, y {list(grid.constant_y)}")
    if extra:
        lines.append("  " + "; ".join(extra))
    for direction in grid.directions:
        scores = np.asarray(grid.score(direction), dtype=np.float64)
        stats = grid.stats.get(direction, {})
        cells = best_cells(scores, higher_is_more_aligned=grid.higher_is_more_aligned, top=top)
        lines.append(f"top {len(cells)} layer pairs, {_DIRECTION_TEXT.get(direction, direction)}:")
        if not cells:
            lines.append("  (every score is NaN)")
        width = max([len(str(grid.layers_x[i])) for i, _ in cells] + [1])
        for rank, (i, j) in enumerate(cells, 1):
            text = (f"  {rank}. x {str(grid.layers_x[i]):{width}s} [{i}, depth {_rel_depth(i, lx):.2f}]  "
                    f"y {grid.layers_y[j]} [{j}, depth {_rel_depth(j, ly):.2f}]: {scores[i, j]:.4f}")
            if "ci_low" in stats and "ci_high" in stats:
                text += f"  {grid.ci_level:.0%} CI [{stats['ci_low'][i, j]:.4f}, {stats['ci_high'][i, j]:.4f}]"
            for name, label in (("p_value", "p"), ("p_bh", "p_bh"), ("p_maxstat", "p_maxstat")):
                if name in stats:
                    text += f"  {label} = {_fmt_p(float(stats[name][i, j]))}"
            lines.append(text)
    return "\n".join(lines)
