"""Figures of the layerwise experiment (reads results/paper/layerwise only).

- layerwise/heatmaps/*.png and *.pdf: the layer x layer grid of every model pair, metric and direction
  (align.plots: peak starred, cells not significant after Benjamini-Hochberg hatched), and all_pairs.png/.pdf with
  every pair on one page;
- layerwise_depth.png: alignment vs relative depth: for each vision layer the best score over the language model's
  layers (left) and for each language layer the best over the vision model's layers (right), one line per model
  pair, per metric and direction; the shuffled-pairing null at the peak pair is drawn as a cross. "Best" honours
  the metric's direction (the lowest score of a distance; ``align.results.peak_rows``);
- layerwise_ceiling.png (when the run had ``ceiling = true``): per metric and direction, the caption noise ceiling
  of every language layer (caption 0 vs caption 1 of each image, bootstrap band over images) and the
  ceiling-normalised alignment vs the language layer's relative depth (best over the vision layers of score /
  ceiling), with the peak pair's normalised interval.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DIRECTIONS = {"x_to_y": "vision predicts language", "y_to_x": "language predicts vision", "symmetric": "symmetric"}


def metric_label(metric: str) -> str:
    return metric.split("(")[0]


def depth_curve(rows: pd.DataFrame, depth: str) -> pd.Series:
    """relative depth -> the most aligned score over the other model's layers there (the maximum, or the minimum
    for a lower-is-better metric), for the rows of one model pair, metric and direction; depths with no defined
    score are left out. ``depth`` is ``"rel_depth_x"`` (vision layers) or ``"rel_depth_y"`` (language layers)."""
    from align.results import peak_rows

    return peak_rows(rows, [depth]).set_index(depth)["score"].sort_index()


def plot_depth_curves(table: pd.DataFrame, null: pd.DataFrame | None, *, axes=None):
    """Alignment vs relative depth for one metric and direction: rows of ``table`` (one metric, one direction,
    several model pairs). Returns (fig, axes)."""
    import matplotlib.pyplot as plt

    from align.results import higher_is_more_aligned

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    fig = axes[0].figure
    for (mx, my), g in table.groupby(["model_x", "model_y"]):
        line = None
        for ax, depth, other in ((axes[0], "rel_depth_x", "layer_y"), (axes[1], "rel_depth_y", "layer_x")):
            curve = depth_curve(g, depth)
            line = ax.plot(curve.index, curve.values, marker=".", label=f"{mx} x {my}",
                           color=None if line is None else line[0].get_color())
        if null is not None:
            n = null[(null.model_x == mx) & (null.model_y == my)]
            for _, r in n.iterrows():
                axes[0].plot([r.rel_depth_x], [r.null_mean], "x", color=line[0].get_color())
                axes[1].plot([r.rel_depth_y], [r.null_mean], "x", color=line[0].get_color())
    row = table.iloc[0]
    axes[0].set_xlabel("relative depth of the vision layer")
    axes[1].set_xlabel("relative depth of the language layer")
    axes[0].set_ylabel(f"{metric_label(row.metric)} (best over the other model's layers"
                       + (")" if higher_is_more_aligned(table) else "; lower = more aligned)"))
    for ax in axes:
        ax.axhline(0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{metric_label(row.metric)}, {DIRECTIONS.get(row.direction, row.direction)} — dataset "
                 f"{row.dataset}, n = {int(row.n)} (x: shuffled-pairing null mean at the peak pair)", fontsize=9)
    fig.tight_layout()
    return fig, axes


#: Language layers whose ceiling is below this are left out of the normalised curves: a score divided by a
#: ceiling near 0 (e.g. linear CKA of a layer dominated by a few massive dimensions) is no fraction of anything.
MIN_CEILING = 0.1


def ceiling_rows(normalised: pd.DataFrame) -> pd.DataFrame:
    """The peak layer pair of each (model pair, metric, direction) of a ``normalised.parquet`` table (peak of the
    raw score), with its language layer's ceiling and the ceiling-normalised score, each with its interval."""
    from align.results import peak_rows

    peaks = peak_rows(normalised, ["model_x", "model_y", "metric", "direction"])
    return pd.DataFrame({
        "model pair": peaks.model_x + " x " + peaks.model_y, "metric": peaks.metric.map(metric_label),
        "direction": peaks.direction, "peak (x, y)": [f"({int(a)}, {int(b)})" for a, b in zip(peaks.layer_x,
                                                                                             peaks.layer_y)],
        "score": peaks.score, "ceiling": peaks.ceiling, "ceiling CI": [f"[{a:.3f}, {b:.3f}]" for a, b in zip(
            peaks.ceiling_ci_low, peaks.ceiling_ci_high)],
        "normalised": peaks.score_ceiling_normalised, "normalised CI": [
            f"[{a:.3f}, {b:.3f}]" for a, b in zip(peaks.normalised_ci_low, peaks.normalised_ci_high)]})


