"""Layer x layer heatmaps drawn from a results table. Plot functions take a table, return (fig, ax), compute nothing.

Saved heatmaps are keyed by what made them: each PNG carries, in its metadata, a hash of its table rows (every
identifying column, the layer pairs, scores and n) and of the drawing settings; a heatmap is redrawn unless its PNG
is complete and carries the same key and its CSV holds the same matrix. Both files are written atomically (a
temporary file in the same folder, then a rename), so a kill never leaves a truncated figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from align._locks import output_lock
from align._locks import remove_leftovers
from align.results import higher_is_more_aligned
from align.results import score_matrix

#: Columns that identify one heatmap (``caption``: which captions were embedded; ``preprocess``: the per-layer
#: preprocessing before the metric; both change the scores, so both name the figure).
HEATMAP_KEYS = ("experiment", "dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y", "metric",
                "direction", "caption", "preprocess")

#: Columns of a heatmap's rows that its key covers (besides ``HEATMAP_KEYS``): everything drawn.
_DRAWN_COLUMNS = ("layer_x", "layer_y", "score", "n", "higher_is_more_aligned")

#: Bump when the drawing changes, so that saved heatmaps are redrawn.
_DRAWING_VERSION = 2

#: PNG text chunk that holds a saved heatmap's key.
_KEY_FIELD = "align heatmap key"


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
    settings = "".join(f", {k} {row[k]}" for k in ("caption", "preprocess") if k in frame.columns and pd.notna(row[k]))
    title = (f"{row['model_x']} vs {row['model_y']}\n{row['metric']} ({_direction_label(row)})\n"
             f"dataset {row['dataset']}, condition {condition}{settings}, n = {n}"
             + (" (grey: undefined)" if values.mask.any() else ""))
    ax.set_title(title, fontsize=8.5)
    fig.tight_layout()
    return fig, ax


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", str(text)).strip("-")


def _stem(meta: dict, with_experiment: bool) -> str:
    """The file name (without suffix) of one heatmap: its identifying values, readable."""
    parts = [_slug(meta["experiment"])] if with_experiment and "experiment" in meta else []
    parts += [_slug(meta[k]) for k in ("dataset", "condition", "model_x", "pooling_x", "model_y", "pooling_y",
                                       "metric", "direction") if k in meta]
    parts += [f"{k}={_slug(meta[k])}" for k in ("caption", "preprocess") if k in meta and pd.notna(meta[k])]
    return "__".join(parts)


def heatmap_key(frame: pd.DataFrame, *, dpi: int) -> str:
    """16 hex chars that change whenever the heatmap of ``frame`` (the rows of one heatmap) would change: a hash of
    its identifying columns, layer pairs, scores and n (row order does not matter), the dpi and the drawing
    version."""
    columns = [c for c in (*HEATMAP_KEYS, *_DRAWN_COLUMNS) if c in frame.columns]
    rows = frame[columns].sort_values(["layer_x", "layer_y"], kind="stable").to_csv(index=False)
    blob = json.dumps({"drawing": _DRAWING_VERSION, "dpi": int(dpi), "rows": rows}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def saved_heatmap_key(png: str | Path) -> str | None:
    """The key stored in a saved heatmap, or None when ``png`` is missing, incomplete (a truncated file) or not a
    heatmap saved by ``save_heatmaps``."""
    from PIL import Image

    try:
        with Image.open(png) as image:
            image.load()  # decodes every pixel: a truncated file raises here
            return image.text.get(_KEY_FIELD)
    except (OSError, SyntaxError, ValueError):
        return None


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path`` (``.<name>.<random>.tmp``), fsync, rename onto ``path``."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_heatmaps(frame: pd.DataFrame, out_dir: str | Path, *, dpi: int = 120, skip_existing: bool = True,
                  remove_stale: bool = False) -> list[Path]:
    """One PNG (plus the matrix as CSV) per (model pair, metric, direction, condition, caption, preprocess) in
    ``frame``.

    Args:
      frame: results rows (a results table, or part of one).
      out_dir: the folder of the figures (created). Files are named after the heatmap's identifying values, e.g.
        ``<dataset>__<condition>__<model_x>__<pooling_x>__<model_y>__<pooling_y>__<metric>__<direction>__caption=first__preprocess=none.png``.
      dpi: resolution of the PNGs.
      skip_existing: keep a heatmap whose PNG is complete and carries the key of its current rows
        (``heatmap_key``) and whose CSV holds the current matrix; anything else is redrawn. False: redraw all.
      remove_stale: also delete every other PNG and CSV file in ``out_dir`` (heatmaps not drawn from ``frame``):
        for a folder that holds the heatmaps of one table only, e.g. a run's ``heatmaps/``.

    Returns:
      The PNG paths of ``frame``'s heatmaps, all current.

    The folder is written under its lock (``<out_dir>.lock``); temporaries of a killed save are removed first.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [k for k in HEATMAP_KEYS if k in frame.columns]
    with_experiment = "experiment" in frame.columns and frame["experiment"].nunique(dropna=False) > 1
    written = []
    with output_lock(out_dir):
        remove_leftovers(out_dir, held=True, pattern=".*.tmp")
        for values, group in frame.groupby(keys, dropna=False, sort=True):
            meta = dict(zip(keys, values))
            stem = _stem(meta, with_experiment)
            png, csv = out_dir / f"{stem}.png", out_dir / f"{stem}.csv"
            key = heatmap_key(group, dpi=dpi)
            matrix_csv = score_matrix(group).to_csv()
            if (skip_existing and saved_heatmap_key(png) == key and csv.is_file()
                    and csv.read_text() == matrix_csv):
                written.append(png)
                continue
            fig, _ = plot_layer_heatmap(group)
            try:
                _write_atomically(png, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi,
                                                               metadata={_KEY_FIELD: key}))
            finally:
                plt.close(fig)
            _write_atomically(csv, lambda tmp: tmp.write_text(matrix_csv))
            written.append(png)
        if remove_stale:
            current = {png.stem for png in written}
            for old in sorted([*out_dir.glob("*.png"), *out_dir.glob("*.csv")]):
                if old.stem not in current:
                    old.unlink(missing_ok=True)
    return written
