"""One layer x layer heatmap drawn from a results table: scores, the peak (direction-aware) and which cells are not
significant. Plot functions take a table, return (fig, ax), and compute nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from align.plots._style import ColourScale
from align.plots._style import colour_scale
from align.plots._style import colourbar_label
from align.plots._style import correction_column
from align.plots._style import direction_label
from align.plots._style import metric_label
from align.plots._style import settings_note
from align.results import higher_is_more_aligned
from align.results import peak_rows
from align.results import score_matrix

#: ``gid`` of the peak marker and of the hatched patches over non-significant cells (for tests and SVG editing).
PEAK_GID = "peak"
NOT_SIGNIFICANT_GID = "not-significant"

#: Hatching (and dimming) of a non-significant cell.
_HATCH = {"hatch": "////", "facecolor": (1.0, 1.0, 1.0, 0.45), "edgecolor": (0.2, 0.2, 0.2, 0.8), "linewidth": 0.0}


def lower_is_more_aligned(frame: pd.DataFrame) -> bool | None:
    """True when the rows' scores are distances, False for similarities, None when unknown (an old table of an
    unregistered probe: labels then say nothing about it, and no peak is marked)."""
    try:
        return not higher_is_more_aligned(frame)
    except ValueError:
        return None


def layer_grid(frame: pd.DataFrame, value: str = "score") -> np.ndarray:
    """``[layers of model_x, layers of model_y]`` values of one heatmap's rows: every layer from 0 to the last gets a
    row/column (NaN where the table has no value, e.g. an undefined score)."""
    matrix = score_matrix(frame, value)
    matrix = matrix.reindex(index=range(int(frame["layer_x"].max()) + 1),
                            columns=range(int(frame["layer_y"].max()) + 1))
    return matrix.to_numpy(dtype=float)


def not_significant_cells(frame: pd.DataFrame, *, correction: str = "bh", alpha: float = 0.05) -> np.ndarray | None:
    """``[Lx, Ly]`` booleans: cells whose corrected p-value (``p_bh`` or ``p_maxstat``) is >= ``alpha``; None when the
    rows have no such p-values (no null was computed). Cells without a p-value or score are False."""
    column, _ = correction_column(correction)
    if column not in frame.columns or not frame[column].notna().any():
        return None
    p, score = layer_grid(frame, column), layer_grid(frame)
    return np.isfinite(p) & np.isfinite(score) & (p >= alpha)


def plot_layer_heatmap(frame: pd.DataFrame, *, ax=None, cmap: str | None = None, vmin: float | None = None,
                       vmax: float | None = None, scale: ColourScale | None = None, correction: str | None = "bh",
                       alpha: float = 0.05, colorbar: bool = True, compact: bool = False):
    """Draw one model pair's layer grid for one metric and direction.

    Args:
      frame: results rows of exactly one (dataset, condition, model pair, poolings, metric, direction).
      ax: axes to draw on (a new figure when None).
      cmap, vmin, vmax: colour map and limits (see ``colour_scale``: by default a diverging map centred on zero for
        signed scores, else a sequential one, over the rows' own range). Ignored when ``scale`` is given.
      scale: a colour scale shared with other panels (``colour_scale`` over all their scores).
      correction: which corrected p-value marks cells as not significant: "bh" (``p_bh``, Benjamini-Hochberg) or
        "maxstat" (``p_maxstat``, family-wise); None: no overlay. Rows without that column get none.
      alpha: significance level of the overlay.
      colorbar: draw the colour bar (False for a panel of a multi-panel figure that shares one).
      compact: a short title (the model pair) and no relative-depth axes, for small panels.

    Returns:
      (fig, ax). Rows are layers of model_x (index 0 = embedding output), columns layers of model_y; the top and
      right axes give relative depth (layer / last layer). A star marks the most aligned cell (the highest score,
      the lowest for a distance; ``align.results.peak_rows``); non-significant cells are hatched and dimmed (the
      title says after which correction); undefined cells are grey. The colour bar names the metric and, for a
      distance (``higher_is_more_aligned`` False), says "(lower = more aligned)"; beneath it, the preprocessing and n.

    Raises:
      ValueError: the rows are of several heatmaps, or ``correction``, ``cmap`` or the limits are invalid.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    values = np.ma.masked_invalid(layer_grid(frame))
    lower = lower_is_more_aligned(frame)
    if scale is None:
        scale = colour_scale(frame["score"], higher_is_more_aligned=lower is not True, vmin=vmin, vmax=vmax, cmap=cmap)
    row = frame.iloc[0]
    ny, nx = values.shape
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(7.5, 1.6 + 0.22 * nx), max(5.0, 1.4 + 0.22 * ny)))
    fig = ax.figure
    colours = plt.get_cmap(scale.cmap).copy()
    colours.set_bad("lightgrey")
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=colours, norm=scale.norm, interpolation="nearest")
    notes = []
    hidden = not_significant_cells(frame, correction=correction, alpha=alpha) if correction is not None else None
    if hidden is not None:
        for i, j in zip(*np.nonzero(hidden)):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, gid=NOT_SIGNIFICANT_GID, **_HATCH))
        column, words = correction_column(correction)
        notes.append(f"hatched: not significant ({column} >= {alpha:g}, {words})")
    peak = peak_rows(frame, []) if lower is not None else frame.iloc[:0]
    if len(peak):
        p = peak.iloc[0]
        ax.plot([int(p["layer_y"])], [int(p["layer_x"])], marker="*", markersize=14 if not compact else 10,
                markerfacecolor="white", markeredgecolor="black", markeredgewidth=1.0, linestyle="none",
                gid=PEAK_GID, clip_on=False)
        notes.insert(0, f"star: peak {'(lowest)' if lower else '(highest)'} at x layer {int(p['layer_x'])}, "
                        f"y layer {int(p['layer_y'])} = {float(p['score']):.3g}")
    _layer_ticks(ax, nx, ny, most=6 if compact else 10)
    size = {"fontsize": 8} if compact else {}
    ax.set_xlabel(f"{row['model_y']} layer ({row['pooling_y']}{'' if compact else ' pooling'})", **size)
    ax.set_ylabel(f"{row['model_x']} layer ({row['pooling_x']}{'' if compact else ' pooling'})", **size)
    if values.mask.any():
        notes.append("grey: undefined")
    if compact:
        ax.set_title(f"{row['model_x']} vs {row['model_y']}\n{metric_label(row['metric'])}\n{direction_label(row)}",
                     fontsize=6.5)
    else:
        last_x, last_y = max(nx - 1, 1), max(ny - 1, 1)
        ax.secondary_xaxis("top", functions=(lambda i: i / last_x, lambda d: d * last_x)).set_xlabel("relative depth")
        ax.secondary_yaxis("right", functions=(lambda i: i / last_y, lambda d: d * last_y)).set_ylabel(
            "relative depth")
        ax.set_title(_title(frame, row) + "".join(f"\n{n}" for n in notes), fontsize=8.5)
    if colorbar:
        cbar = fig.colorbar(image, ax=ax, pad=0.12 if not compact else 0.03)
        cbar.set_label(colourbar_label(row["metric"], lower_is_more_aligned=bool(lower)))
        cbar.ax.set_xlabel(settings_note(frame).replace(", ", "\n"), fontsize=7)
    if not compact:
        fig.tight_layout()
    return fig, ax


def _layer_ticks(ax, nx: int, ny: int, most: int) -> None:
    for axis, count in (("x", nx), ("y", ny)):
        ticks = list(range(0, count, max(1, count // most)))
        getattr(ax, f"set_{axis}ticks")(ticks)
        getattr(ax, f"set_{axis}ticklabels")([str(t) for t in ticks])


def _title(frame: pd.DataFrame, row) -> str:
    condition = str(row.get("condition", ""))
    if "|" in condition and len(set(condition.split("|"))) == 1:
        condition = condition.split("|")[0]  # same condition on both sides
    settings = "".join(f", {k} {row[k]}" for k in ("caption",) if k in frame.columns and pd.notna(row[k]))
    note = settings_note(frame)
    return (f"{row['model_x']} vs {row['model_y']}\n{metric_label(row['metric'])} ({direction_label(row)})\n"
            f"dataset {row.get('dataset', '?')}, condition {condition}{settings}" + (f", {note}" if note else ""))
