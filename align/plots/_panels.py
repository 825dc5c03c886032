"""Every model pair of a results table on one page: one row of panels per (metric, direction and other settings),
one column per model pair, one colour scale (and colour bar) per row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from align.plots._heatmap import lower_is_more_aligned
from align.plots._heatmap import plot_layer_heatmap
from align.plots._style import colour_scale
from align.plots._style import colourbar_label
from align.plots._style import correction_column
from align.plots._style import settings_note

#: Columns that name one model pair (a column of panels).
PAIR_KEYS = ("model_x", "pooling_x", "model_y", "pooling_y")

#: Columns that name one row of panels (those present are used): panels of a row share their colour scale.
ROW_KEYS = ("experiment", "dataset", "condition", "caption", "metric", "preprocess", "direction")


def panel_groups(frame: pd.DataFrame) -> tuple[list[tuple], list[tuple]]:
    """(row keys, pair keys) of the panels of ``frame``, each sorted: rows are settings (metric, direction, ...),
    columns model pairs."""
    rows = sorted(frame[[k for k in ROW_KEYS if k in frame.columns]].drop_duplicates().itertuples(index=False,
                                                                                                    name=None),
                  key=lambda t: tuple(map(str, t)))
    pairs = sorted(frame[list(PAIR_KEYS)].drop_duplicates().itertuples(index=False, name=None),
                   key=lambda t: tuple(map(str, t)))
    return rows, pairs


def plot_all_pairs(frame: pd.DataFrame, *, vmin: float | None = None, vmax: float | None = None,
                   cmap: str | None = None, correction: str | None = "bh", alpha: float = 0.05):
    """All heatmaps of a results table on one page.

    Args:
      frame: results rows (e.g. a run's whole table).
      vmin, vmax, cmap: fixed colour limits and map for every row (see ``colour_scale``); by default each row gets
        the range of its own scores (a diverging map centred on zero when signed, else sequential).
      correction, alpha: the significance overlay (see ``plot_layer_heatmap``).

    Returns:
      (fig, axes): ``axes`` is a ``[rows, pairs]`` array; a row per (metric, direction, preprocess, condition,
      caption), a column per model pair (model_x, pooling_x, model_y, pooling_y). Panels of one row share one colour
      scale and one colour bar, labelled with the metric, its direction ("lower = more aligned" for a distance),
      the scoring direction, preprocessing and n; a pair without rows in a row leaves its panel blank.

    Raises:
      ValueError: ``frame`` has no rows, or the options are invalid.
    """
    import matplotlib.pyplot as plt

    if not len(frame):
        raise ValueError("plot_all_pairs: the results table has no rows")
    row_keys = [k for k in ROW_KEYS if k in frame.columns]
    keys = [*row_keys, *PAIR_KEYS]
    frame = frame.assign(**{k: frame[k].astype(object).where(frame[k].notna(), "-") for k in keys})  # NaN keys
    rows, pairs = panel_groups(frame)
    fig, axes = plt.subplots(len(rows), len(pairs), figsize=(0.8 + 3.2 * len(pairs), 0.9 + 2.9 * len(rows)),
                             squeeze=False, layout="constrained")
    by_row = {_as_tuple(k): g for k, g in frame.groupby(row_keys, sort=False)}
    for r, key in enumerate(rows):
        part = by_row[key]
        lower = lower_is_more_aligned(part)
        scale = colour_scale(part["score"], higher_is_more_aligned=lower is not True, vmin=vmin, vmax=vmax,
                             cmap=cmap)
        by_pair = {_as_tuple(k): g for k, g in part.groupby(list(PAIR_KEYS), sort=False)}
        image = None
        for c, pair in enumerate(pairs):
            ax = axes[r, c]
            if pair not in by_pair:
                ax.set_axis_off()
                continue
            plot_layer_heatmap(by_pair[pair], ax=ax, scale=scale, correction=correction, alpha=alpha,
                               colorbar=False, compact=True)
            image = ax.images[0]
        first = part.iloc[0]
        if image is not None:
            cbar = fig.colorbar(image, ax=list(axes[r, :]), shrink=0.9)
            note = settings_note(part)
            cbar.set_label(colourbar_label(first["metric"], lower_is_more_aligned=bool(lower))
                           + (f"\n{note}" if note else ""), fontsize=8)
    fig.suptitle(_suptitle(frame, correction, alpha), fontsize=10)
    return fig, np.asarray(axes)


def _as_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _suptitle(frame: pd.DataFrame, correction: str | None, alpha: float) -> str:
    first = frame.iloc[0]
    text = f"All model pairs — dataset {first.get('dataset', '?')}\nstar: peak (most aligned cell)"
    if correction is not None:
        column, words = correction_column(correction)
        if column in frame.columns and frame[column].notna().any():
            text += f"\nhatched: not significant ({column} >= {alpha:g}, {words})"
    if frame["score"].isna().any():
        text += "; grey: undefined"
    return text
