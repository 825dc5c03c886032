"""Figures of the perturbation experiment (reads results/paper/perturbation only).

- perturbation_effects.png: per metric and direction, condition − original at the original's peak layer pair for
  every model pair, with its confidence interval (bootstrap over stimuli) and the significance (paired swap
  test), relative to the original's score;
- perturbation_cka_grids.png: the CKA difference grid (condition − original, every layer pair) of each condition
  for the first model pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fig_layerwise import DIRECTIONS
from fig_layerwise import metric_label


def condition_label(condition: str) -> str:
    image, caption = condition.split("|")
    return f"image: {image}" if image != "original" else f"caption: {caption}"


def plot_effects(peak: pd.DataFrame, *, ax=None):
    """Bars: relative change (condition − original) / original at the peak pair, per condition (groups) and model
    pair (bars); error bars = the CI of the difference over the same denominator; * = p < 0.05."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 3.8))
    fig = ax.figure
    conditions = list(dict.fromkeys(peak.condition))
    pairs = list(dict.fromkeys(zip(peak.model_x, peak.model_y)))
    width = 0.8 / max(len(pairs), 1)
    for b, (mx, my) in enumerate(pairs):
        rows = peak[(peak.model_x == mx) & (peak.model_y == my)].set_index("condition").reindex(conditions)
        base = rows.score_b.abs().replace(0, np.nan)
        rel = rows.score / base
        err = np.vstack([(rows.score - rows.ci_low) / base, (rows.ci_high - rows.score) / base])
        x = np.arange(len(conditions)) + (b - (len(pairs) - 1) / 2) * width
        ax.bar(x, rel, width, yerr=np.clip(np.nan_to_num(err), 0, None), capsize=2, label=f"{mx} x {my}")
        for xi, yi, p in zip(x, rel, rows.p_value):
            if pd.notna(p) and p < 0.05:
                ax.text(xi, yi, "*", ha="center", va="bottom" if yi >= 0 else "top", fontsize=9)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(conditions)))
    ax.set_xticklabels([condition_label(c) for c in conditions], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("relative change at the peak pair")
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def plot_difference_grid(diff: pd.DataFrame, *, ax=None, vmax=None):
    """One condition's difference grid (rows vision layers, columns language layers)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 3))
    m = diff.pivot_table(index="layer_x", columns="layer_y", values="score")
    vmax = vmax or float(np.nanmax(np.abs(m.to_numpy()))) or 1.0
    im = ax.imshow(m.to_numpy(), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_title(condition_label(diff.condition.iloc[0]), fontsize=8)
    return ax.figure, ax, im


def draw(results: Path, figures: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from align.results import read_results

    table = read_results(results / "perturbation" / "results.parquet")
    peak = table[table.quantity == "peak_difference"]
    panels = [(m, d) for m in dict.fromkeys(peak.metric) for d in sorted(peak[peak.metric == m].direction.unique())]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.9 * len(panels)), squeeze=False)
    for (metric, direction), ax in zip(panels, axes[:, 0]):
        plot_effects(peak[(peak.metric == metric) & (peak.direction == direction)], ax=ax)
        ax.set_title(f"{metric_label(metric)}, {DIRECTIONS.get(direction, direction)}: (condition − original) / "
                     f"original at the original's peak layer pair; 95% CI, * p < 0.05", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    paths = [figures / "perturbation_effects.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    diff = table[table.quantity == "difference"]
    if len(diff):
        first = diff[(diff.model_x == diff.model_x.iloc[0]) & (diff.model_y == diff.model_y.iloc[0])]
        first = first[first.metric == first.metric.iloc[0]]
        conditions = list(dict.fromkeys(first.condition))
        vmax = float(first.score.abs().max()) or 1.0
        fig, axes = plt.subplots(1, len(conditions), figsize=(3.2 * len(conditions), 3.2), squeeze=False)
        for c, ax in zip(conditions, axes[0]):
            _, _, im = plot_difference_grid(first[first.condition == c], ax=ax, vmax=vmax)
            ax.set_xlabel(f"{first.model_y.iloc[0]} layer", fontsize=7)
            ax.set_ylabel(f"{first.model_x.iloc[0]} layer", fontsize=7)
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=f"{metric_label(first.metric.iloc[0])} difference")
        fig.suptitle(f"{metric_label(first.metric.iloc[0])}: condition − original over every layer pair "
                     f"({first.model_x.iloc[0]} x {first.model_y.iloc[0]})", fontsize=9)
        paths.append(figures / "perturbation_cka_grids.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
