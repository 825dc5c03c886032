"""Figures of the aggregation experiments (reads results/paper/aggregation_* only).

aggregation_<captions|images>.png: per metric and direction, the score at the peak layer pair as a function of
k (exemplars averaged), one colour per model pair: matched groups (solid) and shuffled groups (dashed); error
bars = the 95% CI of (score at k − score at k = 1) placed around the score at k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fig_layerwise import DIRECTIONS
from fig_layerwise import metric_label


def plot_k_curves(peak: pd.DataFrame, *, ax=None):
    """Score vs k for one metric and direction (rows: model pairs x controls x k)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    for (mx, my), g in peak.groupby(["model_x", "model_y"], sort=False):
        color = None
        for control, style in (("matched", "-"), ("shuffled", "--")):
            c = g[g.control == control].sort_values("k")
            if not len(c):
                continue
            lo = np.clip(np.nan_to_num(c.score - c.ci_low), 0, None)  # percentile intervals may exclude the estimate
            hi = np.clip(np.nan_to_num(c.ci_high - c.score), 0, None)
            line = ax.errorbar(c.k, c.score_a, yerr=[lo, hi], ls=style, marker="o", ms=3, capsize=2, color=color,
                               label=f"{mx} x {my}" if control == "matched" else None)
            color = line[0].get_color()
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("k (exemplars averaged)")
    ax.set_ylabel(metric_label(peak.metric.iloc[0]))
    ax.grid(alpha=0.3)
    return ax.figure, ax


def draw(results: Path, figures: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from align.results import read_results

    paths = []
    for side in ("captions", "images"):
        path = results / f"aggregation_{side}" / "results.parquet"
        if not path.exists():
            continue
        table = read_results(path)
        peak = table[table.quantity == "peak_difference"]
        panels = [(m, d) for m in dict.fromkeys(peak.metric) for d in sorted(peak[peak.metric == m].direction.unique())]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
        for (metric, direction), ax in zip(panels, axes[0]):
            plot_k_curves(peak[(peak.metric == metric) & (peak.direction == direction)], ax=ax)
            ax.set_title(f"{metric_label(metric)}, {DIRECTIONS.get(direction, direction)}", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        unit = "image (mean of its first k captions)" if side == "captions" else "scene (mean of k renderings)"
        fig.suptitle(f"Aggregation over {side}: one unit = one {unit}; solid = matched groups, dashed = shuffled "
                     f"groups; dataset {peak.dataset.iloc[0]}, n = {int(peak.n.iloc[0])} units", fontsize=9)
        fig.tight_layout()
        paths.append(figures / f"aggregation_{side}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
