"""Layer x layer heatmaps drawn from a results table. Plot functions take a table, return (fig, ax), compute nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from align.results import higher_is_more_aligned
from align.results import score_matrix

#: Columns that identify one heatmap.
HEATMAP_KEYS = ("experiment", "dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y", "metric", "direction")


def _direction_label(row) -> str:
    d = row["direction"]
    if d in ("x_to_y", "y_to_x"):
        src, dst = (row["model_x"], row["model_y"]) if d == "x_to_y" else (row["model_y"], row["model_x"])
        return f"{src} predicts {dst}"
    return "symmetric" if d in (None, "", "sym", "symmetric") else str(d)


def metric_label(metric: str) -> str:
    """A results-table metric entry as a reader would write it: ``"procrustes_angular"`` -> ``"procrustes angular"``,
    ``"rbf_cka(sigma_frac=0.5)"`` -> ``"rbf cka (sigma_frac=0.5)"``."""
    name, _, args = str(metric).partition("(")
    return name.strip().replace("_", " ") + (f" ({args.rstrip(')').strip()})" if args.rstrip(")").strip() else "")


def _lower_is_more_aligned(frame: pd.DataFrame) -> bool:
    """True when the rows' scores are distances (``align.results.higher_is_more_aligned``); False when the
    direction is unknown (an old table of an unregistered probe: the label then says nothing about it)."""
    try:
        return not higher_is_more_aligned(frame)
    except ValueError:
        return False


def plot_layer_heatmap(frame: pd.DataFrame, *, ax=None, cmap: str = "viridis"):
    """Draw one model pair's layer grid for one metric and direction.

    Args:
      frame: results rows of exactly one (dataset, condition, model pair, poolings, metric, direction).
      ax: axes to draw on (a new figure when None).

    Returns:
      (fig, ax). Rows are layers of model_x (index 0 = embedding output), columns layers of model_y; the top and
      right axes give relative depth (layer / last layer). The colour bar names the metric and, for a distance
      (``higher_is_more_aligned`` False), says "(lower = more aligned)".
    """
    import matplotlib.pyplot as plt

    matrix = score_matrix(frame)
    # every layer gets a row/column, also where the score is undefined (e.g. a ViT's embedding-layer CLS token is
    # the same for every image, so nothing can be predicted of it): those cells are drawn grey
    matrix = matrix.reindex(index=range(int(frame["layer_x"].max()) + 1), columns=range(int(frame["layer_y"].max()) + 1))
    row = frame.iloc[0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.6 + 0.22 * matrix.shape[1], 1.4 + 0.22 * matrix.shape[0]))
        fig.set_size_inches(max(7.5, fig.get_size_inches()[0]), max(5.0, fig.get_size_inches()[1]))
    else:
        fig = ax.figure
    import numpy as np

    colours = plt.get_cmap(cmap).copy()
    colours.set_bad("lightgrey")
    values = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
    im = ax.imshow(values, origin="lower", aspect="auto", cmap=colours, interpolation="nearest")
    ax.set_xlabel(f"{row['model_y']} layer ({row['pooling_y']} pooling)")
    ax.set_ylabel(f"{row['model_x']} layer ({row['pooling_x']} pooling)")
    nx, ny = matrix.shape[1], matrix.shape[0]
    for axis, count in (("x", nx), ("y", ny)):
        step = max(1, count // 10)
        ticks = list(range(0, count, step))
        getattr(ax, f"set_{axis}ticks")(ticks)
        getattr(ax, f"set_{axis}ticklabels")([str(matrix.columns[t] if axis == "x" else matrix.index[t]) for t in ticks])
    last_x, last_y = max(nx - 1, 1), max(ny - 1, 1)
    top = ax.secondary_xaxis("top", functions=(lambda i: i / last_x, lambda d: d * last_x))
    top.set_xlabel("relative depth")
    right = ax.secondary_yaxis("right", functions=(lambda i: i / last_y, lambda d: d * last_y))
    right.set_ylabel("relative depth")
    cbar = fig.colorbar(im, ax=ax, pad=0.12)
    cbar.set_label(metric_label(row["metric"]) + (" (lower = more aligned)" if _lower_is_more_aligned(frame) else ""))
    n = int(frame["n"].iloc[0]) if "n" in frame.columns and pd.notna(frame["n"].iloc[0]) else "?"
    condition = str(row["condition"])
    if "|" in condition and len(set(condition.split("|"))) == 1:
        condition = condition.split("|")[0]  # same condition on both sides
    title = (f"{row['model_x']} vs {row['model_y']}\n{row['metric']} ({_direction_label(row)})\n"
             f"dataset {row['dataset']}, condition {condition}, n = {n}"
             + (" (grey: undefined)" if values.mask.any() else ""))
    ax.set_title(title, fontsize=8.5)
    fig.tight_layout()
    return fig, ax


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", str(text)).strip("-")


def save_heatmaps(frame: pd.DataFrame, out_dir: str | Path, *, dpi: int = 120, skip_existing: bool = True) -> list[Path]:
    """One PNG (plus the matrix as CSV) per (model pair, metric, direction, condition) in ``frame``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [k for k in HEATMAP_KEYS if k in frame.columns]
    written = []
    for values, group in frame.groupby(keys, dropna=False, sort=True):
        meta = dict(zip(keys, values))
        stem = "__".join(_slug(meta[k]) for k in ("dataset", "condition", "model_x", "pooling_x", "model_y",
                                                  "pooling_y", "metric", "direction") if k in meta)
        png, csv = out_dir / f"{stem}.png", out_dir / f"{stem}.csv"
        if skip_existing and png.exists() and csv.exists():
            written.append(png)
            continue
        score_matrix(group).to_csv(csv)
        fig, _ = plot_layer_heatmap(group)
        fig.savefig(png, dpi=dpi)
        plt.close(fig)
        written.append(png)
    return written