def plot_ceiling(ceiling: pd.DataFrame, normalised: pd.DataFrame):
    """One row per (metric, direction) of the similarity ceilings: left, the ceiling of each language layer vs its
    relative depth (band: bootstrap interval over images), one line per language model; right, for each language
    layer the best ceiling-normalised score over the vision layers, one line per model pair (bar: the peak pair's
    normalised interval). Returns the figure."""
    import matplotlib.pyplot as plt

    from align.results import peak_rows

    ceiling = ceiling[ceiling.higher_is_more_aligned.astype(bool)]
    panels = list(dict.fromkeys(zip(ceiling.metric, ceiling.direction)))
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.4 * len(panels)), squeeze=False)
    for (metric, direction), (left, right) in zip(panels, axes):
        part = ceiling[(ceiling.metric == metric) & (ceiling.direction == direction)]
        for model, g in part.groupby("model"):
            g = g.sort_values("rel_depth")
            line = left.plot(g.rel_depth, g.ceiling, marker=".", label=model)[0]
            left.fill_between(g.rel_depth, g.ci_low, g.ci_high, color=line.get_color(), alpha=0.2, lw=0)
        rows = normalised[(normalised.metric == metric) & (normalised.direction == direction)
                          & (normalised.ceiling >= MIN_CEILING)]
        for (mx, my), g in rows.groupby(["model_x", "model_y"]):
            curve = peak_rows(g.assign(score=g.score_ceiling_normalised), ["rel_depth_y"])
            line = right.plot(curve.rel_depth_y, curve.score, marker=".", label=f"{mx} x {my}")[0]
            peak = peak_rows(g, []).iloc[0]
            right.plot([peak.rel_depth_y], [peak.score_ceiling_normalised], "o", color=line.get_color())
            right.vlines(peak.rel_depth_y, peak.normalised_ci_low, peak.normalised_ci_high, color=line.get_color())
        n, boot = int(part.n.iloc[0]), int(part.n_boot.iloc[0])
        left.set_title(f"{metric_label(metric)}, {DIRECTIONS.get(direction, direction)}\ncaption 0 vs caption 1 "
                       f"(n = {n} images, band: {boot} bootstrap resamples)", fontsize=8)
        right.set_title(f"score / ceiling, best over vision layers (o: peak pair, line: its interval)\nlayers with "
                        f"a ceiling below {MIN_CEILING} left out (a ratio to ~0 says nothing)", fontsize=8)
        left.set_ylabel(f"{metric_label(metric)} (higher = more aligned)")
        for ax in (left, right):
            ax.set_xlabel("relative depth of the language layer")
            ax.axhline(0, color="0.6", lw=0.8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Caption noise ceiling: how far two human captions of one image agree in each language layer, and "
                 "alignment as a fraction of it", fontsize=10)
    fig.tight_layout()
    return fig


def draw(results: Path, figures: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from align.plots import save_heatmaps
    from align.results import read_results

    table = read_results(results / "layerwise" / "results.parquet")
    null_path = results / "layerwise" / "peak_null.parquet"
    null = read_results(null_path) if null_path.exists() else None
    # PNG for the report, vector PDF for the paper; all_pairs.*: every model pair on one page, one scale per metric
    out = [*save_heatmaps(table, figures / "layerwise" / "heatmaps", formats=("png", "pdf"), all_pairs=True,
                          remove_stale=True)]
    metrics = list(dict.fromkeys(table.metric))
    panels = [(m, d) for m in metrics for d in sorted(table[table.metric == m].direction.unique())]
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.6 * len(panels)), squeeze=False)
    for (metric, direction), ax_row in zip(panels, axes):
        part = table[(table.metric == metric) & (table.direction == direction)]
        n = None if null is None else null[(null.metric == metric) & (null.direction == direction)]
        plot_depth_curves(part, n, axes=ax_row)
        ax_row[0].set_title(f"{metric_label(metric)}, {DIRECTIONS.get(direction, direction)}", fontsize=9)
    fig.suptitle(f"Alignment vs relative depth (dataset {table.dataset.iloc[0]}, n = {int(table.n.iloc[0])}; "
                 f"x = shuffled-pairing null at the peak pair)", fontsize=10)
    fig.tight_layout()
    path = figures / "layerwise_depth.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.insert(0, path)
    ceiling, normalised = (results / "layerwise" / f"{name}.parquet" for name in ("ceiling", "normalised"))
    if ceiling.exists() and normalised.exists():
        fig = plot_ceiling(pd.read_parquet(ceiling), pd.read_parquet(normalised))
        path = figures / "layerwise_ceiling.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.insert(1, path)
    return out
